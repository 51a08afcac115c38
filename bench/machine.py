"""How busy the machine's cores are with other processes: the condition of a timing.

Measured from the kernel's CPU-time counters (Linux ``/proc/stat``) minus this process's own CPU
time, so it counts only others: a training run that shares its cores with another process
(2 torch threads each on 2 cores made training 15-30x slower here) is recorded as such, and a
suite can warn before it starts. Load averages are not used: they decay over minutes, so they
still count a run that finished a minute ago.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent outside idle and iowait since boot, over all cores (None off Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    # guest time is already inside user time: count user..steal only
    busy = sum(ticks[:8]) - idle
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float
    busy: float | None
    own: float


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sample() -> Sample:
    return Sample(time.perf_counter(), _busy_cpu_seconds(), time.process_time())


def others_load(start: Sample, end: Sample, min_seconds: float = 0.2) -> float | None:
    """Average number of cores other processes kept busy between two samples (None where the
    counters are unavailable or the interval is too short to read)."""
    wall = end.wall - start.wall
    if start.busy is None or end.busy is None or wall < min_seconds:
        return None
    return max(0.0, ((end.busy - start.busy) - (end.own - start.own)) / wall)


def busy_warning(threads: int, seconds: float = 0.5) -> str | None:
    """A warning when other processes keep the cores busy now (measured over ``seconds``) so
    that training with ``threads`` threads would oversubscribe them."""
    cores = os.cpu_count()
    start = sample()
    time.sleep(seconds)
    load = others_load(start, sample())
    if load is None or not cores or not oversubscribed(load, threads, cores):
        return None
    return (f"the machine is busy: other processes keep {load:.1f} of its {cores} cores busy, "
            f"and training uses {threads} threads; timings taken now are distorted (each run "
            f"records others_cpu_load, and reports flag its timings)")


#: how far beyond the core count the threads in use may go before timings are distorted
MARGIN = 0.5


def oversubscribed(others: float, threads: int, cores: int) -> bool:
    return others + threads > cores + MARGIN
