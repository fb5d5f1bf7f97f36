"""Training can start from existing denoisers (issue 8): `signal.init`, `logits.init` and `card.init` name
weights a stage starts from instead of a random initialisation; a mismatch is a one-line error (rows in
tests/reliability/test_cli_errors.py)."""

import json

import torch
from safetensors.torch import load_file

from .conftest import TINY, run_cli, write_config


def test_stages_start_from_the_named_weights(trained, tmp_path):
    from coupled.config import load_config
    from coupled.training.run import build_setup

    _, ckpt = trained
    inits = {"signal": "signal_pretrained", "logits": "logits", "card": "card"}
    cfg_path = write_config(tmp_path, **{section: {**TINY[section], "init": str(ckpt / f"{name}.safetensors")}
                                         for section, name in inits.items()})
    cfg = load_config(cfg_path)
    for section, name in inits.items():
        setup = build_setup(section, cfg, ckpt)  # reads the earlier stages' outputs from the trained folder only
        net = setup.nets[section]
        given = load_file(ckpt / f"{name}.safetensors")
        assert all(torch.equal(v, given[k]) for k, v in net.state_dict().items()), section
        assert setup.metas[section]["init"] == str(ckpt / f"{name}.safetensors")
    fresh = build_setup("signal", load_config(write_config(tmp_path)), ckpt).nets["signal"].state_dict()
    given = load_file(ckpt / "signal_pretrained.safetensors")
    assert not all(torch.equal(v, given[k]) for k, v in fresh.items())  # without init: a random initialisation


def test_train_with_init_records_it_and_moves_little_in_one_step(trained, tmp_path):
    _, ckpt = trained
    init = ckpt / "signal_pretrained.safetensors"
    cfg = write_config(tmp_path, signal={**TINY["signal"], "init": str(init)})
    run_cli("train", cfg, "--quiet", "--accelerator", "cpu", "--stages", "signal", "--max-steps", "1")
    meta = json.loads((tmp_path / "ckpt" / "signal_pretrained.json").read_text())
    assert meta["init"] == str(init)
    after, before = load_file(tmp_path / "ckpt" / "signal_pretrained.safetensors"), load_file(init)
    # one step (lr 5e-4) from the init, not from a random initialisation
    assert max((after[k] - before[k]).abs().max().item() for k in before) < 0.01
