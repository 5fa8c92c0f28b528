"""Paper reproductions: one command regenerates a paper's tables on fedshield's engine.

* :mod:`fedshield.reproduce.fedre` -- FedRE (Xiao et al., ICMR 2025), Tables 1-4 and
  Figure 6 on synthetic documents (``fedshield reproduce fedre``).
"""

REPRODUCTIONS = ("fedre",)
"""Names ``fedshield reproduce NAME`` accepts."""

__all__ = ["REPRODUCTIONS"]
