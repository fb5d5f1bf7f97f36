"""The fair comparison of issue 7 (method.md section 5): every method tunes its own knobs on validation, cost
is measured, and the headline compares the best coupled configuration with the best baseline that costs no
more, both chosen on validation.

1. `candidate_grid` lists every configuration tried on validation, per method, with comparable effort for
   the baselines and the coupled strategies.
2. `select` reads the validation records (one run, all candidates interleaved, so their seconds compare)
   and picks, per corruption: each method's best configuration and readout, the best coupled one, and the
   cost-matched baseline (the best baseline whose measured validation seconds per item are not higher).
3. `test_specs` turns the picks into labelled `MethodSpec`s for the test run; `headline` computes the
   cost-matched comparison on test with its paired 95% interval and per-seed differences.

Selection rule: the best validation score (over the readouts the method has; the highest accuracy, or the
lowest WER: the metric's direction travels with it); ties go to the cheaper configuration. The test split is
read for the selected configurations only.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..methods import REFERENCE_METHODS, SIGNAL_NETS
from ..engine import BASELINES, COUPLED, SIGNAL_METHODS
from ..errors import CoupledError
from .report import record_metric, scores_of, settings_text
from .runner import MethodSpec
from .stats import get_metric, paired_bootstrap


def _label(method: str, options: dict) -> str:
    if not options:
        return method
    return method + "[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]"


def _spec(method: str, options: dict) -> MethodSpec:
    return MethodSpec(_label(method, options), method, options)


def wide_candidates(guidance: float = 3.0) -> list[MethodSpec]:
    """The extra candidates of `candidate_grid(wide=True)`, for conditions where the one-step optimum is not
    expected (issue 20: occlusion, downsampling): longer signal chains, larger ensembles of multi-step samples,
    more logit samples, and every coupled strategy with more signal steps. Sized for one CPU thread: the dearest
    (an ensemble of 10 five-step samples, Nested with 5 signal and 10 logit steps, 150 to 300 ms per item
    there) are left out."""
    specs = []
    for net in ("joint", "sequential"):
        specs.append(_spec("sequential", {"signal_net": net, "signal_steps": 20, "signal_eta": 1.0}))
        for k, steps in [(10, 1), (3, 5), (5, 5)]:
            specs.append(_spec("sequential_ensemble", {"signal_net": net, "k": k, "signal_steps": steps}))
    for method in ("card", "logits_only"):
        specs.append(_spec(method, {"logit_steps": 5, "logit_samples": 10}))
    for (sx, sy), w in itertools.product([(5, 10), (10, 10)], dict.fromkeys((1.0, float(guidance)))):
        specs.append(_spec("parallel", {"signal_steps": sx, "logit_steps": sy, "switch_fraction": 0.5, "signal_guidance": w}))
    for rounds, sx, sy, m in [(2, 5, 5, 3), (2, 1, 5, 10), (3, 2, 5, 3)]:
        specs.append(_spec("alternating", {"rounds": rounds, "signal_steps": sx, "logit_steps": sy, "logit_samples": m}))
    specs.append(_spec("nested", {"signal_steps": 5, "logit_steps": 5, "refresh_every": 2, "refresh_window": [0.5, 1.0]}))
    return specs


GRIDS = ("full", "compact")


def candidate_grid(guidance: float = 3.0, grid: str = "full", observation_weights=(0.0,), wide: bool = False
                   ) -> list[MethodSpec]:
    """Every configuration tried on validation (`tuning.grid`: "full", or "compact" for a domain whose network
    calls are dear, e.g. speech on CPU). Baselines: sequential over steps, eta and which signal
    denoiser (joint-trained, pre-trained, or its own equal-budget null-token one); one_step per denoiser; the
    predictive enhancer (its own net, no knob); purification over noising time and steps; the ensemble over K and steps; CARD and the logit-only
    baseline over logit steps and samples. Coupled: signal and logit steps separately, Parallel's
    guidance, Alternating's rounds and logit samples, Nested's refresh schedule cold and warm-started, and
    gradient guidance through the classifier on each strategy's cheapest strong configuration. `wide` adds
    `wide_candidates` (more signal steps, ensemble members and logit samples).

    `observation_weights` (`tuning.observation_weights`): every candidate whose readout hears a signal estimate,
    baseline and coupled alike, is tried with each weight a > 0 of observation adding too (the readout hears
    x_hat + a (d - x_hat)); 0 is the candidate as it is."""
    if grid not in GRIDS:
        raise CoupledError(f"unknown tuning.grid {grid!r}; choose one of: {', '.join(GRIDS)}")
    specs = _full_grid(guidance) if grid == "full" else _compact_grid(guidance)
    if wide:
        specs += wide_candidates(guidance)
    weights = [float(a) for a in observation_weights if float(a) > 0]
    return specs + [_spec(s.method, {**s.options, "observation_weight": a})
                    for a in weights for s in specs if s.method in SIGNAL_METHODS]


def _compact_grid(guidance: float) -> list[MethodSpec]:
    """About a third of the full grid: each method at the step counts where the full grid's picks sit (one and two
    signal steps, five logit steps), and sequential at five signal steps too, with the sampling section's eta and,
    at two and five steps, with eta 1 (the full grid tries both; a stochastic sequential chain can beat a
    deterministic one, as on speech reverberation)."""
    nets = tuple(SIGNAL_NETS)
    specs = [_spec("noisy", {}), *(_spec(m, {}) for m in REFERENCE_METHODS)]
    for net, steps in itertools.product(nets, (1, 2, 5)):
        specs.append(_spec("sequential", {"signal_net": net, "signal_steps": steps}))
    for net, steps in itertools.product(nets, (2, 5)):
        specs.append(_spec("sequential", {"signal_net": net, "signal_steps": steps, "signal_eta": 1.0}))
    specs += [_spec("one_step", {"signal_net": net}) for net in nets]
    specs.append(_spec("predictive", {}))
    specs.append(_spec("purification", {"noise_fraction": 0.3, "signal_steps": 1}))
    specs.append(_spec("sequential_ensemble", {"k": 3, "signal_steps": 1}))
    specs += [_spec(m, {"logit_steps": 5, "logit_samples": 1}) for m in ("card", "logits_only")]
    for (sx, sy), w in itertools.product([(1, 5), (2, 5)], dict.fromkeys((1.0, float(guidance)))):
        specs.append(_spec("parallel", {"signal_steps": sx, "logit_steps": sy, "switch_fraction": 0.5,
                                        "signal_guidance": w}))
    for rounds, sx in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        specs.append(_spec("alternating", {"rounds": rounds, "signal_steps": sx, "logit_steps": 5, "logit_samples": 1}))
    for sx in (1, 2):
        specs.append(_spec("nested", {"signal_steps": sx, "logit_steps": 5, "refresh_every": 2,
                                      "refresh_window": [0.5, 1.0]}))
    return specs


def _full_grid(guidance: float) -> list[MethodSpec]:
    """The full grid of `candidate_grid` (issue 7's, for MNIST)."""
    nets = tuple(SIGNAL_NETS)
    specs = [_spec("noisy", {}), *(_spec(m, {}) for m in REFERENCE_METHODS)]  # reference methods have no knobs
    for net, steps in itertools.product(nets, (1, 2, 3, 5, 10)):
        specs.append(_spec("sequential", {"signal_net": net, "signal_steps": steps, "signal_eta": 1.0}))
    for steps in (2, 5):  # eta 0 (DDIM) against the ancestral eta 1 the config runs
        specs.append(_spec("sequential", {"signal_net": "joint", "signal_steps": steps, "signal_eta": 0.0}))
    for net in nets:
        specs.append(_spec("one_step", {"signal_net": net}))
    specs.append(_spec("predictive", {}))  # its own regression net: no knob but observation adding
    for net, nf, steps in itertools.product(("joint", "sequential"), (0.3, 0.6), (1, 2)):
        specs.append(_spec("purification", {"signal_net": net, "noise_fraction": nf, "signal_steps": steps}))
    for net, (k, steps) in itertools.product(("joint", "sequential"), [(2, 1), (3, 1), (5, 1), (3, 2)]):
        specs.append(_spec("sequential_ensemble", {"signal_net": net, "k": k, "signal_steps": steps}))
    for steps, samples in itertools.product((5, 10), (1, 3)):
        specs.append(_spec("card", {"logit_steps": steps, "logit_samples": samples}))
        specs.append(_spec("logits_only", {"logit_steps": steps, "logit_samples": samples}))
    for (sx, sy), w in itertools.product([(1, 5), (2, 5), (2, 10), (5, 5)], dict.fromkeys((1.0, float(guidance)))):
        specs.append(_spec("parallel", {"signal_steps": sx, "logit_steps": sy, "switch_fraction": 0.5,
                                                 "signal_guidance": w}))
    for rounds, sx, sy, m in [(1, 1, 5, 1), (2, 1, 5, 1), (2, 2, 5, 1), (2, 5, 5, 1), (1, 2, 5, 1), (2, 1, 10, 1),
                              (2, 1, 5, 3), (1, 1, 5, 3), (3, 1, 5, 1)]:
        specs.append(_spec("alternating", {"rounds": rounds, "signal_steps": sx, "logit_steps": sy,
                                                    "logit_samples": m}))
    for sx, sy, warm in itertools.product((1, 2), (5, 10), (False, True)):
        opts = {"signal_steps": sx, "logit_steps": sy, "refresh_every": 2, "refresh_window": [0.5, 1.0]}
        if warm:
            opts.update(refresh_from=0.3, refresh_signal_steps=1)
        specs.append(_spec("nested", opts))
    # gradient guidance through the frozen classifier (beyond the paper; issue 7 part 2), on each strategy's
    # cheapest strong configuration: x0_hat moved `classifier_gradient` RMS units towards the logits' class
    gradient = [("parallel", {"signal_steps": 1, "logit_steps": 5, "switch_fraction": 0.5, "signal_guidance": 1.0}, (0.03, 0.1)),
                ("alternating", {"rounds": 2, "signal_steps": 1, "logit_steps": 5, "logit_samples": 3}, (0.03, 0.1, 0.3)),
                ("nested", {"signal_steps": 2, "logit_steps": 5, "refresh_every": 2, "refresh_window": [0.5, 1.0]}, (0.03, 0.1))]
    for method, opts, scales in gradient:
        for scale in scales:
            specs.append(_spec(method, {**opts, "classifier_gradient": scale}))
    return specs


def _by(records, corruption):
    """{label: [records over seeds]} of one corruption."""
    out = {}
    for r in records:
        if r["corruption"] == corruption:
            out.setdefault(r["method"], []).append(r)
    return out


def _score(recs, readout) -> float | None:
    """The records' score of one readout (seeds averaged per item), None where a record lacks the readout."""
    vals = [scores_of(r, readout) for r in recs]
    return None if any(v is None for v in vals) else record_metric(recs[0]).value(np.stack(vals))


def candidate_table(records) -> list[dict]:
    """One entry per (corruption, candidate, readout): validation score (`value`, its `metric`; accuracy
    tables also keep it as `accuracy`), measured seconds, calls."""
    rows = []
    for corruption in dict.fromkeys(r["corruption"] for r in records):
        for label, recs in _by(records, corruption).items():
            for readout in ("logits", "classifier"):
                value = _score(recs, readout)
                if value is None:
                    continue
                metric = record_metric(recs[0]).name
                rows.append({"corruption": corruption, "severity": recs[0]["severity"], "label": label,
                             "method": recs[0]["base_method"], "settings": recs[0]["settings"], "readout": readout,
                             "metric": metric, "value": value, **({"accuracy": value} if metric == "accuracy" else {}),
                             "seconds_per_item": float(np.mean([r["seconds_per_item"] for r in recs])),
                             "calls": recs[0]["calls"], "seeds": [r["seed"] for r in recs]})
    return rows


def row_value(r: dict) -> float:
    """A candidate row's validation score (picks written before `value` existed hold `accuracy`)."""
    return r["value"] if "value" in r else r["accuracy"]


def _best(rows):
    if not rows:
        return None
    metric = get_metric(rows[0].get("metric", "accuracy"))
    return max(rows, key=lambda r: (round(metric.key(row_value(r)), 6), -r["seconds_per_item"]))


SELECTION_RULE = ("the best validation score over the readouts a method has (highest accuracy, lowest WER); ties to the "
                  "cheaper; cost-matched baseline: the best baseline whose measured validation seconds per item are "
                  "not higher than the coupled pick's (candidates interleaved batch by batch in one run); budget: the "
                  "best configuration of any method of the frozen classifier whose measured seconds per item fit the "
                  "budget")


def select(table: list[dict], budget_ms: float | None = None) -> dict:
    """Per corruption: each method's pick, the coupled pick and the cost-matched baseline (see module doc); with
    `budget_ms`, also `budget`: the best configuration of any method whose measured cost fits it (None if none)."""
    out = {}
    for corruption in dict.fromkeys(r["corruption"] for r in table):
        rows = [r for r in table if r["corruption"] == corruption]
        per_method = {m: _best([r for r in rows if r["method"] == m]) for m in dict.fromkeys(r["method"] for r in rows)}
        coupled = _best([r for r in rows if r["method"] in COUPLED])
        if coupled is None:
            raise CoupledError(f"no coupled candidate was evaluated for {corruption}; include parallel, alternating or nested")
        affordable = [r for r in rows if r["method"] in BASELINES and r["seconds_per_item"] <= coupled["seconds_per_item"]]
        out[corruption] = {"per_method": per_method, "coupled": coupled, "baseline": _best(affordable),
                           "best_baseline_any_cost": _best([r for r in rows if r["method"] in BASELINES])}
        if budget_ms is not None:
            # the frozen classifier's methods only: a reference row (a fine-tuned classifier) is not a choice
            out[corruption]["budget"] = _best([r for r in rows if r["method"] in (*BASELINES, *COUPLED)
                                               and 1000 * r["seconds_per_item"] <= budget_ms])
    return out


def tune(cfg: dict, *, checkpoint=None, max_items=None, nets=None, budget_ms=None, corruptions=None,
         wide=False, progress=True) -> dict:
    """`coupled tune`: every candidate of `candidate_grid` the bundle can run, on the validation split at each
    corruption's heavy level, in one interleaved run (so their measured seconds compare), then the picks of
    `select`. Returns the picks file's content (what `coupled evaluate --picks` and `coupled classify --picks`
    read; docs/results/fair_val.json has this shape).

    Args:
        cfg: an experiment config (any domain whose bundle has signal and logit denoisers).
        checkpoint: the bundle folder (default: the config's output).
        max_items: a fixed random subset of the validation split (as `coupled evaluate --max-items`).
        nets: which signal denoisers' candidates to try (default: every one the folder holds).
        budget_ms: also pick the best configuration whose measured milliseconds per item fit this budget.
        corruptions: tune at these corruptions' heavy levels only (default: every corruption with one).
        wide: the grid with `wide_candidates` too.
    """
    import time

    import numpy as np
    import torch

    from ..bundle import default_device, load_bundle
    from ..domains.registry import domain_of
    from ..methods import available_methods
    from .runner import CORRUPTION_SEED, evaluate

    domain = domain_of(cfg)
    device = default_device(cfg["device"])
    bundle = load_bundle(checkpoint or cfg["output"], sampling=cfg["sampling"], domain=domain.name).to(device)
    if bundle.coupling.signal_denoiser is None:
        raise CoupledError(f"{checkpoint or cfg['output']} has no denoisers (a classifier alone): there is nothing to tune; "
                           "train them with `coupled train`")
    data = domain.load_splits(cfg)["val"]
    if max_items and max_items < len(data):  # a fixed random subset: splits may be stored class by class
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:max_items]))
    sev = {k: {"heavy": v["heavy"]} for k, v in domain.conditions(cfg, "val").items() if "heavy" in v}
    unknown = sorted(set(corruptions or ()) - set(sev))
    if unknown:
        raise CoupledError(f"--corruptions {unknown[0]!r} has no heavy level in the config; tune one of: {', '.join(sev)}")
    sev = {k: v for k, v in sev.items() if not corruptions or k in corruptions}
    if not sev:
        raise CoupledError("no corruption of the config has a heavy level to tune at; give corruptions.severities "
                           "NAME: {heavy: ...} (see coupled calibrate)")
    folder = Path(checkpoint or cfg["output"])
    held = [n for n, f in SIGNAL_NETS.items() if n == "joint" or (folder / f"{f}.safetensors").is_file()]
    nets = list(nets or held)
    missing = sorted(set(nets) - set(held))
    if missing:
        raise CoupledError(f"{folder} has no signal denoiser {missing[0]!r} ({SIGNAL_NETS[missing[0]]}.safetensors); "
                           f"it holds: {', '.join(held)}")
    runnable, _ = available_methods(bundle)
    tuning = cfg["tuning"]
    specs = [s for s in candidate_grid(cfg["sampling"].get("signal_guidance", 3.0), tuning["grid"],
                                       tuning["observation_weights"], wide=wide)
             if s.options.get("signal_net", "joint") in nets and s.method in runnable]
    started = time.time()
    with torch.no_grad():
        records, _ = evaluate(bundle, data, sev, specs=specs, seeds_for_level=lambda lv: [0],
                              batch_size=cfg["evaluation"]["batch_size"], device=device, progress=progress,
                              corruption_seed=cfg["evaluation"].get("corruption_seed", CORRUPTION_SEED),
                              score_estimates=False)  # the picks read scores and seconds, not the estimates' quality
    table = candidate_table(records)
    shown = {k: {lv: v if isinstance(v, (int, float)) else domain.condition_fields(v) for lv, v in levels.items()}
             for k, levels in sev.items()}  # a labelled condition (e.g. speech's SNR or RT60) as its fields
    return {"split": "val", "n_items": len(data), "seeds": [0], "severities": shown, "selection_rule": SELECTION_RULE,
            **({"budget_ms": budget_ms} if budget_ms is not None else {}),
            "runs": [{"nets": nets, "candidates": len(specs), "eval_seconds": round(time.time() - started, 1),
                      **({"grid": "wide"} if wide else {})}],
            "candidates": table, "picks": select(table, budget_ms)}


