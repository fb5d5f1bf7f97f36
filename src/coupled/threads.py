"""How many threads torch uses in a `coupled` process: the one rule, applied by the CLI and by every setting that
names a count.

A count the user sets wins (bench's `--threads`, a config's `train.num_threads`, speech's
`recogniser.num_threads` / `evaluation.num_threads`; 0 means "not set"). Otherwise a process takes the cores torch
can use without oversubscription: min(the cores this process may run on, `os.sched_getaffinity`; torch's own
default, which follows `OMP_NUM_THREADS`), divided among the processes that share them: DDP's `--devices N`, and
pytest-xdist's workers. Torch's default alone takes every core of the machine, even cores a container or
`taskset` withholds, and two processes that each take every core run many times slower than one thread each.

The processes DDP launches inherit their parent's count (`COUPLED_THREADS`, and `OMP_NUM_THREADS`, which keeps
Lightning from choosing its own), so the division happens once.
"""

from __future__ import annotations

import os

import torch

INHERITED_ENV = "COUPLED_THREADS"
TORCH_DEFAULT = torch.get_num_threads()  # before any of ours: OMP_NUM_THREADS, else torch's count of the machine's cores


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of the machine's where the OS does not say)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def sharing_processes(devices: int = 1) -> int:
    """How many processes share the cores: DDP's `devices` times pytest-xdist's workers."""
    try:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    except ValueError:
        workers = 1
    return max(1, int(devices)) * max(1, workers)


def default_threads(processes: int = 1) -> int:
    """The count a process takes when none is set: min(available cores, torch's default) // `processes`, at least 1."""
    return max(1, min(available_cores(), TORCH_DEFAULT) // max(1, processes))


def use_threads(requested: int | None = None, devices: int = 1) -> int:
    """Set torch's intra-op thread count and return it: `requested` when it is a positive count (the user's), else
    the count a DDP parent passed down, else `default_threads` shared among `sharing_processes(devices)`. With
    `devices` > 1 the count is exported to the processes DDP launches."""
    if requested:
        n = int(requested)
    elif os.environ.get(INHERITED_ENV, "").isdigit() and int(os.environ[INHERITED_ENV]) > 0:
        n = int(os.environ[INHERITED_ENV])
    else:
        n = default_threads(sharing_processes(devices))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if devices > 1:
        os.environ[INHERITED_ENV] = os.environ["OMP_NUM_THREADS"] = str(n)
    return n
