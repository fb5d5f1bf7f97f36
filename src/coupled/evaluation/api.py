"""`coupled evaluate` and the demo: load a bundle, run the methods, write results.json, report.md and plots."""

from __future__ import annotations

import time
from pathlib import Path

from ..atomic import atomic_write_text
from ..engine import PAPER_METHODS
from ..errors import CoupledError


def _level_seeds(ev: dict):
    seeds = list(ev["seeds"])
    return lambda level: seeds[: ev["heavy_seeds"]] if level == "heavy" else seeds[: ev["other_seeds"]]


def load_picks(path, domain: str | None = None) -> dict:
    """The validation picks written by `coupled tune` or `benchmarks/fair_comparison.py val`
    (docs/results/fair_val.json); with `domain`, refused when the file was tuned for another domain."""
    import json

    from ..home import find

    path = find(path, "picks file", "write one with `coupled tune CONFIG`")
    if not path.is_file():
        raise CoupledError(f"{path} is not a file; pass the picks file `coupled tune` writes")
    try:
        val = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CoupledError(f"cannot read {path} as JSON ({e}); regenerate it with `python benchmarks/fair_comparison.py val`") from None
    if not isinstance(val, dict) or val.get("split") != "val" or not isinstance(val.get("picks"), dict):
        raise CoupledError(f"{path} holds no validation picks; regenerate it with `python benchmarks/fair_comparison.py val`")
    if domain is not None and val.get("domain", "image") != domain:  # files written before the key are image picks
        raise CoupledError(f"{path} was tuned for the {val.get('domain', 'image')} domain, not {domain}; tune this "
                           f"bundle with `coupled tune CONFIG --out PICKS`")
    return val


def _ran_text(runs, val) -> dict:
    """{label: its settings in the tables' short names}, per corruption when each runs its own picks."""
    from .report import settings_text

    if val is None:
        return {s.label: settings_text(s.options) for s in runs[0][1]} if runs else {}
    return {next(iter(sev)): {s.label: settings_text(s.options) for s in specs} for sev, specs in runs}


