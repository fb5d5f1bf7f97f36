"""Bundled configs and checkpoints are found when a command runs outside the clone (coupled/home.py): a relative
path a command reads comes from the current directory, else from the project home ($COUPLED_HOME, else the clone
the package runs from); a path in neither is one line naming both places."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coupled.cli import main
from coupled.errors import CoupledError
from coupled.home import HOME_ENV, find, locate, project_home

CLONE = Path(__file__).parents[1]


def test_the_project_home_is_the_clone_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert project_home() == CLONE.resolve()
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert project_home() == tmp_path


def test_the_current_directory_comes_first(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert locate("configs/mnist.yaml") == CLONE.resolve() / "configs/mnist.yaml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/mnist.yaml").write_text("{}")
    assert locate("configs/mnist.yaml") == Path("configs/mnist.yaml")  # the user's own file wins


def test_a_path_in_neither_place_names_both(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    with pytest.raises(CoupledError) as e:
        find("configs/mnist.yaml", "config file")
    message = str(e.value)
    assert "\n" not in message and str(tmp_path) in message and str(tmp_path / "home") in message
    assert "$COUPLED_HOME" in message


def test_evaluate_from_another_directory_reads_the_bundled_config_and_checkpoint(monkeypatch, tmp_path):
    """`coupled evaluate configs/mnist.yaml` outside the clone: the config and its `output: checkpoints/mnist`
    come from the clone; the results go to the current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert main(["evaluate", "configs/mnist.yaml", "--methods", "noisy", "--max-items", "4", "--levels", "heavy",
                 "--corruptions", "pixel_noise", "--out", "ev", "--quiet"]) == 0
    results = json.loads((tmp_path / "ev/results.json").read_text())
    assert Path(results["settings"]["checkpoint"]) == CLONE.resolve() / "checkpoints/mnist"


def test_a_home_from_the_environment(monkeypatch, tmp_path, capsys):
    """$COUPLED_HOME serves a copy of the configs and checkpoints (an installed package has no clone)."""
    home = tmp_path / "home"
    (home / "configs").mkdir(parents=True)
    (home / "configs/mine.yaml").write_text((CLONE / "configs/mnist.yaml").read_text().replace(
        "demo: {items: 1000, seed: 0, picks: docs/results/fair_val.json}", "demo: {items: 4}"))
    (home / "checkpoints").mkdir()
    (home / "checkpoints/mnist").symlink_to(CLONE.resolve() / "checkpoints/mnist")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(HOME_ENV, str(home))
    assert main(["demo", "--config", "configs/mine.yaml", "--out", "demo", "--quiet"]) == 0
    assert (work / "demo/results.json").is_file()
    assert main(["evaluate", "configs/mnist.yaml", "--quiet"]) == 2  # not in this home: one line naming both
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(work) in err and str(home) in err


def test_classify_with_the_bundled_checkpoint_from_another_directory(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(HOME_ENV, raising=False)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "blank.png")
    assert main(["classify", "blank.png", "--checkpoint", "checkpoints/mnist", "--method", "noisy"]) == 0
    assert "blank.png" in capsys.readouterr().out


def test_train_writes_its_output_in_the_current_directory(monkeypatch, tmp_path):
    """Only reading commands look in the home: `coupled train` from elsewhere never writes into the clone."""
    import coupled.commands as commands

    seen = {}
    monkeypatch.setitem(commands.GENERIC, "train", lambda domain, cfg, **kw: seen.setdefault("output", cfg["output"]) and [])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert main(["train", "configs/mnist.yaml", "--quiet"]) == 0
    assert seen["output"] == "checkpoints/mnist"


def test_the_pipeline_loads_the_bundled_models_from_another_directory(monkeypatch, tmp_path):
    from coupled import CoupledPipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(HOME_ENV, raising=False)
    pipe = CoupledPipeline.from_pretrained("checkpoints/mnist")
    assert Path(pipe.bundle.folder) == CLONE.resolve() / "checkpoints/mnist"
