"""Issue 15: the generic training stages on a classifier with frame logits [B, T, K] (a CTC recogniser's).

Every per-item choice of the logit pre-training and of the joint stage (which logits centre the logit chain,
which logits the signal net is shown) must select whole items, never frames. The batch size differs from the
frame count in one case (a per-frame broadcast raises there) and equals it in the other (where a per-frame
broadcast silently hands item b the frames of other items' choices): each item is checked against what its
draw (and, in the joint stage, its planned visits of `engine.plan`) says it must see.
"""

import pytest
import torch

from coupled.config import make_config

import coupled.training.conditioning as conditioning
import coupled.training.stages as stages
from coupled.checkpoint import save_weights
from coupled.training.run import train

from .frames import FRAMES, FrameClassifier, FrameConfig, FrameLogitNet, FrameSignalNet

WIDTH, CLASSES = 16, 4


def _config(tmp_path, batch, frames):
    net = {"width": WIDTH, "frames": frames, "num_classes": CLASSES}
    return make_config({
        "name": "frames", "output": str(tmp_path / "ckpt"), "classifier": {"net": net},
        "signal": {"net": net, "steps": 2, "batch_size": batch},
        "logits": {"net": net, "steps": 3, "batch_size": batch},
        # Parallel's plan on 4 logit steps shows the logit net z = d and z = x0_hat, centred on norm f(d); Alternating
        # and Nested show it a finished x_hat, centred on the evidence; the signal net sees y0_hat, y_hat or null
        "joint": {"steps": 4, "batch_size": batch, "grids": [[2, 4]]},
        "train": {"checkpoint_every": 100, "log_every": 1},
        "sampling": {"signal": {"steps": 2, "sampler": "ddim", "eta": 0.0},
                     "logits": {"steps": 2, "sampler": "pc", "corrector_steps": 0}},
    }, FRAMES)


def _install_classifier(folder, frames):
    """A fixed, untrained frame classifier in the bundle (the generic classifier stage trains [B, K] ones)."""
    torch.manual_seed(0)
    net = FrameClassifier(FrameConfig(width=WIDTH, frames=frames, num_classes=CLASSES))
    folder.mkdir(parents=True)
    save_weights(folder, "classifier", net.state_dict(), {"kind": "classifier", "domain": FRAMES.name, "arch": "mlp",
                                                          "net": net.cfg.to_dict(), "logit_scale": 0.8})


def _same(a, b):
    return torch.allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch,frames", [(8, 3), (8, 8)], ids=["B!=T", "B==T"])
def test_training_stages_choose_per_item_with_frame_logits(tmp_path, monkeypatch, batch, frames):
    cfg = _config(tmp_path, batch, frames)
    _install_classifier(tmp_path / "ckpt", frames)
    train(cfg, ("signal",), progress=False, accelerator="cpu")

    # logit pre-training: each item's chain is centred on its own norm f(d) or on its own evidence norm f(z), whole
    branches, logit_calls = [], []
    real_branch = stages._logit_branch

    def spy_branch(m, name, s, d, z, g, prediction=None, lengths=None):
        f = m.frozen["classifier"]
        branches.append((f(d), f(z)))
        return real_branch(m, name, s, d, z, g, prediction, lengths)

    monkeypatch.setattr(stages, "_logit_branch", spy_branch)
    monkeypatch.setattr(FrameLogitNet, "record", logit_calls)
    train(cfg, ("logits",), progress=False, accelerator="cpu")
    assert len(branches) == len(logit_calls) == 3
    sources = []
    for step, ((c_d, c_z), call) in enumerate(zip(branches, logit_calls)):
        assert call["center"].shape == (batch, frames, CLASSES) and _same(call["evidence"], c_z)
        # norm() standardises each frame over the class axis (method.md section 1), not each item over T x K
        spread = call["evidence"].std(dim=-1, unbiased=False)
        assert torch.allclose(spread, torch.full((batch, frames), 0.8), atol=1e-3)
        assert torch.allclose(call["evidence"].mean(dim=-1), torch.zeros(batch, frames), atol=1e-5)
        for b in range(batch):
            from_d, from_z = _same(call["center"][b], c_d[b]), _same(call["center"][b], c_z[b])
            assert from_d or from_z, f"logits stage, step {step}, item {b}: its center mixes frames of norm f(d) and norm f(z)"
            if from_d != from_z:
                sources.append(from_d)
    assert set(sources) == {True, False}  # both choices were drawn, on items where they differ

    # joint fine-tuning: what each item is shown is what its planned visits say
    drawn, logit_calls, signal_calls = [], [], []
    real_inputs = conditioning.joint_inputs

    def spy_inputs(coupling, runs, s, d, g, lengths=None):
        inp = real_inputs(coupling, runs, s, d, g, lengths)
        drawn.append((inp, coupling.classifier(d), coupling.classifier(inp.z)))
        return inp

    monkeypatch.setattr(conditioning, "joint_inputs", spy_inputs)
    monkeypatch.setattr(FrameLogitNet, "record", logit_calls)
    monkeypatch.setattr(FrameSignalNet, "record", signal_calls)
    train(cfg, ("joint",), progress=False, accelerator="cpu")
    assert len(drawn) == len(logit_calls) == len(signal_calls) == 4
    kinds = set()
    for step, ((inp, c_d, c_z), lcall, scall) in enumerate(zip(drawn, logit_calls, signal_calls)):
        for b in range(batch):
            lv, sv = inp.logit_visits[b], inp.signal_visits[b]
            kinds |= {lv.center, sv.sees}
            where = f"joint stage, step {step}, item {b} ({lv.center} center, signal sees {sv.sees})"
            assert _same(lcall["evidence"][b], c_z[b]), where
            assert _same(lcall["center"][b], c_d[b] if lv.center == "observation" else c_z[b]), f"{where}: wrong center"
            if sv.sees == "estimate":  # the logit branch's y0_hat (x0 prediction: its output) of this very item
                assert torch.equal(scall["logits"][b], lcall["out"][b]), f"{where}: not its own y0_hat"
            elif sv.sees == "final":
                assert torch.equal(scall["logits"][b], inp.final_logits[b]), f"{where}: not its own y_hat"
            else:
                assert not scall["logits_mask"][b], f"{where}: not the null token"
    assert {"observation", "evidence", "estimate", "final", "null"} <= kinds