def pick_for(val: dict, corruption: str | None = None) -> tuple[str, str, dict]:
    """(method, readout, options) a picks file chooses for `corruption` (the only one when None): the budget pick
    when the file was tuned with a budget, else the coupled pick."""
    picks = val["picks"]
    if corruption is None:
        if len(picks) != 1:
            raise CoupledError(f"the picks file was tuned for {', '.join(picks)}; say which with --pick-for NAME")
        corruption = next(iter(picks))
    if corruption not in picks:
        raise CoupledError(f"the picks file has no corruption {corruption!r}; it has: {', '.join(picks)}")
    p = picks[corruption]
    chosen = p.get("budget") if "budget" in p else p["coupled"]
    if chosen is None:
        raise CoupledError(f"no configuration of {corruption} fits the picks file's budget of {val.get('budget_ms')} ms "
                           "per item; tune again with a larger --budget-ms")
    return chosen["method"], chosen["readout"], dict(chosen["settings"])


def test_specs(picks: dict, corruption: str, headline_only: bool = False) -> list[MethodSpec]:
    """The labelled configurations a corruption's test run evaluates: each method's validation pick under the
    method's own name, the cost-matched baseline (named `<method>@matched` where it is another configuration
    of that method) and the baseline the project published before (sequential, 5 steps, `sequential@5`).
    `headline_only`: just noisy, tuned sequential, the cost-matched baseline and the coupled pick (the demo)."""
    p = picks[corruption]
    if headline_only:
        keep = {"noisy", "sequential", p["coupled"]["method"], matched_label(picks, corruption)}
        return [s for s in test_specs(picks, corruption) if s.label in keep]
    specs = {m: MethodSpec(m, m, r["settings"]) for m, r in p["per_method"].items()}
    matched = p["baseline"]
    if matched is not None and matched["settings"] != p["per_method"][matched["method"]]["settings"]:
        specs[f"{matched['method']}@matched"] = MethodSpec(f"{matched['method']}@matched", matched["method"], matched["settings"])
    specs["sequential@5"] = MethodSpec("sequential@5", "sequential", {"signal_steps": 5, "signal_eta": 1.0})
    return list(specs.values())


