"""How much of the machine a process may use: ``auto`` torch threads and data-loader workers.

``CORA_CPUS`` (set by the demo and sweep pools for each job they run at once) caps the CPUs one process
counts as its own, so two jobs on two cores each take one core instead of both taking two.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may use: ``CORA_CPUS`` when set, else the CPUs it is allowed to run on."""
    granted = os.environ.get("CORA_CPUS")
    if granted:
        return max(1, int(granted))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(value: int | str) -> int:
    """Data-loader worker processes: ``auto`` = one per CPU beyond the training process's, at most 4 (on
    2 cores: one worker prepares the next batch while the model computes)."""
    return min(4, usable_cpus() - 1) if value == "auto" else int(value)


def resolve_threads(value: int | str | None) -> int | None:
    """torch intra-op threads: ``auto`` = every usable CPU; ``None`` = leave torch's own choice."""
    return usable_cpus() if value == "auto" else value
