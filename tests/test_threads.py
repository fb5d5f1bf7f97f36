"""Torch threads default to the cores torch can use without oversubscription (coupled/threads.py): min(CPU
affinity, torch's default), divided among the processes that share the cores; a count the user sets wins."""

import os

import pytest
import torch

import coupled.threads as threads
from coupled.cli import main


@pytest.fixture
def machine(monkeypatch):
    """An 8-core machine whose process may run on 2 of them, torch's default 8; torch's count restored after."""
    before = torch.get_num_threads()
    for name in (threads.INHERITED_ENV, "OMP_NUM_THREADS", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "TORCH_DEFAULT", 8)
    yield monkeypatch
    torch.set_num_threads(before)


def test_the_default_is_the_cores_this_process_may_use(machine):
    assert threads.default_threads() == 2  # not torch's 8: the affinity allows 2
    machine.setattr(threads, "TORCH_DEFAULT", 1)  # OMP_NUM_THREADS=1 at start-up
    assert threads.default_threads() == 1
    machine.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    machine.setattr(threads, "TORCH_DEFAULT", 8)
    assert threads.default_threads(processes=3) == 2
    assert threads.default_threads(processes=16) == 1


def test_a_count_the_user_sets_wins(machine):
    assert threads.use_threads(3) == 3 == torch.get_num_threads()
    assert threads.use_threads(0) == 2 == torch.get_num_threads()  # 0: not set


def test_pytest_xdist_workers_share_the_cores(machine):
    machine.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert threads.use_threads() == 1


def test_the_cli_sets_the_default_before_the_command_runs(machine):
    import coupled.commands as commands

    seen = {}
    machine.setitem(commands.GENERIC, "evaluate", lambda domain, cfg, **kw: seen.setdefault("n", torch.get_num_threads()) and "")
    torch.set_num_threads(8)  # torch's default on the 8-core machine
    assert main(["evaluate", "configs/mnist.yaml", "--quiet"]) == 0
    assert seen["n"] == 2


def test_ddp_processes_divide_the_cores_once(machine):
    """`coupled train --devices 2`: each process takes half, and the processes DDP launches inherit that count
    (their own torch default, read from the exported OMP_NUM_THREADS, is not divided again)."""
    import coupled.commands as commands

    seen = {}
    machine.setitem(commands.GENERIC, "train", lambda domain, cfg, **kw: seen.setdefault("n", torch.get_num_threads()) and [])
    machine.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert main(["train", "configs/mnist.yaml", "--devices", "2", "--accelerator", "cpu", "--quiet"]) == 0
    assert seen["n"] == 4
    assert os.environ[threads.INHERITED_ENV] == os.environ["OMP_NUM_THREADS"] == "4"
    machine.setattr(threads, "TORCH_DEFAULT", 4)  # a child process started with OMP_NUM_THREADS=4
    assert threads.use_threads(None, devices=2) == 4