def matched_label(picks: dict, corruption: str) -> str | None:
    """The test label of a corruption's cost-matched baseline."""
    p = picks[corruption]
    m = p["baseline"]
    if m is None:
        return None
    return m["method"] if m["settings"] == p["per_method"][m["method"]]["settings"] else f"{m['method']}@matched"


def headline(records, picks: dict, n_boot: int = 2000) -> list[dict]:
    """The cost-matched comparison on test (method.md section 6 `headline`), per corruption and severity."""
    out = []
    for corruption, p in picks.items():
        base_label = matched_label(picks, corruption)
        cp = p["coupled"]
        for severity in dict.fromkeys(r["severity"] for r in records if r["corruption"] == corruption):
            at = [r for r in records if r["corruption"] == corruption and r["severity"] == severity]
            c = sorted((r for r in at if r["method"] == cp["method"]), key=lambda r: r["seed"])
            b = sorted((r for r in at if r["method"] == base_label), key=lambda r: r["seed"])
            if not c or not b:
                continue
            metric = record_metric(c[0])
            cs = np.stack([scores_of(r, cp["readout"]) for r in c]).astype(float)
            bs = np.stack([scores_of(r, p["baseline"]["readout"]) for r in b]).astype(float)
            delta, lo, hi = paired_bootstrap(cs, bs, n_boot=n_boot, metric=metric)
            per_seed = [metric.value(cs[i]) - metric.value(bs[min(i, len(bs) - 1)]) for i in range(len(cs))]
            side = lambda rec, pick, sc: {"method": pick["method"], "label": rec[0]["method"], "readout": pick["readout"],  # noqa: E731
                                          "settings": pick["settings"], "value": metric.value(sc),
                                          "seconds_per_item": float(np.mean([r["seconds_per_item"] for r in rec])),
                                          "calls": rec[0]["calls"], f"val_{metric.name}": row_value(pick),
                                          "val_seconds_per_item": pick["seconds_per_item"]}
            out.append({"corruption": corruption, "severity": severity, "level": c[0]["level"], "metric": metric.name,
                        "coupled": side(c, cp, cs), "baseline": side(b, p["baseline"], bs),
                        "delta": delta, "delta_ci95": [lo, hi], "per_seed_delta": per_seed,
                        "seeds_agree": all(d > 0 for d in per_seed) or all(d < 0 for d in per_seed),
                        "above_zero": lo > 0,
                        # coupling wins: the interval excludes zero on the metric's good side
                        "coupled_better": lo > 0 if metric.higher_is_better else hi < 0})
    return out


