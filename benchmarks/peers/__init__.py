"""Implementations of the simulation benchmark's workload W for each system.

Each module exposes ``run(variant, rounds, warmup) -> dict`` and is executed in
its own subprocess by ``benchmarks/simulation.py --worker SYSTEM VARIANT``.
"""
