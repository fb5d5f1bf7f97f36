"""`coupled train`: run the stages of a config in order, resuming where asked; writes the checkpoint folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..domains.registry import domain_of, get_domain
from ..engine import Coupling, FrozenClassifier, process_from_dict
from ..errors import CoupledError
from ..atomic import atomic_write_json, atomic_write_text, remove_stale_temporaries
from ..checkpoint import read_json, record_in_manifest, verify_outputs
from .stages import LOSSES, OUTPUTS, STAGES, StageSetup, run_stage


def load_splits(cfg: dict) -> dict:
    """train / val / test splits of the config's data section, from the config's domain."""
    return domain_of(cfg).load_splits(cfg)


def _net_meta(kind: str, net, cfg: dict) -> dict:
    domain = domain_of(cfg)
    meta = {"kind": kind, "domain": domain.name, "arch": domain.arch_of(kind, net), "net": net.cfg.to_dict()}
    if kind == "classifier":
        meta["logit_scale"] = cfg["classifier"]["logit_scale"]
    else:
        section = cfg["signal" if kind == "signal" else "logits"]
        meta.update(process=process_from_dict(section["process"]).to_dict(), prediction=section["prediction"])
    return meta


def _frozen_classifier(output: Path, cfg: dict) -> FrozenClassifier:
    from ..bundle import load_net

    net, meta = load_net(output, "classifier", "classifier", domain_of(cfg).name)
    return FrozenClassifier(net, meta["net"]["num_classes"], meta.get("logit_scale", 0.8))


def build_setup(stage: str, cfg: dict, output: Path) -> StageSetup:
    """Networks, frozen helpers and metadata of one stage; earlier stages' outputs are loaded from `output`."""
    from ..bundle import build_net, wrap_denoiser
    from ..bundle import load_net as _load_net

    domain = domain_of(cfg).name

    def load_net(folder, name, kind):
        return _load_net(folder, name, kind, domain)

    def sized(section: str, kind: str):
        net_cfg = {"num_classes": cfg["classifier"]["net"].get("num_classes", 10), **cfg[section]["net"]}
        return build_net(kind, net_cfg, domain)

    px = process_from_dict(cfg["signal"]["process"])
    py = process_from_dict(cfg["logits"]["process"])
    torch.manual_seed(cfg["seed"] * 1009 + STAGES.index(stage))  # network initialisation is part of the seed's results
    if stage == "classifier":
        net = build_net("classifier", cfg["classifier"]["net"], domain)
        return StageSetup(stage, cfg, {"classifier": net}, {"classifier": _net_meta("classifier", net, cfg)})
    if stage == "signal":
        net = sized("signal", "signal")
        return StageSetup(stage, cfg, {"signal": net}, {"signal": _net_meta("signal", net, cfg)}, {"signal_process": px})
    if stage == "sequential":  # sequential's own denoiser: null-token training continued from pre-training
        net, _ = load_net(output, "signal_pretrained", "signal")
        net = net.requires_grad_(True).train()
        return StageSetup(stage, cfg, {"signal": net}, {"signal": _net_meta("signal", net, cfg)}, {"signal_process": px})
    if stage == "finetuned":  # the reference row: the clean classifier fine-tuned on corrupted digits
        net, _ = load_net(output, "classifier", "classifier")
        net = net.requires_grad_(True).train()
        return StageSetup(stage, cfg, {"classifier": net}, {"classifier": _net_meta("classifier", net, cfg)})
    classifier = _frozen_classifier(output, cfg)
    if stage == "card":
        pc = process_from_dict(cfg["card"]["process"])
        net = sized("card", "logits")
        meta = {**_net_meta("logits", net, cfg), "process": pc.to_dict(), "prediction": cfg["card"]["prediction"]}
        return StageSetup(stage, cfg, {"card": net}, {"card": meta}, {"classifier": classifier, "logit_process": pc})
    if stage == "logits":
        sig_net, smeta = load_net(output, "signal_pretrained", "signal")
        net = sized("logits", "logits")
        frozen = {"classifier": classifier, "signal_denoiser": wrap_denoiser("signal", sig_net, smeta), "logit_process": py}
        return StageSetup(stage, cfg, {"logits": net}, {"logits": _net_meta("logits", net, cfg)}, frozen)
    sig_net, smeta = load_net(output, "signal_pretrained", "signal")
    log_net, lmeta = load_net(output, "logits_pretrained", "logits")
    nets = {"signal": sig_net.requires_grad_(True).train(), "logits": log_net.requires_grad_(True).train()}
    metas = {k: _net_meta(k, v, cfg) for k, v in nets.items()}
    # the nets being trained, wrapped as the strategies see them (weights shared, not copied), with the sampling
    # chains: joint_loss draws each item's conditioning from the coupled methods' plans on `joint.grids`
    from ..bundle import chains_from_sampling
    from ..engine.conditioning import conditioning_record
    from .conditioning import planned_runs

    signal, logits = wrap_denoiser("signal", sig_net, smeta), wrap_denoiser("logits", log_net, lmeta)
    coupling = Coupling(classifier, signal, logits, *chains_from_sampling(px, py, cfg["sampling"]))
    methods, grids = joint_conditioning(cfg)
    frozen = {"classifier": classifier, "coupling": coupling, "signal_denoiser": signal, "logit_denoiser": logits,
              "plans": planned_runs(coupling, methods, grids)}
    for meta in metas.values():
        meta["conditioning"] = conditioning_record(methods, grids, cfg["joint"]["null_dropout"])
    return StageSetup(stage, cfg, nets, metas, frozen)