def dump(obj, path) -> None:
    from .report import write_results

    write_results(json.loads(json.dumps(obj, default=float)), path)


# ---------------------------------------------------------------------------------------------- tables, plots
def tuning_table(val: dict) -> str:
    """Markdown: per corruption, each method's validation pick (accuracy, readout, settings, seconds), the
    coupled pick and the cost-matched baseline."""
    lines = []
    for corruption, p in val["picks"].items():
        metric = get_metric(p["coupled"].get("metric", "accuracy"))
        lines += [f"**{corruption}** (validation, {val['n_items']} items, seed {val['seeds']})", "",
                  f"| method | readout | val {metric.name} | s/item | settings |", "|---|---|---:|---:|---|"]
        for m, r in sorted(p["per_method"].items(), key=lambda kv: -metric.key(row_value(kv[1]))):
            lines.append(f"| {m} | {r['readout']} | {row_value(r):.3f} | {r['seconds_per_item']:.4f} | {settings_text(r['settings'])} |")
        c, b = p["coupled"], p["baseline"]
        lines += ["", f"Coupled pick: {c['method']} ({c['readout']}) {row_value(c):.3f} at {c['seconds_per_item']:.4f} s/item; "
                      f"cost-matched baseline: " + ("none" if b is None else
                      f"{b['method']} ({settings_text(b['settings'])}) {row_value(b):.3f} at {b['seconds_per_item']:.4f} s/item") + ".", ""]
    return "\n".join(lines)


