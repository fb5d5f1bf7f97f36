"""End to end through the real `coupled` command: train, evaluate, resume, DDP, frozen classifier, errors."""

import hashlib
import json
import signal
import subprocess
import sys
import time

import pytest

from .conftest import TINY, run_cli, write_config


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_writes_a_loadable_bundle(trained):
    _, ckpt = trained
    for name in ("classifier", "signal", "logits", "signal_pretrained", "logits_pretrained", "card",
                 "classifier_finetuned", "signal_sequential", "signal_predictive"):
        assert (ckpt / f"{name}.safetensors").is_file() and (ckpt / f"{name}.json").is_file()
    meta = json.loads((ckpt / "signal.json").read_text())
    assert meta["process"]["kind"] == "vp" and meta["net"]["channels"] == [8, 16]
    assert json.loads((ckpt / "pipeline.json").read_text())["sampling"]["signal"]["steps"] == 2
    log = [json.loads(line) for line in (ckpt / "training_log.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in log] == ["classifier", "signal", "logits", "joint", "card", "finetuned", "sequential", "predictive"]
    assert any((ckpt / "logs").rglob("metrics.csv")) and any((ckpt / "logs").rglob("events.out.tfevents*"))


def test_resume_of_a_finished_run_takes_new_sampling_settings_and_keeps_the_weights(trained, tmp_path):
    """Sampling settings do not touch training: `coupled train --resume` after a config's `sampling` changed
    skips every finished stage and rewrites pipeline.json, so `from_pretrained` uses the new settings."""
    import shutil

    _, ckpt = trained
    shutil.copytree(ckpt, tmp_path / "ckpt")
    weights = {p.name: _sha(p) for p in (tmp_path / "ckpt").glob("*.safetensors")}
    cfg = write_config(tmp_path, sampling={**TINY["sampling"], "signal_guidance": 2.0})
    out = run_cli("train", cfg, "--resume", "--quiet", "--accelerator", "cpu")
    assert out.stdout.count("'skipped': True") == 8
    assert json.loads((tmp_path / "ckpt" / "pipeline.json").read_text())["sampling"]["signal_guidance"] == 2.0
    assert {p.name: _sha(p) for p in (tmp_path / "ckpt").glob("*.safetensors")} == weights


def test_classifier_frozen_through_later_stages(tmp_path):
    cfg = write_config(tmp_path)
    run_cli("train", cfg, "--stages", "classifier", "--quiet", "--accelerator", "cpu")
    before = _sha(tmp_path / "ckpt" / "classifier.safetensors")
    run_cli("train", cfg, "--stages", "signal", "logits", "joint", "card", "finetuned", "--quiet", "--accelerator", "cpu")
    assert _sha(tmp_path / "ckpt" / "classifier.safetensors") == before
    # the fine-tuned reference classifier is a copy that did train
    assert _sha(tmp_path / "ckpt" / "classifier_finetuned.safetensors") != before


def test_evaluate_writes_results_report_and_plots(trained, tmp_path):
    cfg, _ = trained
    out = tmp_path / "eval"
    proc = run_cli("evaluate", cfg, "--max-items", "24", "--levels", "heavy", "--corruptions", "pixel_noise",
                   "--out", out, "--quiet", "--split", "val")
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == "coupled-results/1" and res["split"] == "val" and res["domain"] == "image"
    methods = {r["method"] for r in res["rows"]}
    assert methods == {"noisy", "sequential", "logits_only", "parallel", "alternating", "nested"}
    for row in res["rows"]:
        assert {"method", "corruption", "severity", "metric", "readout", "value", "ci95", "delta_vs_sequential",
                "delta_ci95", "calls", "seconds_per_item", "n_items", "seeds"} <= set(row)
        assert row["n_items"] == 24 and row["seeds"] == ([0] if row["method"] == "noisy" else [0, 1])
    assert {r["readout"] for r in res["rows"] if r["method"] == "logits_only"} == {"logits"}  # f(d) is noisy's row
    par = [r for r in res["rows"] if r["method"] == "parallel" and r["readout"] == "classifier"][0]
    # 2 steps, pc (2 calls/step), switch at 1; the tiny config's guidance 1 runs one pass per call
    assert par["calls"] == {"signal": 2, "logits": 4, "classifier": 3, "signal_passes": 2, "logits_passes": 4}
    assert "| parallel" in proc.stdout and (out / "report.md").is_file()
    from PIL import Image
    for png in ("accuracy.png", "examples.png"):
        with Image.open(out / png) as im:  # a real, non-trivial picture, whatever the tiny models got right
            assert im.format == "PNG" and min(im.size) > 100 and len(set(im.convert("L").getdata())) > 8


def test_equal_cost_baselines_and_reference_rows_through_the_runner(trained):
    """Every baseline of issue 7 runs on a real (tiny) bundle with its own trained networks, interleaved with
    the others, and reports its calls (guided passes counted) and measured seconds."""
    import torch

    from coupled.config import load_config
    from coupled.bundle import load_bundle
    from coupled.evaluation.runner import MethodSpec, evaluate
    from coupled.domains.registry import domain_of

    cfg_path, ckpt = trained
    cfg = load_config(cfg_path)
    bundle = load_bundle(ckpt)
    data = domain_of(cfg).load_splits(cfg)["val"].subset(torch.arange(0, 500, 25))
    specs = [MethodSpec("noisy", "noisy"), MethodSpec("finetuned_classifier", "finetuned_classifier"),
             MethodSpec("sequential", "sequential", {"signal_steps": 1, "signal_net": "sequential"}),
             MethodSpec("one_step", "one_step", {"signal_net": "pretrained"}),
             MethodSpec("purification", "purification", {"noise_fraction": 0.5, "signal_steps": 2, "signal_eta": 1.0}),
             MethodSpec("sequential_ensemble", "sequential_ensemble", {"k": 3, "signal_steps": 1}),
             MethodSpec("card", "card", {"logit_samples": 2}),
             MethodSpec("alternating", "alternating", {"rounds": 2, "signal_steps": 1, "signal_guidance": 3.0})]
    records, _ = evaluate(bundle, data, {"pixel_noise": {"heavy": 0.6}}, specs=specs, seeds_for_level=lambda lv: [0, 1],
                          batch_size=8, progress=False)
    by = {}
    for r in records:
        by.setdefault(r["method"], []).append(r)
    assert [len(by[s.label]) for s in specs] == [1, 1, 2, 2, 2, 2, 2, 2]  # deterministic rows run one seed
    assert by["card"][0]["score_classifier"] is None and by["card"][0]["score_logits"].shape == (20,)
    assert by["sequential_ensemble"][0]["calls"]["classifier"] == 3
    # round 1 of Alternating has no logits to guide by; round 2 runs the conditional and the null pass
    assert by["alternating"][0]["calls"]["signal"] == 2 and by["alternating"][0]["calls"]["signal_passes"] == 3
    assert all(r["seconds_per_item"] > 0 for rs in by.values() for r in rs)
    # one_step is one call of the pre-trained net, sequential at one step of its own net: different nets
    assert (by["one_step"][0]["psnr"] != by["sequential"][0]["psnr"]).any()
    # only deterministic methods asked for, over two seeds: the second seed has nothing left to run
    only, _ = evaluate(bundle, data, {"pixel_noise": {"heavy": 0.6}}, specs=specs[:2], seeds_for_level=lambda lv: [0, 1],
                       batch_size=8, progress=False)
    assert sorted(r["method"] for r in only) == ["finetuned_classifier", "noisy"]


def test_gradient_guidance_through_the_classifier_is_a_bundle_option(trained):
    """`classifier_gradient` wraps the signal denoiser of any coupled strategy: 0 is the strategy itself, a
    positive step changes its signal estimate, a bad value is one clear error."""
    import torch

    from coupled.bundle import load_bundle
    from coupled.errors import CoupledError
    from coupled.evaluation.runner import MethodSpec, run_specs

    _, ckpt = trained
    bundle = load_bundle(ckpt)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    opts = {"rounds": 2, "signal_steps": 1, "logit_steps": 2}
    specs = [MethodSpec(f"g{g}", "alternating", {**opts, "classifier_gradient": g}) for g in (0.0, 0.5)]
    specs.append(MethodSpec("plain", "alternating", opts))
    out = run_specs(bundle, x, torch.zeros(6, dtype=torch.long), x, specs, seed=0, batch_size=6, device=torch.device("cpu"),
                    keep_x_hat=True)
    assert torch.equal(out["g0.0"]["x_hat"], out["plain"]["x_hat"])
    assert not torch.equal(out["g0.5"]["x_hat"], out["plain"]["x_hat"])
    with pytest.raises(CoupledError, match="classifier_gradient"):
        bundle.prepare("alternating", {"classifier_gradient": -1})


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    steps = 40
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    overrides = {"signal": {**__import__("tests.image.conftest", fromlist=["TINY"]).TINY["signal"], "steps": steps},
                 "train": {"checkpoint_every": 4, "log_every": 1}}
    cfg_a, cfg_b = write_config(a, **overrides), write_config(b, **overrides)
    for cfg in (cfg_a, cfg_b):
        run_cli("train", cfg, "--stages", "classifier", "--quiet", "--accelerator", "cpu")
    run_cli("train", cfg_a, "--stages", "signal", "--quiet", "--accelerator", "cpu")
    # b: killed hard once its first checkpoint is on disk, then resumed
    proc = subprocess.Popen([sys.executable, "-m", "coupled.cli", "train", str(cfg_b), "--stages", "signal", "--quiet",
                             "--accelerator", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = b / "ckpt" / "train_state" / "signal.json"
    deadline = time.time() + 120
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 0 < killed_at < steps, "the run finished before it could be interrupted"
    out = run_cli("train", cfg_b, "--stages", "signal", "--resume", "--accelerator", "cpu", "--quiet")
    assert f"'resumed_from': {killed_at}" in out.stdout
    digest = lambda d: (d / "ckpt" / "train_state" / "signal.rank0.digest").read_text()  # noqa: E731
    assert digest(a) == digest(b)
    assert _sha(a / "ckpt" / "signal_pretrained.safetensors") == _sha(b / "ckpt" / "signal_pretrained.safetensors")


def test_ddp_two_processes_agree(tmp_path):
    cfg = write_config(tmp_path)
    run_cli("train", cfg, "--stages", "classifier", "signal", "--devices", "2", "--accelerator", "cpu",
            "--max-steps", "4", "--quiet", timeout=400)
    state = tmp_path / "ckpt" / "train_state"
    for stage in ("classifier", "signal"):
        r0, r1 = (state / f"{stage}.rank{r}.digest" for r in (0, 1))
        assert r0.is_file() and r1.is_file(), f"{stage}: both ranks must report"
        assert r0.read_text() == r1.read_text(), f"{stage}: ranks disagree"


def _error(proc):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("coupled: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_cli_errors_are_one_line(trained, tmp_path):
    cfg, ckpt = trained
    assert "no such config file" in _error(run_cli("train", tmp_path / "nope.yaml", check=False))
    bad = tmp_path / "bad.yaml"
    bad.write_text("signal: {stepz: 3}\n")
    assert "unknown config key 'signal.stepz'" in _error(run_cli("train", bad, check=False))
    assert "unknown corruption" in _error(run_cli("evaluate", cfg, "--corruptions", "fog", "--quiet", check=False))
    assert "no such checkpoint folder" in _error(run_cli("evaluate", cfg, "--checkpoint", tmp_path / "none", check=False))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ckpt.glob("*.json"):
        (broken / f.name).write_text(f.read_text())
    for f in ckpt.glob("*.safetensors"):
        (broken / f.name).write_bytes(f.read_bytes()[:100])
    assert "corrupt weights file" in _error(run_cli("evaluate", cfg, "--checkpoint", broken, "--quiet", check=False))


def test_wrong_class_count_is_reported(trained, tmp_path):
    from PIL import Image
    import numpy as np
    import yaml

    cfg, ckpt = trained
    root = tmp_path / "letters"
    for k in range(12):  # 12 classes against a 10-class classifier
        (root / f"c{k:02d}").mkdir(parents=True)
        for j in range(5):
            Image.fromarray(np.full((28, 28), 20 * k + j, np.uint8)).save(root / f"c{k:02d}" / f"{j}.png")
    user = yaml.safe_load(cfg.read_text())
    user["data"] = {"kind": "folder", "root": str(root)}
    other = tmp_path / "letters.yaml"
    other.write_text(yaml.safe_dump(user))
    msg = _error(run_cli("evaluate", other, "--checkpoint", ckpt, "--quiet", check=False))
    assert "12 classes" in msg and "10" in msg


def test_classify_files_reports_bad_files_and_goes_on(trained, tmp_path):
    import numpy as np
    from PIL import Image

    from coupled.domains.image.data import load_mnist5k

    _, ckpt = trained
    test = load_mnist5k()["test"]
    good = tmp_path / "digit.png"
    Image.fromarray(((test.signals[0, 0].numpy() + 1) * 127.5).astype(np.uint8)).save(good)
    arr = tmp_path / "digit.npy"
    np.save(arr, ((test.signals[1, 0].numpy() + 1) / 2).astype(np.float32))
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(big)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    proc = run_cli("classify", good, arr, big, junk, tmp_path / "missing.png", "--checkpoint", ckpt,
                   "--method", "sequential", check=False)
    lines = [line for line in proc.stdout.strip().splitlines() if not line.startswith("# file\tclass\tp = ")]
    assert proc.returncode == 1 and len(lines) == 5
    assert "big.png\terror:" in proc.stdout and "expects (1, 28, 28)" in proc.stdout
    assert "junk.jpg\terror: " in proc.stdout and "missing.png\terror: " in proc.stdout
    assert any(l.startswith(str(good)) and "\tp=" in l for l in lines)
    assert any(l.startswith(str(arr)) and "\tp=" in l for l in lines)
    assert "3 of 5 files classified" not in proc.stderr and "2 of 5 files classified" in proc.stderr


def test_pipeline_from_pretrained(trained):
    import torch

    from coupled import CoupledPipeline
    from coupled.domains.image.data import load_mnist5k

    _, ckpt = trained
    pipe = CoupledPipeline.from_pretrained(ckpt, device="cpu")
    x = load_mnist5k()["test"].signals[:5]
    out = pipe(x, "parallel", seed=3)
    assert out["predictions"].shape == (5,) and out["enhanced"].shape == x.shape
    torch.testing.assert_close(out["probabilities"].sum(-1), torch.ones(5))
    again = pipe(x, "parallel", seed=3)
    assert torch.equal(out["enhanced"], again["enhanced"])
    from coupled.errors import CoupledError

    with pytest.raises(CoupledError, match="expects"):
        pipe(torch.zeros(2, 1, 32, 32))


def test_signal_logits_off_makes_parallel_enhance_like_sequential(trained):
    """The ablation `sampling.signal_logits: false`: with the null token always and DDIM eta 0, Parallel's
    x_hat is exactly sequential's (the signal chain draws its noise first), while the default differs."""
    import torch

    from coupled.config import load_config
    from coupled.domains.image.data import load_mnist5k
    from coupled.bundle import load_bundle
    from coupled.engine import item_generators, run_method

    cfg_path, ckpt = trained
    sampling = load_config(cfg_path)["sampling"]
    d = load_mnist5k()["val"].signals[:6] * 0.5
    run = lambda b, m: run_method(m, b.coupling, d, item_generators(range(6))).x_hat  # noqa: E731
    off = load_bundle(ckpt, sampling={**sampling, "signal_logits": False})
    on = load_bundle(ckpt, sampling=sampling)
    assert torch.equal(run(off, "parallel"), run(off, "sequential"))
    assert not torch.equal(run(on, "parallel"), run(on, "sequential"))
    guided = load_bundle(ckpt, sampling={**sampling, "signal_guidance": 3.0})  # through a real bundle and strategy
    assert torch.equal(run(guided, "parallel"), run(guided, "parallel"))
    assert not torch.equal(run(guided, "parallel"), run(on, "parallel"))
    assert torch.equal(run(guided, "sequential"), run(on, "sequential"))  # no logits, nothing to guide
    # a method's own weight (sampling.methods.NAME.signal_guidance) overrides the global one for that method
    coupling, _, opts = guided.prepare("parallel", {"signal_guidance": 1.0, "switch_fraction": 0.5})
    assert opts == {"switch_fraction": 0.5}
    plain = run_method("parallel", coupling, d, item_generators(range(6)), **opts).x_hat
    assert torch.equal(plain, run_method("parallel", on.coupling, d, item_generators(range(6)), switch_fraction=0.5).x_hat)
    assert guided.prepare("alternating", {"rounds": 2}) == (guided.coupling, "alternating", {"rounds": 2})
    coupling, _, opts = off.prepare("parallel", {"signal_guidance": 3.0, "switch_fraction": 0.5})  # the ablation holds
    assert torch.equal(run_method("parallel", coupling, d, item_generators(range(6)), **opts).x_hat,
                       run(off, "sequential"))


def test_joint_cond_lr_scale_gives_the_logit_path_its_own_rate():
    from coupled.domains.image.networks import SignalUNet, SignalUNetConfig
    from coupled.training.stages import StageSetup, _make_module_class, joint_loss

    net = SignalUNet(SignalUNetConfig(channels=(8, 16), mid_blocks=1, time_dim=32))
    for scale, lrs in ((1.0, [2e-4]), (10.0, [2e-4, 2e-3])):
        setup = StageSetup("joint", {"joint": {"lr": 2e-4, "cond_lr_scale": scale}}, {"signal": net}, {})
        opt = _make_module_class()(setup, joint_loss, 0, None, None).configure_optimizers()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(lrs)
        if scale != 1.0:
            assert len(opt.param_groups[1]["params"]) == 5  # logit_mlp (2 linear layers) and the null token


def test_signal_guidance_extrapolates_from_the_null_token_to_the_logits():
    """`sampling.signal_guidance: w` gives null + w (cond - null) of the raw net output: w = 1 is the plain
    conditional net, w = 0 the null token (= `signal_logits: false`), w = 3 extrapolates; a bad w is one line."""
    import torch

    from coupled.bundle import GuidedLogits, signal_guidance
    from coupled.domains.image.networks import SignalUNet, SignalUNetConfig
    from coupled.errors import CoupledError

    torch.manual_seed(0)
    net = SignalUNet(SignalUNetConfig(channels=(8, 16), mid_blocks=1, time_dim=32)).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # the zero-initialised output would hide everything
    x, d, t, y = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28), torch.rand(3), torch.randn(3, 10)
    with torch.no_grad():
        cond, null = net(x, t, d, logits=y), net(x, t, d)
        assert not torch.allclose(cond, null)
        assert torch.equal(GuidedLogits(net, 1.0)(x, t, d, logits=y), cond)
        assert torch.equal(GuidedLogits(net, 0.0)(x, t, d, logits=y), null)
        torch.testing.assert_close(GuidedLogits(net, 3.0)(x, t, d, logits=y), null + 3 * (cond - null), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(GuidedLogits(net, 3.0)(x, t, d), null)  # no logits: nothing to guide towards
    assert signal_guidance({"signal_guidance": 2}) == 2.0
    assert signal_guidance({"signal_guidance": 2, "signal_logits": False}) == 0.0
    for bad in (-1, "strong", float("nan")):
        with pytest.raises(CoupledError, match="signal_guidance must be a number"):
            signal_guidance({"signal_guidance": bad})


def test_joint_training_plans_its_grids_and_records_them(trained, tmp_path):
    """`joint.grids` / `joint.methods` choose the planned runs joint training draws from: other grids train
    other weights, the same ones twice; the JSON records the conditioning; a bad grid is one line."""
    import shutil

    _, ckpt = trained
    runs = []
    # run c differs from a and b in joint.grids alone (its grid is the sampling steps': what training falls back to)
    for name, grids in (("a", [[1, 3], [2, 2]]), ("b", [[1, 3], [2, 2]]), ("c", [[2, 2]])):
        folder = tmp_path / name
        shutil.copytree(ckpt, folder / "ckpt")
        cfg = write_config(folder, joint={**TINY["joint"], "grids": grids, "methods": {"alternating": {"rounds": 2}}})
        run_cli("train", cfg, "--stages", "joint", "--quiet", "--accelerator", "cpu")
        runs.append(_sha(folder / "ckpt" / "signal.safetensors"))
    assert runs[0] == runs[1], "the same config trained other weights"
    assert runs[0] != _sha(ckpt / "signal.safetensors"), "joint training left the weights as they were"
    assert runs[0] != runs[2], "joint.grids changed nothing: training does not draw from the planned grids"
    record = json.loads((tmp_path / "a" / "ckpt" / "signal.json").read_text())["conditioning"]
    assert record == {"rule": "engine.plan", "methods": {"alternating": {"rounds": 2}}, "grids": [[1, 3], [2, 2]],
                      "null_dropout": 0.2}
    for grids in ([[0, 5]], [[1]], "5x5"):
        bad = write_config(tmp_path / "a", joint={**TINY["joint"], "grids": grids})
        proc = run_cli("train", bad, "--stages", "joint", "--quiet", "--accelerator", "cpu", check=False)
        assert proc.returncode == 2 and "config key joint.grids must be" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_with_validation_picks_writes_the_cost_matched_headline(trained, tmp_path):
    """Validation picks (as benchmarks/fair_comparison.py writes them) drive `coupled evaluate --picks`: each
    method runs as tuned, and results.json carries the headline with its interval and per-seed deltas."""
    cfg, _ = trained
    from coupled.evaluation import fair

    def pick(label, method, settings, readout, acc, sec):
        return {"corruption": "pixel_noise", "label": label, "method": method, "settings": settings, "readout": readout,
                "accuracy": acc, "seconds_per_item": sec, "calls": {}, "seeds": [0]}

    table = [pick("sequential[1]", "sequential", {"signal_steps": 1, "signal_net": "sequential"}, "classifier", 0.5, 0.01),
             pick("sequential_ensemble[2]", "sequential_ensemble", {"k": 2, "signal_steps": 1}, "classifier", 0.55, 0.02),
             pick("card[2]", "card", {"logit_steps": 2}, "logits", 0.3, 0.005),
             pick("nested[1,2]", "nested", {"signal_steps": 1, "logit_steps": 2, "refresh_every": 1}, "logits", 0.6, 0.03),
             pick("noisy", "noisy", {}, "classifier", 0.2, 0.001)]
    picks = tmp_path / "picks.json"
    fair.dump({"split": "val", "n_items": 16, "seeds": [0], "candidates": table, "picks": fair.select(table)}, picks)
    out = tmp_path / "eval"
    proc = run_cli("evaluate", cfg, "--picks", picks, "--max-items", "16", "--levels", "heavy", "--seeds", "0", "1",
                   "--out", out, "--quiet", "--split", "val")
    res = json.loads((out / "results.json").read_text())
    (h,) = res["headline"]
    assert h["coupled"]["method"] == "nested" and h["baseline"]["method"] == "sequential_ensemble"
    assert len(h["per_seed_delta"]) == 2 and h["delta_ci95"][0] <= h["delta"] <= h["delta_ci95"][1]
    labels = {r["method"] for r in res["rows"]}
    assert {"sequential", "sequential@5", "sequential_ensemble", "card", "nested", "noisy"} <= labels
    seq = next(r for r in res["rows"] if r["method"] == "sequential")
    assert seq["settings"] == {"signal_steps": 1, "signal_net": "sequential"} and seq["delta_vs_sequential"] == 0
    assert "Cost-matched headline" in proc.stdout
    from PIL import Image
    for png in ("pareto.png", "deltas.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and min(im.size) > 300 and len(set(im.convert("L").getdata())) > 8


def test_short_run_saves_trained_weights_through_the_ema_warm_up(tmp_path):
    """`ema_decay` 0.999 with the warm-up min(decay, (1 + n) / (10 + n)): 30 signal steps save weights that moved
    most of the way from their initialisation to the raw trained weights (a flat 0.999 moves them ~2%)."""
    import torch
    from safetensors.torch import load_file

    from coupled.config import load_config
    from coupled.training.run import build_setup

    cfg_path = write_config(tmp_path, signal={**TINY["signal"], "steps": 30, "ema_decay": 0.999})
    run_cli("train", cfg_path, "--stages", "signal", "--quiet", "--accelerator", "cpu")
    state_dir = tmp_path / "ckpt" / "train_state"
    state = json.loads((state_dir / "signal.json").read_text())
    assert state["ema_updates"] == 30
    tensors = load_file(state_dir / state["weights"])
    init = build_setup("signal", load_config(cfg_path), tmp_path / "ckpt").nets["signal"].state_dict()
    saved = load_file(tmp_path / "ckpt" / "signal_pretrained.safetensors")
    moved, trained = 0.0, 0.0
    for k, v0 in init.items():
        if v0.is_floating_point():
            raw = tensors[f"net.signal.{k}"]
            assert torch.equal(saved[k], tensors[f"ema.signal.{k}"])
            moved += ((saved[k] - v0) * (raw - v0)).sum().item()  # the EMA's progress along the raw weights' path
            trained += ((raw - v0) ** 2).sum().item()
    assert trained > 0 and moved / trained > 0.8


def test_ema_decay_is_visible_in_the_bundled_config():
    from pathlib import Path

    import yaml

    from coupled.defaults import DEFAULTS

    user = yaml.safe_load((Path(__file__).parents[2] / "configs" / "mnist.yaml").read_text())
    for section in ("signal", "logits", "joint"):
        assert user[section]["ema_decay"] == DEFAULTS[section]["ema_decay"] == 0.999
    # the bundled weights were trained with a flat decay: the bundled config keeps it, so a retrain reproduces them
    for section in ("signal", "logits", "joint", "card", "sequential"):
        assert user[section]["ema_warmup"] is False and DEFAULTS[section]["ema_warmup"] is True


def test_ema_without_warm_up_is_the_flat_decay():
    import torch

    from coupled.training.ema import EMA

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    flat, warm = EMA(net, 0.9, warmup=False), EMA(net, 0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    flat.update(net), warm.update(net)
    assert flat.shadow["weight"].item() == pytest.approx(0.1) and warm.shadow["weight"].item() == pytest.approx(0.9)
