"""A user's corruption named in a config as "module.path:function": checked when the config is read, calibrated
by `coupled calibrate` like the built-ins, and accepted by `coupled classify --corruption`."""

import ast

import pytest

from tests.reliability.conftest import cli, one_line_error, tiny_config  # noqa: F401 (cli is a fixture)

from .conftest import run_cli, write_config

MODULE = "coupled_test_user_corruptions"
SOURCE = '''
import os

import torch


def noise(images, severity, generator):
    """gaussian_noise, written as a user would."""
    return images + severity * torch.randn(images.shape, generator=generator)


def marked(images, severity, generator):
    """The identity, leaving a trace of its call."""
    with open(os.environ["USER_CORRUPTION_MARK"], "a") as f:
        f.write(f"{severity}\\n")
    return images
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module on PYTHONPATH of the `coupled` subprocesses."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def test_calibrate_covers_a_module_function_corruption(trained, tmp_path, user_module):
    """The user's copy of gaussian_noise, with the same training range, is calibrated to the same severities."""
    _, ckpt = trained
    spec = f"{MODULE}:noise"
    cfg = write_config(tmp_path, output=str(ckpt), corruptions={
        "severities": {"gaussian_noise": {"light": 0.3, "medium": 0.5, "heavy": 0.8},
                       spec: {"light": 0.3, "medium": 0.5, "heavy": 0.8}},
        "train_severity": {"gaussian_noise": [0.1, 4.0], spec: [0.1, 4.0]}})
    out = ast.literal_eval(run_cli("calibrate", cfg, "--quiet").stdout.strip())
    assert spec in out["severities"] and set(out["severities"][spec]) == {"light", "medium", "heavy"}
    assert out["severities"][spec] == out["severities"]["gaussian_noise"]
    assert out["val_accuracy"][spec] == out["val_accuracy"]["gaussian_noise"]


def test_classify_takes_a_module_function_corruption(trained, tmp_path, user_module, monkeypatch):
    import numpy as np

    _, ckpt = trained
    mark = tmp_path / "mark.txt"
    monkeypatch.setenv("USER_CORRUPTION_MARK", str(mark))
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), np.float32))
    proc = run_cli("classify", digit, "--checkpoint", ckpt, "--corruption", f"{MODULE}:marked", "--severity", "0.25",
                   "--method", "noisy")
    assert "\tp=" in proc.stdout and mark.read_text() == "0.25\n"


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("json:no_such_function", "has no attribute"),
    ("math:pi", "not a function"),
    (":f", "not of the form"),
    ("no_such_corruption", "unknown corruption"),
])
@pytest.mark.parametrize("section", ["severities", "train_severity"])
def test_bad_corruption_spec_fails_when_the_config_is_read(cli, tmp_path, spec, message, section):  # noqa: F811
    value = {"heavy": 0.5} if section == "severities" else [0.1, 0.5]
    cfg = tiny_config(tmp_path, corruptions={section: {spec: value}})
    code, _, err = cli("train", cfg, "--quiet", "--accelerator", "cpu")
    line = one_line_error(code, err)
    assert message in line and f"corruptions.{section}.{spec}" in line
    assert not (tmp_path / "ckpt").exists(), "the bad spec was found after work had started"


def test_classify_bad_corruption_spec_is_one_line(trained, tmp_path):
    from tests.reliability.conftest import run

    _, ckpt = trained
    proc = run("classify", tmp_path / "x.npy", "--checkpoint", ckpt, "--corruption", "math:pi", "--severity", "0.5")
    assert "not a function" in one_line_error(proc.returncode, proc.stderr)