def picks_table(results: dict, val: dict, level: str = "heavy") -> str:
    """Markdown: every method's validation pick on test at one level, at the readout validation chose:
    validation and test accuracy, the paired difference to tuned sequential, measured seconds and passes."""
    lines = ["| corruption | method (readout) | settings | val acc | test acc [95%] | Δ vs tuned sequential [95%] | s/item | passes Dx/Dy/f |",
             "|---|---|---|---:|---|---|---:|---|"]
    for corruption, p in val["picks"].items():
        rows = {(r["method"], r["readout"]): r for r in results["rows"] if r["corruption"] == corruption and r["level"] == level}
        metric = get_metric(p["coupled"].get("metric", "accuracy"))
        for m, pick in sorted(p["per_method"].items(), key=lambda kv: -metric.key(rows.get((kv[0], kv[1]["readout"]), {"value": 0})["value"])):
            r = rows.get((m, pick["readout"]))
            if r is None:
                continue
            d = "-" if r.get("delta_vs_sequential") is None or m == "sequential" else \
                f"{r['delta_vs_sequential']:+.3f} [{r['delta_ci95'][0]:+.3f}, {r['delta_ci95'][1]:+.3f}]"
            c = r["calls"]
            lines.append(f"| {corruption} | {m} ({pick['readout']}) | {settings_text(pick['settings'])} | {row_value(pick):.3f} | "
                         f"{r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {d} | {r['seconds_per_item']:.4f} | "
                         f"{c.get('signal_passes', c['signal'])}/{c.get('logits_passes', c['logits'])}/{c['classifier']} |")
    return "\n".join(lines)


