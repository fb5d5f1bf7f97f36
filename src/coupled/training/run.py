"""`coupled train`: run the stages of a config in order, resuming where asked; writes the checkpoint folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..classifiers import classifier_fingerprint, install_user_classifier, is_user_classifier, prepare_user_classifier
from ..domains.registry import domain_of, domain_spec
from ..engine import Coupling, FrozenClassifier, process_from_dict
from ..errors import CoupledError
from ..seeds import stream_seed
from ..threads import use_threads
from ..atomic import atomic_write_json, atomic_write_text, remove_stale_temporaries
from ..checkpoint import STAGE_OUTPUTS, load_state, load_weights, read_json, record_in_manifest, verify_outputs
from .stages import LOSSES, STAGES, StageSetup, run_stage


def _net_meta(kind: str, net, cfg: dict) -> dict:
    domain = domain_of(cfg)
    meta = {"kind": kind, "domain": domain.name, "arch": domain.arch_of(kind, net), "net": net.cfg.to_dict()}
    if domain_spec(domain.name) != domain.name:  # a plug-in: where a fresh process finds it
        meta["domain_spec"] = domain_spec(domain.name)
    if kind == "classifier":
        meta["logit_scale"] = cfg["classifier"]["logit_scale"]
    else:
        section = cfg["signal" if kind == "signal" else "logits"]
        meta.update(process=process_from_dict(section["process"]).to_dict(), prediction=section["prediction"])
        meta.update(domain.signal_meta(cfg))  # what the chains run on (e.g. speech's representation)
    if kind == "signal":  # sampling clips the estimate to the domain's range (None: unbounded, e.g. spectrograms)
        meta["clip"] = None if domain.signal_range is None else list(domain.signal_range)
    return meta


def _frozen_classifier(output: Path, cfg: dict) -> tuple[FrozenClassifier, FrozenClassifier]:
    """The bundle's frozen classifier as the chains call it (the domain's `wrap_classifier` for the config's
    `signal_meta`) and as trained, on raw items (what its fingerprint reads); one network, loaded once."""
    from ..bundle import load_net

    domain = domain_of(cfg)
    net, meta = load_net(output, "classifier", "classifier", domain.name)
    k, scale = meta.get("num_classes") or meta["net"]["num_classes"], meta.get("logit_scale", 0.8)
    wrapped = domain.wrap_classifier(net, domain.signal_meta(cfg))
    raw = FrozenClassifier(net, k, scale)
    return (raw if wrapped is net else FrozenClassifier(wrapped, k, scale)), raw


def _num_classes(cfg: dict, output: Path) -> int:
    """The classes the denoisers are sized for: the built-in classifier's `net.num_classes` (default 10), or the
    output width of a user's classifier, recorded when it was installed in `output`."""
    if is_user_classifier(cfg):
        return int(read_json(output / "classifier.json")["num_classes"])
    return cfg["classifier"]["net"].get("num_classes", 10)


def _denoiser(cfg: dict, section: str, kind: str, num_classes: int):
    """A fresh network of config section `section` ('signal', 'logits', 'card') for `num_classes` classes."""
    from ..bundle import build_net

    return build_net(kind, {"num_classes": num_classes, **cfg[section]["net"]}, domain_of(cfg).name)


# the sections whose stage may start from given weights (`init`), with the kind of network they train
INIT_SECTIONS = {"signal": "signal", "logits": "logits", "card": "logits"}