def joint_conditioning(cfg: dict) -> tuple[dict, list]:
    """The coupled methods (with their options) and [signal_steps, logit_steps] grids joint training plans
    for: `joint.methods` / `joint.grids`, else the coupled methods of `sampling.methods` on the sampling steps."""
    from ..bundle import BUNDLE_OPTIONS
    from ..engine.conditioning import PLANNED

    joint, sampling = cfg["joint"], cfg["sampling"]
    methods = joint["methods"] or {k: v for k, v in sampling["methods"].items() if k in PLANNED}
    methods = {k: {o: v for o, v in opts.items() if o not in BUNDLE_OPTIONS} for k, opts in methods.items()}
    grids = joint["grids"] or [[sampling["signal"]["steps"], sampling["logits"]["steps"]]]
    return methods, grids


@torch.no_grad()
def clean_accuracy(classifier: torch.nn.Module, data, batch: int = 500, domain=None) -> float:
    """The classifier's accuracy on a clean split, its logits read out by `domain` (default: argmax)."""
    readout = get_domain(domain).readout
    classifier.eval()
    hits = sum((readout(classifier(data.signals[i:i + batch])) == data.labels[i:i + batch]).sum().item()
               for i in range(0, len(data), batch))
    return hits / len(data)


def write_pipeline(cfg: dict, output: Path) -> None:
    """pipeline.json: the sampling settings and method options the bundle is evaluated with."""
    atomic_write_json(output / "pipeline.json", {"sampling": cfg["sampling"], "logit_scale": cfg["classifier"]["logit_scale"],
                                                 "name": cfg["name"], "severities": cfg["corruptions"]["severities"]})
    record_in_manifest(output / "pipeline.json")


# the earlier outputs each stage loads (checked before anything is written or trained)
NEEDS = {"logits": ("classifier", "signal_pretrained"), "joint": ("classifier", "signal_pretrained", "logits_pretrained"),
         "card": ("classifier",), "finetuned": ("classifier",), "sequential": ("signal_pretrained",)}


def _is_rank_zero() -> bool:
    """False in the processes a DDP launcher started for ranks > 0 (they must not write shared files)."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def check_stages(stages, output: Path) -> None:
    """One-line error when a stage would need an output that neither the folder nor an earlier stage provides."""
    produced = set()
    for stage in stages:
        for name in NEEDS.get(stage, ()):
            if name not in produced and not (output / f"{name}.safetensors").is_file():
                maker = next(s for s, outs in OUTPUTS.items() if name in outs)
                raise CoupledError(f"stage {stage!r} needs {output / name}.safetensors, which does not exist; "
                                   f"train stage {maker!r} first (add it to --stages)")
        produced.update(OUTPUTS.get(stage, ()))


def train(cfg: dict, stages=STAGES, *, resume: bool = False, devices: int = 1, accelerator: str = "auto",
          max_steps: int | None = None, progress: bool = True) -> list[dict]:
    """Run `stages` of `cfg` in order into cfg['output']; a stage already finished is skipped on resume."""
    for s in stages:
        if s not in STAGES:
            raise CoupledError(f"unknown stage {s!r}; choose from: {', '.join(STAGES)}")
    output = Path(cfg["output"])
    if output.exists() and not output.is_dir():
        raise CoupledError(f"output {output} is an existing file; pass a folder with --output or `output:` in the config")
    check_stages(stages, output)
    splits = load_splits(cfg)  # data problems surface before anything is written
    if cfg["train"]["num_threads"]:
        torch.set_num_threads(cfg["train"]["num_threads"])
    output.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():  # what an interrupted write left behind
        remove_stale_temporaries(output)
        remove_stale_temporaries(output / "train_state")
    atomic_write_json(output / "config.json", {k: v for k, v in cfg.items() if k != "config_path"})
    summaries = []
    for stage in stages:
        done_marker = output / "train_state" / f"{stage}.done.json"
        wanted = max_steps if max_steps is not None else cfg[stage]["steps"]
        if (resume and done_marker.is_file() and read_json(done_marker).get("steps") == wanted
                and verify_outputs(output, OUTPUTS[stage]) is None):  # else rewrite them from the training state
            summaries.append({**read_json(done_marker), "skipped": True})
            if stage == "joint" and _is_rank_zero():  # the sampling settings may have changed: they do not touch the weights
                write_pipeline(cfg, output)
            continue
        started = time.time()
        setup = build_setup(stage, cfg, output)
        summary = run_stage(setup, LOSSES[stage], splits["train"], output, resume=resume, devices=devices,
                            accelerator=accelerator, max_steps=max_steps, progress=progress)
        if summary["rank"] != 0:
            continue
        if stage == "classifier":
            summary["val_accuracy"] = clean_accuracy(setup.nets["classifier"], splits["val"], domain=domain_of(cfg))
            summary["test_accuracy"] = clean_accuracy(setup.nets["classifier"], splits["test"], domain=domain_of(cfg))
        if stage == "joint":
            write_pipeline(cfg, output)
        summary["wall_seconds"] = round(time.time() - started, 1)
        atomic_write_json(done_marker, summary)
        _append_log(output, summary)
        summaries.append(summary)
    return summaries


def _append_log(output: Path, summary: dict) -> None:
    path = output / "training_log.jsonl"
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(summary) + "\n")
