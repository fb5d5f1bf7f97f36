"""Crash tests: the real `coupled train` killed (SIGKILL) at each phase of a checkpoint write, then resumed.

The writer's fault-injection hook (`COUPLED_FAULT=mid:N` / `after:N`, coupled/atomic.py) kills the process
halfway through, or right after, its N-th atomic write. A tiny classifier stage (8 steps, a checkpoint every 4)
makes 11 of them: config.json; train state at step 4 (weights, JSON) and 8 (weights, JSON); the rank digest;
the bundle's weights, JSON and manifest; the done marker; the training log. Every interrupted run, resumed,
must end with the bundle an uninterrupted run writes, bit for bit, and no temporary file left.
"""

import hashlib
import shutil

import pytest

from .conftest import one_line_error, run, tiny_config

ARGS = ("--stages", "classifier", "--quiet", "--accelerator", "cpu")


def _fingerprint(ckpt):
    files = sorted(ckpt.glob("*.safetensors")) + [ckpt / "train_state" / "classifier.rank0.digest"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    proc = run("train", tiny_config(folder), *ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _fingerprint(folder / "ckpt")


def _crash_then_resume(tmp_path, fault: str, reference) -> bool:
    """False when the fault was never reached (the run finished)."""
    cfg = tiny_config(tmp_path)
    killed = run("train", cfg, *ARGS, env={"COUPLED_FAULT": fault})
    if killed.returncode == 0:
        return False
    assert killed.returncode == -9, killed.stderr[-2000:]
    ckpt = tmp_path / "ckpt"
    resumed = run("train", cfg, *ARGS, "--resume")
    assert resumed.returncode == 0, f"{fault}: {resumed.stderr[-2000:]}"
    assert _fingerprint(ckpt) == reference, f"{fault}: the resumed run differs from an uninterrupted one"
    assert not list(ckpt.rglob("*.tmp")), f"{fault}: a temporary file was left behind"
    return True


# the case (new weights renamed, the JSON still of the previous step) and a half-written bundle file
@pytest.mark.parametrize("fault", ["after:4", "mid:7"])
def test_kill_during_checkpoint_write_resumes_bit_identical(tmp_path, reference, fault):
    assert _crash_then_resume(tmp_path, fault, reference)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["mid", "after"])
def test_kill_at_every_write_resumes_bit_identical(tmp_path, reference, phase):
    n = 1
    while True:
        (tmp_path / f"{phase}{n}").mkdir()
        if not _crash_then_resume(tmp_path / f"{phase}{n}", f"{phase}:{n}", reference):
            break
        n += 1
    assert n > 10, f"only {n - 1} atomic writes were reached"


def test_resume_with_a_tampered_state_refuses_in_one_line(tmp_path, reference):
    cfg = tiny_config(tmp_path)
    assert run("train", cfg, *ARGS, env={"COUPLED_FAULT": "after:5"}).returncode == -9
    state = tmp_path / "ckpt" / "train_state"
    w = next(state.glob("classifier.step*.safetensors"))
    shutil.copy(w, tmp_path / "saved")
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x10
    w.write_bytes(bytes(data))
    proc = run("train", cfg, *ARGS, "--resume")
    line = one_line_error(proc.returncode, proc.stderr)
    assert str(state) in line and "delete" in line and "classifier.*" in line