def apply_init(cfg: dict, section: str, net) -> str | None:
    """Load config key `<section>.init` (a .safetensors file) into `net`, the stage's freshly built network;
    returns the path loaded (None without one). A file written by `coupled train` (its JSON beside it) must record
    the architecture, network config and prediction this section builds; one-line errors otherwise."""
    path = cfg[section].get("init")
    if not path:
        return None
    key, p = f"config key {section}.init", Path(path)
    if p.suffix != ".safetensors":
        raise CoupledError(f"{key} must name a .safetensors file (e.g. checkpoints/mnist/{section}.safetensors), got {path!r}")
    if not p.is_file():
        raise CoupledError(f"{key}: no such file {p} (paths are relative to the working directory); name weights "
                           "written by `coupled train`, or drop the key to start from a random initialisation")
    kind = INIT_SECTIONS[section]
    try:
        if (p.parent / f"{p.stem}.json").is_file():
            tensors, meta = load_weights(p.parent, p.stem)  # checked against the folder's manifest
            domain = domain_of(cfg)
            here = {"arch": domain.arch_of(kind, net), "prediction": cfg[section]["prediction"]}
            there = {k: meta.get(k) for k in here}
            if meta.get("kind", kind) != kind:
                raise CoupledError(f"{p} holds a {meta.get('kind')} network, not a {kind} network; name a {kind} "
                                   "network's weights")
            wrong = [f"{k} {there[k]!r} there, {here[k]!r} here" for k in here if there[k] not in (None, here[k])]
            want, have = net.cfg.to_dict() if hasattr(net, "cfg") else {}, meta.get("net") or {}
            wrong += [f"net.{k} {have.get(k)!r} there, {want.get(k)!r} here" for k in sorted(set(want) | set(have))
                      if have.get(k) != want.get(k) and want]
            if wrong:
                raise CoupledError(f"{p} does not match the network this section builds ({'; '.join(wrong[:4])}); "
                                   f"set {section}.net (and prediction) to the init's, or drop {section}.init")
        else:
            from ..classifiers import read_weights_file

            tensors = read_weights_file(p, "weights file")
        load_state(net, tensors, str(p))
    except CoupledError as e:
        raise CoupledError(f"{key}: {e}") from None
    return str(p)


def check_networks(cfg: dict, stages, num_classes: int, user_classifier: bool = False) -> None:
    """Build the network of every stage about to run from its config section, and load its `init`, before anything
    is written: a bad `net` value (an unknown option, a wrong type, a size the network cannot take) is one
    CoupledError naming the section, not a traceback from a later stage after config.json was written."""
    from ..bundle import build_net

    for section in stages:
        if section not in INIT_SECTIONS and (section != "classifier" or user_classifier):
            continue  # the other stages continue networks an earlier stage wrote
        try:
            if section == "classifier":
                net = build_net("classifier", cfg["classifier"]["net"], domain_of(cfg).name)
            else:
                net = _denoiser(cfg, section, INIT_SECTIONS[section], num_classes)
        except CoupledError as e:
            raise CoupledError(f"config key {section}.net: {e}") from None
        except (TypeError, ValueError, RuntimeError) as e:
            raise CoupledError(f"config key {section}.net: the network cannot be built from it "
                               f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); fix {section}.net") from None
        if section in INIT_SECTIONS and cfg[section].get("init"):
            apply_init(cfg, section, net)


