"""Run one benchmark subprocess and watch it from outside.

:func:`launch` starts a command in its own session, polls the summed RSS (and,
less often, PSS) of its whole process tree, accounts the CPU time that every
*other* process on the machine used meanwhile ("foreign" load: other users'
jobs compete for the same cores and make timings meaningless), kills the tree
on timeout, and afterwards kills — by PID and start time — any descendant that
outlived the worker (Ray actors are reparented to init and linger).

:func:`wait_for_quiet` blocks until the foreign load is low, so that a
measurement starts on an idle machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RESULT_PREFIX = "BENCH_RESULT "


@dataclass
class Measured:
    """What the driver observed of one worker subprocess."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    max_single_rss_mb: float
    foreign_load: float
    timed_out: bool
    result: dict[str, Any] | None
    log_path: Path
    attempt: int = 1
    quiet_wait_s: float = 0.0


class ForeignCpu:
    """CPU seconds used by processes outside a watched tree (and this process)."""

    def __init__(self) -> None:
        self._t_start = time.time()
        self._self = os.getpid()
        self._last: dict[tuple[int, float], float] = {}
        self.total_s = 0.0
        self.sample(set(), count=False)

    def sample(self, tree: set[int], count: bool = True) -> float:
        """Add the CPU time used since the last sample by processes not in ``tree``."""
        delta = 0.0
        current: dict[tuple[int, float], float] = {}
        for p in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            pid = p.info["pid"]
            if pid == self._self or pid in tree or p.info["cpu_times"] is None:
                continue
            ct = p.info["cpu_times"]
            key = (pid, p.info["create_time"] or 0.0)
            total = ct.user + ct.system
            current[key] = total
            if key in self._last:
                delta += max(0.0, total - self._last[key])
            elif count and key[1] >= self._t_start:
                delta += total  # started while we were watching
        self._last = current
        self.total_s += delta
        return delta


def wait_for_quiet(
    max_wait_s: float, threshold: float, window_s: float = 2.0, log: Any = print
) -> float:
    """Wait until other processes use < ``threshold`` cores over ``window_s``.

    Returns the seconds waited (at most ``max_wait_s``, then it gives up).
    """
    t0 = time.perf_counter()
    mon = ForeignCpu()
    announced = False
    while True:
        time.sleep(window_s)
        load = mon.sample(set()) / window_s
        waited = time.perf_counter() - t0
        if load < threshold or waited >= max_wait_s:
            return waited
        if not announced:
            log(f"[bench] machine busy ({load:.2f} cores used by other processes); waiting")
            announced = True


#: seconds between polls of the worker's process tree (memory, foreign load); the peak
#: RSS of the main process is also taken from the kernel's ru_maxrss, which misses nothing
POLL_S = 0.5


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def launch(
    cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path, timeout_s: float
) -> Measured:
    """Run ``cmd`` to completion; measure wall time, peak tree memory and foreign load."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seen: dict[int, float] = {}
    peak_rss = 0.0
    timed_out = False
    foreign = ForeignCpu()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        root = psutil.Process(proc.pid)
        status = 0
        rusage = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            now = time.perf_counter()
            # Only /proc/PID/statm (memory_info) is read while the worker runs: reading
            # smaps (memory_full_info, for PSS) takes the target's mmap lock and was seen to
            # slow an allocation-heavy multi-threaded worker by ~60%.
            rss = 0.0
            for p in _tree(root):
                try:
                    seen.setdefault(p.pid, p.create_time())
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
            peak_rss = max(peak_rss, rss)
            foreign.sample(set(seen))
            if now - t0 > timeout_s:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            # a slow poll: every poll is CPU taken from the 2-core machine the worker runs on
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        foreign.sample(set(seen))
        proc.returncode = os.waitstatus_to_exitcode(status)
    killed = kill_leftovers(seen, exclude=proc.pid)
    if killed:
        with open(log_path, "a") as log:
            log.write(f"\n[driver] killed leftover processes {killed}\n")
    result = None
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return Measured(
        returncode=proc.returncode,
        wall_s=wall,
        # ru_maxrss (exact, kernel-kept) covers the main process between polls
        peak_rss_mb=max(peak_rss, (rusage.ru_maxrss * 1024) if rusage is not None else 0.0) / 2**20,
        max_single_rss_mb=(rusage.ru_maxrss / 1024) if rusage is not None else 0.0,
        foreign_load=foreign.total_s / wall if wall > 0 else 0.0,
        timed_out=timed_out,
        result=result,
        log_path=log_path,
    )


def kill_leftovers(seen: dict[int, float], exclude: int, grace_s: float = 5.0) -> list[int]:
    """Kill descendants that outlived the worker, matched by PID and start time.

    They get ``grace_s`` seconds to exit on their own first.
    """
    survivors: list[psutil.Process] = []
    for pid, created in seen.items():
        if pid == exclude:
            continue
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 1e-3:
                survivors.append(p)
    if not survivors:
        return []
    _, alive = psutil.wait_procs(survivors, timeout=grace_s)
    killed = []
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
            killed.append(p.pid)
    return killed
