"""Config files with `extends:` and `--set key=value` overrides, through the real `coupled` command."""

import json

import pytest
import yaml

from tests.image.conftest import run_cli, write_config
from tests.reliability.conftest import cli, one_line_error, tiny_config  # noqa: F401 (cli is a fixture)

CONFIG_COMMANDS = [("train",), ("evaluate",), ("calibrate",), ("reproduce",), ("bench",), ("demo", "--config")]


def test_extends_and_set_reach_training(tmp_path):
    """A config extending the tiny one (path relative to the extending file; the extending file wins, mappings
    merge key by key), with `--set` on top, trains with the merged values."""
    base = write_config(tmp_path)
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "../tiny.yaml", "signal": {"steps": 3},
                                     "output": str(tmp_path / "child_ckpt")}))
    run_cli("train", child, "--stages", "signal", "--set", "signal.batch_size=4", "--set", "train.checkpoint_every=1",
            "--set", "signal.lr=1e-4", "--quiet", "--accelerator", "cpu")
    cfg = json.loads((tmp_path / "child_ckpt" / "config.json").read_text())
    assert cfg["signal"]["steps"] == 3 and cfg["signal"]["batch_size"] == 4 and cfg["signal"]["lr"] == 1e-4
    assert cfg["signal"]["net"]["channels"] == [8, 16] and cfg["train"] == {**cfg["train"], "checkpoint_every": 1,
                                                                             "log_every": 1}
    assert json.loads((tmp_path / "child_ckpt" / "signal_pretrained.json").read_text())["steps"] == 3
    assert yaml.safe_load(base.read_text())["signal"]["steps"] == 6  # the extended file is only read


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("setting, names", [("signal.stepz=3", "signal.stepz"), ("signal.steps=0", "signal.steps"),
                                            ("seed.x=1", "seed"), ("sampling.signal.eta=[1", "sampling.signal.eta"),
                                            ("signal.steps", "key=value"), ("=3", "key=value")])
def test_set_on_every_config_command_gets_the_schema_one_line_error(cli, tmp_path, command, setting, names):  # noqa: F811
    cfg = tiny_config(tmp_path)
    code, _, err = cli(*command, cfg, "--set", setting, "--quiet")
    assert names in one_line_error(code, err)
    assert not (tmp_path / "ckpt").exists()


def test_set_inside_a_mapping_keeps_its_other_keys(tmp_path):
    from coupled.config import load_config, parse_override

    cfg = load_config(tiny_config(tmp_path), [parse_override("corruptions.severities.pixel_noise.heavy=0.7"),
                                              parse_override("sampling.methods.parallel.switch_fraction=0.25"),
                                              parse_override("evaluation.max_items=null")])
    assert cfg["corruptions"]["severities"]["pixel_noise"] == {"light": 0.15, "medium": 0.3, "heavy": 0.7}
    assert set(cfg["corruptions"]["severities"]) == {"pixel_noise", "gaussian_noise", "gaussian_blur"}
    assert cfg["sampling"]["methods"]["parallel"]["switch_fraction"] == 0.25
    assert cfg["sampling"]["methods"]["nested"]["refresh_every"] == 2
    assert cfg["evaluation"]["max_items"] is None


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": {"extends": "b.yaml"}, "b.yaml": {"extends": "a.yaml"}}, "cycle"),
    ({"a.yaml": {"extends": "a.yaml"}}, "cycle"),
    ({"a.yaml": {"extends": "missing.yaml"}}, "no such config file"),
    ({"a.yaml": {"extends": 5}}, "'extends'"),
    ({"a.yaml": {"extends": "b.yaml"}, "b.yaml": {"signal": {"stepz": 1}}}, "signal.stepz"),
])
def test_bad_extends_is_one_line(cli, tmp_path, files, message):  # noqa: F811
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    code, _, err = cli("train", tmp_path / "a.yaml", "--quiet")
    assert message in one_line_error(code, err)


def test_evaluate_and_demo_take_the_sampling_stored_with_the_weights(tmp_path):
    """The checkpoint folder is the source of truth for sampling (issue 8 item 3): pipeline.json's settings,
    explicit --set overrides on top, a one-line note when the config file says otherwise; a broken
    pipeline.json is one line."""
    from coupled.config import checkpoint_sampling, load_config
    from coupled.errors import CoupledError

    folder = tmp_path / "ckpt"
    folder.mkdir()
    stored = load_config("configs/mnist.yaml")["sampling"]
    stored = {**stored, "signal": {**stored["signal"], "steps": 7}}
    (folder / "pipeline.json").write_text(json.dumps({"sampling": stored}))
    notes = []
    warn = lambda *a, **k: notes.append(a[0])  # noqa: E731
    cfg = load_config("configs/mnist.yaml", [("output", str(folder))])
    assert checkpoint_sampling(cfg, warn=warn)["signal"]["steps"] == 7
    assert len(notes) == 1 and "sampling.signal.steps is 7 there, 5 in the config" in notes[0]
    over = [("sampling.signal.steps", 3)]
    cfg = load_config("configs/mnist.yaml", [("output", str(folder)), *over])
    assert checkpoint_sampling(cfg, over, warn=warn)["signal"]["steps"] == 3
    (folder / "pipeline.json").write_text(json.dumps({"sampling": [1, 2]}))
    with pytest.raises(CoupledError, match="'sampling' must be a mapping"):
        checkpoint_sampling(cfg, over, warn=warn)
    (folder / "pipeline.json").unlink()  # no stored settings: the config's own
    assert checkpoint_sampling(cfg, over, warn=warn) == cfg["sampling"]


def test_a_sampling_chain_takes_an_explicit_grid():
    """sampling.signal.timesteps (engine Chain.timesteps): a list in the config, checked as a list of numbers here
    and against the process when the chain is built; absent by default."""
    from coupled.config import make_config
    from coupled.errors import CoupledError
    from coupled.bundle import chains_from_sampling
    from coupled.engine import CentredProcess, VPProcess

    assert "timesteps" not in make_config({})["sampling"]["signal"]
    cfg = make_config({"sampling": {"signal": {"steps": 3, "sampler": "ddim", "timesteps": [973, 880, 480, -1]}}})
    signal, _ = chains_from_sampling(VPProcess(1000), CentredProcess(), cfg["sampling"])
    assert signal.grid.tolist() == [973, 880, 480, -1]
    with pytest.raises(CoupledError, match="sampling.signal.timesteps must be null or a list"):
        make_config({"sampling": {"signal": {"timesteps": "973"}}})
    bad = make_config({"sampling": {"signal": {"steps": 2, "timesteps": [973, 880, 480, -1]}}})
    with pytest.raises(CoupledError, match="needs 3 times"):
        chains_from_sampling(VPProcess(1000), CentredProcess(), bad["sampling"])