def build_setup(stage: str, cfg: dict, output: Path, fingerprint_shape=None) -> StageSetup:
    """Networks, frozen helpers and metadata of one stage; earlier stages' outputs are loaded from `output`.
    With `fingerprint_shape` (the signals' shape), the denoisers trained on the classifier's logits record its
    fingerprint (`coupled.classifiers.classifier_fingerprint`) in their JSON."""
    from ..bundle import build_net, wrap_denoiser
    from ..bundle import load_net as _load_net

    domain = domain_of(cfg).name

    def load_net(folder, name, kind):
        return _load_net(folder, name, kind, domain)

    def sized(section: str, kind: str):
        net = _denoiser(cfg, section, kind, _num_classes(cfg, output))
        init = apply_init(cfg, section, net)
        return net, ({"init": init} if init else {})

    px = process_from_dict(cfg["signal"]["process"])
    py = process_from_dict(cfg["logits"]["process"])
    torch.manual_seed(stream_seed("init", cfg["seed"], STAGES.index(stage)))  # network initialisation is part of the seed's results
    if stage == "classifier":
        net = build_net("classifier", cfg["classifier"]["net"], domain)
        return StageSetup(stage, cfg, {"classifier": net}, {"classifier": _net_meta("classifier", net, cfg)})
    if stage == "signal":
        net, init = sized("signal", "signal")
        return StageSetup(stage, cfg, {"signal": net}, {"signal": {**_net_meta("signal", net, cfg), **init}},
                          {"signal_process": px})
    if stage == "sequential":  # sequential's own denoiser: null-token training continued from pre-training
        net, _ = load_net(output, "signal_pretrained", "signal")
        net = net.requires_grad_(True).train()
        return StageSetup(stage, cfg, {"signal": net}, {"signal": _net_meta("signal", net, cfg)}, {"signal_process": px})
    if stage == "predictive":  # the predictive enhancer: the signal net's architecture, warm-started from pre-training
        net, _ = load_net(output, "signal_pretrained", "signal")
        net = net.requires_grad_(True).train()
        meta = _net_meta("signal", net, cfg)
        meta.update(prediction=predictive_prediction(meta["prediction"]), warm_start="signal_pretrained")
        return StageSetup(stage, cfg, {"signal": net}, {"signal": meta}, {"signal_process": px})
    if stage == "finetuned":  # the reference row: the clean classifier fine-tuned on corrupted digits
        net, cmeta = load_net(output, "classifier", "classifier")
        net = net.requires_grad_(True).train()
        meta = _net_meta("classifier", net, cfg) if cmeta.get("factory") is None else {  # a user's: its factory
            k: v for k, v in cmeta.items() if k in ("kind", "domain", "factory", "net", "num_classes", "logit_scale")}
        return StageSetup(stage, cfg, {"classifier": net}, {"classifier": meta})
    classifier, raw = _frozen_classifier(output, cfg)  # the fingerprint is of the classifier as trained, on raw items
    # the stages below learn the classifier's logits: their JSON records which classifier that was
    seen = {} if fingerprint_shape is None else {"classifier_fingerprint": classifier_fingerprint(raw, fingerprint_shape)}
    if stage == "card":
        pc = process_from_dict(cfg["card"]["process"])
        net, init = sized("card", "logits")
        meta = {**_net_meta("logits", net, cfg), "process": pc.to_dict(), "prediction": cfg["card"]["prediction"],
                **init, **seen}
        return StageSetup(stage, cfg, {"card": net}, {"card": meta}, {"classifier": classifier, "logit_process": pc})
    if stage == "logits":
        sig_net, smeta = load_net(output, "signal_pretrained", "signal")
        net, init = sized("logits", "logits")
        frozen = {"classifier": classifier, "signal_denoiser": wrap_denoiser("signal", sig_net, smeta), "logit_process": py}
        return StageSetup(stage, cfg, {"logits": net}, {"logits": {**_net_meta("logits", net, cfg), **init, **seen}}, frozen)
    sig_net, smeta = load_net(output, "signal_pretrained", "signal")
    log_net, lmeta = load_net(output, "logits_pretrained", "logits")
    nets = {"signal": sig_net.requires_grad_(True).train(), "logits": log_net.requires_grad_(True).train()}
    metas = {k: {**_net_meta(k, v, cfg), **seen} for k, v in nets.items()}
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


def predictive_prediction(prediction: str) -> str:
    """The prediction type the predictive enhancer is trained and sampled with: the signal section's when it is x0
    or v; eps and score become x0, since converting them divides by a(t), which vanishes at the top of a VP process
    (where `engine.predictive_input` shows the net the degraded input)."""
    return prediction if prediction in ("x0", "v") else "x0"


def joint_conditioning(cfg: dict) -> tuple[dict, list]:
    """The coupled methods (with their options) and [signal_steps, logit_steps] grids joint training plans
    for: `joint.methods` / `joint.grids`, else the coupled methods of `sampling.methods` on the sampling steps."""
    from ..methods import BUNDLE_OPTIONS
    from ..engine import COUPLED

    joint, sampling = cfg["joint"], cfg["sampling"]
    methods = joint["methods"] or {k: v for k, v in sampling["methods"].items() if k in COUPLED}
    methods = {k: {o: v for o, v in opts.items() if o not in BUNDLE_OPTIONS} for k, opts in methods.items()}
    grids = joint["grids"] or [[sampling["signal"]["steps"], sampling["logits"]["steps"]]]
    return methods, grids


@torch.no_grad()
def write_pipeline(cfg: dict, output: Path) -> None:
    """pipeline.json: the sampling settings and method options the bundle is evaluated with."""
    atomic_write_json(output / "pipeline.json", {"sampling": cfg["sampling"], "logit_scale": cfg["classifier"]["logit_scale"],
                                                 "name": cfg["name"], "severities": cfg["corruptions"]["severities"]})
    record_in_manifest(output / "pipeline.json")


# the earlier outputs each stage loads (checked before anything is written or trained)
NEEDS = {"logits": ("classifier", "signal_pretrained"), "joint": ("classifier", "signal_pretrained", "logits_pretrained"),
         "card": ("classifier",), "finetuned": ("classifier",), "sequential": ("signal_pretrained",),
         "predictive": ("signal_pretrained",)}