def _pareto(points):
    """Indices of the points on the upper-left frontier (no other point is both cheaper and better; the
    points' second coordinate is a larger-is-better key)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(val: dict, results: dict, path):
    """Accuracy against measured seconds per item at the heavy severity, one panel per corruption: every
    validation candidate (best readout) as a point coloured by method, each method's frontier as a line, the
    overall Pareto frontier in black, and the test figures of the picks as stars."""
    import matplotlib
    import matplotlib.ticker

    from .report import _figure, _save

    corruptions = list(val["picks"])
    fig = _figure(figsize=(5.2 * len(corruptions) + 2.4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(corruptions), squeeze=False)[0]
    ran = {r.get("base_method", r["method"]) for r in results.get("rows", [])} | \
        {h[side]["method"] for h in results.get("headline", []) for side in ("coupled", "baseline")}
    # what this run evaluated gets a colour and a legend entry; the other candidates stay as grey points
    methods = [m for m in dict.fromkeys(r["method"] for r in val["candidates"]) if m in ran]
    palette = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]  # no two methods share a colour
    colour = {m: palette(i % palette.N) for i, m in enumerate(methods)}
    handles = {}
    for ax, corruption in zip(axes, corruptions):
        metric = get_metric(val["picks"][corruption]["coupled"].get("metric", "accuracy"))
        rows = {}
        for r in val["candidates"]:
            if r["corruption"] == corruption and (r["label"] not in rows or
                                                  metric.key(row_value(r)) > metric.key(row_value(rows[r["label"]]))):
                rows[r["label"]] = r
        rows = list(rows.values())
        others = [(r["seconds_per_item"], row_value(r)) for r in rows if r["method"] not in methods]
        if others:
            handles["other validation candidates"] = ax.scatter(*zip(*others), color="0.7", s=10, alpha=0.6)
        for m in methods:
            pts = [(r["seconds_per_item"], row_value(r)) for r in rows if r["method"] == m]
            if not pts:
                continue
            front = [pts[i] for i in _pareto([(s, metric.key(v)) for s, v in pts])]
            ax.scatter(*zip(*pts), color=colour[m], s=14, alpha=0.6)
            handles[m] = ax.plot(*zip(*front), color=colour[m], lw=1.2, marker="o", ms=3)[0]
        allpts = [(r["seconds_per_item"], row_value(r)) for r in rows]
        front = [allpts[i] for i in _pareto([(s, metric.key(v)) for s, v in allpts])]
        handles["Pareto frontier (validation)"] = ax.plot(*zip(*front), color="k", lw=2, ls="--", alpha=0.7)[0]
        for h in results.get("headline", []):
            if h["corruption"] == corruption and h["level"] == "heavy":
                for side, mk in (("coupled", "*"), ("baseline", "P")):
                    s = h[side]
                    handles[f"test: {side} pick"] = ax.plot([s["seconds_per_item"]], [s["value"]], mk, color=colour.get(s["method"], "k"),
                                                            ms=13, mec="k")[0]
        ax.set(xscale="log", title=f"{corruption} (heavy)", xlabel="measured seconds per item (log)", ylabel=metric.name)
        # labels at 1, 2 and 5 of each decade, none on the minor ticks: matplotlib's default labels every minor
        # tick of a narrow range, and they run into each other
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3, which="both")
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small")
    return _save(fig, path)


def plot_deltas(results: dict, path, span: float = 0.08):
    """Paired differences with their 95% intervals: per corruption and level, the headline (coupled pick minus
    cost-matched baseline) and every method's pick minus tuned sequential. The axis spans +-`span` (at least
    the headline's intervals), so differences of a point or two stay readable; a row beyond it is an arrow
    at the edge with its value written."""
    import matplotlib.ticker

    from .report import _figure, _save

    rows = results["rows"]
    corruptions = list(dict.fromkeys(r["corruption"] for r in rows))
    span = max([span] + [abs(v) * 1.1 for h in results.get("headline", []) for v in h["delta_ci95"]])
    fig = _figure(figsize=(6.0 * len(corruptions), 5.6), layout="constrained")
    fig.suptitle("Paired differences on test: the headline (coupled pick minus the cost-matched baseline), then each "
                 "method's pick minus tuned sequential, at the heavy level", fontsize="medium")
    axes = fig.subplots(1, len(corruptions), squeeze=False, sharex=True)[0]
    for ax, corruption in zip(axes, corruptions):
        heavy = max((r["severity"] for r in rows if r["corruption"] == corruption))
        entries = []
        for h in results.get("headline", []):
            if h["corruption"] == corruption:
                entries.append((f"HEADLINE {h['level']}: {h['coupled']['method']} vs {h['baseline']['method']}", h["delta"], h["delta_ci95"], "k"))
        for r in rows:
            if r["corruption"] == corruption and r["severity"] == heavy and r.get("delta_vs_sequential") is not None \
                    and r["method"] not in ("sequential",):
                entries.append((f"{r['method']} ({r['readout']}) vs sequential", r["delta_vs_sequential"], r["delta_ci95"], "tab:blue"))
        for i, (name, d, (lo, hi), col) in enumerate(entries):
            if abs(d) <= span:
                ax.errorbar([d], [i], xerr=[[d - lo], [hi - d]], fmt="o", color=col, capsize=3)
            else:
                edge = span * (1 if d > 0 else -1) * 0.97
                ax.plot([edge], [i], ">" if d > 0 else "<", color=col)
                ax.annotate(f"{d:+.3f}", (edge, i), xytext=(-4 if d > 0 else 4, 0), textcoords="offset points",
                            ha="right" if d > 0 else "left", va="center", fontsize="x-small", color=col)
        ax.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize="x-small")
        ax.axvline(0, color="0.4", lw=1)
        ax.set_xlim(-span, span)
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.set(title=corruption, xlabel=f"paired Δ {results['clean'].get('metric', 'accuracy')}, 95% CI")
        ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
