"""`coupled evaluate` and the demo: load a bundle, run the methods, write results.json, report.md and plots."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import CoupledError


def _level_seeds(ev: dict):
    seeds = list(ev["seeds"])
    return lambda level: seeds[: ev["heavy_seeds"]] if level == "heavy" else seeds[: ev["other_seeds"]]


def evaluate_config(cfg: dict, *, checkpoint=None, split: str | None = None, out="runs/eval", max_items=None,
                    corruptions=None, levels=None, methods=None, seeds_for_level=None, progress=True,
                    title_extra: dict | None = None, results_path=None) -> dict:
    """Evaluate the checkpoint of `cfg` and write `out`/results.json, report.md, accuracy.png, examples.png
    (and results.json also to `results_path` when given)."""
    import torch

    from ..domains.image.models import default_device, load_bundle
    from ..engine import METHODS
    from ..training.run import clean_accuracy, load_splits
    from .report import markdown_report, plot_accuracy_vs_severity, plot_examples, summarise, write_results
    from .runner import evaluate

    ev = cfg["evaluation"]
    split = split or ev["split"]
    device = default_device(cfg["device"])
    bundle = load_bundle(checkpoint or cfg["output"], sampling=cfg["sampling"]).to(device)
    splits = load_splits(cfg)
    if split not in splits:
        raise CoupledError(f"unknown split {split!r}; choose one of: {', '.join(splits)}")
    data = splits[split]
    from ..domains.image.data import check_num_classes

    check_num_classes(data, bundle.coupling.classifier.num_classes)
    n = max_items or ev["max_items"]
    if n and n < len(data):
        # a fixed random subset: splits are stored class by class, so a prefix would hold one or two classes
        import numpy as np

        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:n]))
    severities = cfg["corruptions"]["severities"]
    if corruptions:
        unknown = sorted(set(corruptions) - set(severities))
        if unknown:
            raise CoupledError(f"unknown corruption(s) {unknown}; the config has: {', '.join(severities)}")
        severities = {k: severities[k] for k in corruptions}
    if levels:
        severities = {k: {lv: s for lv, s in v.items() if lv in levels} for k, v in severities.items()}
    methods = tuple(methods or METHODS)
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise CoupledError(f"unknown method(s) {bad}; choose from: {', '.join(METHODS)}")
    clean = clean_accuracy(bundle.coupling.classifier.module, data)
    started = time.time()
    torch.set_grad_enabled(False)
    records, examples = evaluate(bundle, data, severities, methods=methods,
                                 method_options=cfg["sampling"]["methods"], seeds_for_level=seeds_for_level or _level_seeds(ev),
                                 batch_size=ev["batch_size"], device=device, progress=progress)
    settings = {"sampling": cfg["sampling"], "checkpoint": str(checkpoint or cfg["output"]), "split": split,
                "n_items": len(data), "eval_seconds": round(time.time() - started, 1), **(title_extra or {})}
    dataset = cfg["data"].get("kind", "mnist5k")
    results = summarise(records, domain="image", dataset=dataset, split=split, clean_accuracy=clean,
                        n_boot=ev["bootstrap"], extra=settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "results.json")
    if results_path:
        write_results(results, Path(results_path))
    (out / "report.md").write_text(markdown_report(results))
    plot_accuracy_vs_severity(results, out / "accuracy.png")
    plot_examples(examples, out / "examples.png")
    return results