def _is_rank_zero() -> bool:
    """False in the processes a DDP launcher started for ranks > 0 (they must not write shared files)."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def check_stages(stages, output: Path, provided=()) -> None:
    """One-line error when a stage would need an output that neither the folder, nor `provided` (a user's
    classifier, installed first), nor an earlier stage provides."""
    produced = set(provided)
    for stage in stages:
        for name in NEEDS.get(stage, ()):
            if name not in produced and not (output / f"{name}.safetensors").is_file():
                maker = next(s for s, outs in STAGE_OUTPUTS.items() if name in outs)
                raise CoupledError(f"stage {stage!r} needs {output / name}.safetensors, which does not exist; "
                                   f"train stage {maker!r} first (add it to --stages)")
        produced.update(STAGE_OUTPUTS.get(stage, ()))


def train(cfg: dict, stages=STAGES, *, resume: bool = False, devices: int = 1, accelerator: str = "auto",
          max_steps: int | None = None, progress: bool = True) -> list[dict]:
    """Run `stages` of `cfg` in order into cfg['output']; a stage already finished is skipped on resume."""
    for s in stages:
        if s not in STAGES:
            raise CoupledError(f"unknown stage {s!r}; choose from: {', '.join(STAGES)}")
    output = Path(cfg["output"])
    if output.exists() and not output.is_dir():
        raise CoupledError(f"output {output} is an existing file; pass a folder with --output or `output:` in the config")
    user = is_user_classifier(cfg)
    check_stages(stages, output, provided=("classifier",) if user else ())
    splits = domain_of(cfg).load_splits(cfg)  # data problems surface before anything is written
    # a user's classifier, every stage's network and every `init` are checked before anything is written too
    user = prepare_user_classifier(cfg, splits["train"]) if user else None
    check_networks(cfg, stages, user.num_classes if user else cfg["classifier"]["net"].get("num_classes", 10),
                   user_classifier=user is not None)
    if "classifier" not in stages and user is None and (output / "classifier.json").is_file():
        _frozen_classifier(output, cfg)  # the classifier reads what the chains will run on (speech: the representation)
    shape = tuple(splits["train"].signals.shape[1:])
    use_threads(cfg["train"]["num_threads"], devices)  # the config's count, else the cores shared among the processes
    output.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():  # what an interrupted write left behind
        remove_stale_temporaries(output)
        remove_stale_temporaries(output / "train_state")
    atomic_write_json(output / "config.json", {k: v for k, v in cfg.items() if k != "config_path"})
    if user is not None and _is_rank_zero():  # frozen, not trained: copied into the bundle for every later stage
        install_user_classifier(user, cfg, output, domain_of(cfg).name, domain_spec(domain_of(cfg).name))
    summaries = []
    for stage in stages:
        if stage == "classifier" and user is not None:
            summaries.append({"stage": "classifier", "skipped": True, "frozen": user.factory,
                              **_clean_scores(cfg, user.net, splits)})
            continue
        done_marker = output / "train_state" / f"{stage}.done.json"
        wanted = max_steps if max_steps is not None else cfg[stage]["steps"]
        if (resume and done_marker.is_file() and read_json(done_marker).get("steps") == wanted
                and verify_outputs(output, STAGE_OUTPUTS[stage]) is None):  # else rewrite them from the training state
            summaries.append({**read_json(done_marker), "skipped": True})
            if stage == "joint" and _is_rank_zero():  # the sampling settings may have changed: they do not touch the weights
                write_pipeline(cfg, output)
            continue
        started = time.time()
        setup = build_setup(stage, cfg, output, fingerprint_shape=shape)
        summary = run_stage(setup, LOSSES[stage], splits["train"], output, resume=resume, devices=devices,
                            accelerator=accelerator, max_steps=max_steps, progress=progress)
        if summary["rank"] != 0:
            continue
        if stage == "classifier":
            summary.update(_clean_scores(cfg, setup.nets["classifier"], splits))
        if stage == "joint":
            write_pipeline(cfg, output)
        summary["wall_seconds"] = round(time.time() - started, 1)
        atomic_write_json(done_marker, summary)
        _append_log(output, summary)
        summaries.append(summary)
    return summaries


def _clean_scores(cfg: dict, classifier, splits) -> dict:
    """The classifier's clean score on the validation and test splits, named by the domain's metric
    (`val_accuracy`, or e.g. `val_wer`)."""
    domain = domain_of(cfg)
    return {f"{split}_{domain.task_metric(splits[split].task)}": domain.clean_score(classifier, splits[split])
            for split in ("val", "test")}


def _append_log(output: Path, summary: dict) -> None:
    path = output / "training_log.jsonl"
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(summary) + "\n")