def evaluate_config(cfg: dict, *, checkpoint=None, split: str | None = None, out="runs/eval", max_items=None,
                    corruptions=None, levels=None, methods=None, seeds_for_level=None, progress=True,
                    title_extra: dict | None = None, results_path=None, picks=None, headline_only=False,
                    zero_shot=None, prior=None) -> dict:
    """Evaluate the checkpoint of `cfg` and write `out`/results.json, report.md, accuracy.png, examples.png
    (and results.json also to `results_path` when given).

    Without `picks`, `methods` (default: the paper's six) run with the config's `sampling.methods` options.
    With `picks` (a path to validation picks, docs/results/fair_val.json), each corruption runs every
    method's validation pick, the cost-matched baseline and `sequential@5`, and the results carry the
    cost-matched `headline` (method.md section 6), with pareto.png and deltas.png beside the report;
    `headline_only` runs just noisy, tuned sequential, the cost-matched baseline and the coupled pick.
    `zero_shot` (names of zero-shot samplers: dps, pigdm, ddnm) adds, beside each method that runs a signal
    chain, its zero-shot variant `METHOD+SAMPLER` around the unconditional prior in the folder `prior`
    (`runner.zero_shot_specs`; without picks). Autograd is off inside the call only (the gradient-guided
    zero-shot samplers switch it on around their own vector-Jacobian products)."""
    import torch

    from ..bundle import default_device, load_bundle
    from ..domains.registry import check_num_classes, domain_of
    from ..engine import METHODS
    from . import fair
    from .report import markdown_report, plot_accuracy_vs_severity, plot_examples, summarise, write_results
    from .runner import CORRUPTION_SEED, evaluate, represent_split, specs_from_methods, zero_shot_specs

    domain = domain_of(cfg)
    ev = cfg["evaluation"]
    split = split or ev["split"]
    device = default_device(cfg["device"])
    val = load_picks(picks, domain.name) if picks is not None else None
    bundle = load_bundle(checkpoint or cfg["output"], sampling=cfg["sampling"], domain=domain.name).to(device)
    splits = domain.load_splits(cfg)
    if split not in splits:
        raise CoupledError(f"unknown split {split!r}; choose one of: {', '.join(splits)}")
    data = splits[split]
    check_num_classes(data, bundle.coupling.classifier.num_classes)
    n = max_items or ev["max_items"]
    if n and n < len(data):
        # a fixed random subset: splits are stored class by class, so a prefix would hold one or two classes
        import numpy as np

        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:n]))
    severities = domain.conditions(cfg, split)
    if val is not None:
        severities = {k: v for k, v in severities.items() if k in val["picks"]}
    if corruptions:
        unknown = sorted(set(corruptions) - set(severities))
        if unknown:
            raise CoupledError(f"unknown corruption(s) {unknown}; the config has: {', '.join(severities)}")
        severities = {k: severities[k] for k in corruptions}
    if levels:
        severities = {k: {lv: s for lv, s in v.items() if lv in levels} for k, v in severities.items()}
    if val is None:
        valid = (*METHODS, *bundle.reference_methods)  # the library's references and the domain's
        methods = tuple(methods or PAPER_METHODS)  # the paper's six; the equal-cost baselines run from picks
        bad = sorted(set(methods) - set(valid))
        if bad:
            raise CoupledError(f"unknown method(s) {bad}; choose from: {', '.join(valid)}")
        specs = specs_from_methods(methods, cfg["sampling"]["methods"])
        runs = [(severities, specs + zero_shot_specs(specs, zero_shot, prior) if zero_shot else specs)]
    elif zero_shot:
        raise CoupledError("--zero-shot runs beside the named methods, not with --picks; drop one of them")
    else:  # each corruption runs its own picks
        runs = [({k: v}, fair.test_specs(val["picks"], k, headline_only)) for k, v in severities.items()]
    clean = domain.clean_score(bundle.coupling.classifier.module, represent_split(bundle, data))
    started = time.time()
    records, examples = [], []
    with torch.no_grad():
        for sev, specs in runs:
            # a test run's examples show the headline's two estimates: the matched baseline's and the coupled pick's
            shown = None if val is None else [label for k in sev for label in
                                               (fair.matched_label(val["picks"], k), val["picks"][k]["coupled"]["method"])]
            recs, ex = evaluate(bundle, data, sev, specs=specs, seeds_for_level=seeds_for_level or _level_seeds(ev),
                                batch_size=ev["batch_size"], device=device, progress=progress,
                                corruption_seed=ev.get("corruption_seed", CORRUPTION_SEED), example_labels=shown)
            records += recs
            examples += ex
    # what ran: each label's own options (they override the sampling section's step counts and method options)
    settings = {"methods run (their options override sampling)": _ran_text(runs, val),
                "sampling": cfg["sampling"], "checkpoint": str(checkpoint or cfg["output"]), "split": split,
                "n_items": len(data), "eval_seconds": round(time.time() - started, 1), **(title_extra or {})}
    if val is not None:
        settings["picks"] = str(picks)
    results = summarise(records, domain=domain.name, dataset=domain.dataset_name(cfg), split=split,
                        clean_accuracy=clean, n_boot=ev["bootstrap"], extra=settings,
                        signal_metrics=tuple(domain.signal_metrics))
    if val is not None:
        results["headline"] = fair.headline(records, {k: val["picks"][k] for k in severities}, n_boot=ev["bootstrap"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / "results.json")
    if results_path:
        write_results(results, Path(results_path))
    atomic_write_text(out / "report.md", markdown_report(results))
    plot_accuracy_vs_severity(results, out / "accuracy.png")
    plot_examples(examples, out / "examples.png")
    domain.example_files(examples, out / "examples", (getattr(bundle, "meta", None) or {}).get("signal"))
    if val is not None:
        fair.plot_pareto(val, results, out / "pareto.png")
        fair.plot_deltas(results, out / "deltas.png")
    return results
