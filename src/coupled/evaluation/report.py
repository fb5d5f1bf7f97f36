"""Evaluation results: per-seed records -> `results.json` (method.md section 6), `report.md` and plots.

A record is one (method, corruption, severity, sampling seed) run over the test items:

    {"method": str, "corruption": str, "severity": float, "level": "light" | "medium" | "heavy", "seed": int,
     "metric": "accuracy" | "wer" | ...,  (default accuracy)
     "score_logits": [N] (or [N, 2] for a ratio metric) or None, "score_classifier": the same,
     "psnr": [N] or None, "ssim": [N] or None, "calls": {"signal": int, "logits": int, "classifier": int},
     "seconds_per_item": float}

`correct_logits` / `correct_classifier` (bool [N]) are read as accuracy scores. The metric's direction travels
with it: `delta_vs_sequential` is the raw difference (for WER, negative is better), and `gap_recovered`
measures the way from noisy to clean in either direction.

Every record of one (corruption, severity) must score the same items in the same order: the corrupted test
set is generated once per (corruption, severity, seed), so comparisons between methods are paired.
"""

from __future__ import annotations

import json
import textwrap
import math
import numbers
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..methods import REFERENCE_METHODS
from ..engine import BASELINES, COUPLED
from ..errors import CoupledError
from .stats import bootstrap_ci, gap_recovered, get_metric, paired_bootstrap

__all__ = ["SCHEMA", "METHOD_ORDER", "READOUTS", "summarise", "write_results", "markdown_report", "plot_accuracy_vs_severity", "plot_examples"]

SCHEMA = "coupled-results/1"
# The registry's order (baselines, then the coupled strategies), each reference method right after the engine
# method it runs; unknown variants follow in order of appearance.
METHOD_ORDER = tuple(n for m in (*BASELINES, *COUPLED) for n in (m, *(r for r, e in REFERENCE_METHODS.items() if e == m)))
READOUTS = ("logits", "classifier")
_CALLS = ("signal", "logits", "classifier")
_PASSES = ("signal_passes", "logits_passes")  # network passes (a guided call runs two), where counted
_RECORD_KEYS = ("method", "corruption", "severity", "level", "seed", "score_logits", "score_classifier", "calls", "seconds_per_item")
IMAGE_METRICS = ("psnr", "ssim")  # the signal metrics of records that name none (the image domain's)
_METRIC_FORMAT = {"psnr": ".2f", "ssim": ".3f"}  # others: ".3g"


def _metric_head(name: str) -> str:
    return name.upper() if name in IMAGE_METRICS else name


# ---------------------------------------------------------------------------------------------- summarise
def scores_of(r: dict, readout: str):
    """A record's per-item scores of one readout (`score_<readout>`, or the accuracy record's `correct_<readout>`)."""
    return r.get(f"score_{readout}", r.get(f"correct_{readout}"))


def record_metric(r: dict):
    """The Metric a record's scores are in (accuracy when it names none)."""
    return get_metric(r.get("metric", "accuracy"))


def _check_record(i: int, r, signal_metrics=IMAGE_METRICS) -> None:
    if not isinstance(r, dict):
        raise CoupledError(f"record {i} must be a dict, got {type(r).__name__}; see coupled.evaluation.report for its keys")
    r = {**{f"score_{ro}": None for ro in READOUTS if f"correct_{ro}" in r}, **r}  # accuracy records' old names
    missing = [k for k in (*_RECORD_KEYS, *signal_metrics) if k not in r]
    if missing:
        raise CoupledError(f"record {i} lacks keys {missing}; add them (use None for score_logits, psnr, ssim a method does not produce)")
    for k in ("method", "corruption", "level"):
        if not isinstance(r[k], str) or not r[k]:
            raise CoupledError(f"record {i} field '{k}' must be a non-empty string, got {r[k]!r}")
    for k in ("severity", "seconds_per_item"):
        if isinstance(r[k], bool) or not isinstance(r[k], numbers.Real) or not math.isfinite(r[k]):
            raise CoupledError(f"record {i} field '{k}' must be a finite number, got {r[k]!r}")
    if isinstance(r["seed"], bool) or not isinstance(r["seed"], numbers.Integral):
        raise CoupledError(f"record {i} field 'seed' must be an integer, got {r['seed']!r}")
    if not isinstance(r["calls"], dict) or any(not isinstance(r["calls"].get(k), numbers.Real) for k in _CALLS):
        raise CoupledError(f"record {i} field 'calls' must be a dict with numeric keys {list(_CALLS)}, got {r['calls']!r}")


def _stack(recs: list[dict], key: str, n: int, where: str, ratio: bool = False, columns: int | None = 2) -> np.ndarray | None:
    """Per-seed arrays of one field -> [S, N] float64 ([S, N, M] for a ratio metric's scores of `columns` M counts
    per item, None: any M), or None when no seed has it."""
    vals = [scores_of(r, key[6:]) if key.startswith("score_") else r[key] for r in recs]
    if all(v is None for v in vals):
        return None
    if any(v is None for v in vals):
        raise CoupledError(f"'{key}' is None for some seeds of {where} but not others; give it for every seed or for none")
    arrs = [np.asarray(v, dtype=np.float64) for v in vals]
    want = (n, columns or (arrs[0].shape[-1] if arrs[0].ndim == 2 else -1)) if ratio else (n,)
    if any(a.shape != want for a in arrs):
        raise CoupledError(f"'{key}' of {where} must have {n} items ({f'[N, {columns}] counts' if ratio and columns else '[N, M] counts' if ratio else '1-D'}) like every record of that corruption and severity, got shapes {[a.shape for a in arrs]}; score the same test items")
    return np.stack(arrs)


def _item_count(by_method: dict[str, list[dict]]) -> int:
    """Items scored at one corruption and severity: the length of the first readout any record gives (a
    logits-only method such as CARD has no classifier readout)."""
    for recs in by_method.values():
        for r in recs:
            for ro in READOUTS:
                if scores_of(r, ro) is not None:
                    return len(np.asarray(scores_of(r, ro)))
    return 0


def _method_key(order: dict[str, int]):
    return lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), order[m])


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _finite(x) -> float | None:
    # JSON has no inf/NaN: e.g. the mean PSNR of an uncorrupted input is +inf, stored as null.
    return float(x) if x is not None and math.isfinite(x) else None


def _signal_mean(values: np.ndarray) -> float | None:
    """The mean of a signal metric over seeds and items, leaving out NaN (an item the metric cannot score, e.g. an
    utterance too short for ESTOI); None when no item has a value. Without NaN: `values.mean()`, as before."""
    ok = ~np.isnan(values)
    if ok.all():
        return _finite(values.mean())
    return _finite(values[ok].mean()) if ok.any() else None


def _secondary(recs: list[dict], readout: str, n_boot: int, seed: int) -> dict:
    """{"secondary": {metric: {"value", "ci95"}}} of one readout when the records carry other scores of the same
    answers (`Domain.secondary_scores`, e.g. speech's string accuracy beside WER; seeds averaged per item, as the
    task metric), else {}."""
    per_seed = [r.get(f"secondary_{readout}") for r in recs]
    if not per_seed or any(v is None for v in per_seed):
        return {}
    out = {}
    for name in per_seed[0]:
        metric = get_metric(name)
        scores = np.stack([np.asarray(v[name], dtype=np.float64) for v in per_seed])
        out[name] = {"value": metric.value(scores),
                     "ci95": list(bootstrap_ci(scores, n_boot=n_boot, seed=seed, metric=metric))}
    return {"secondary": out}


def summarise(records, *, domain: str, dataset: str, split: str, clean_accuracy: float, n_boot: int = 2000, seed: int = 0, extra: dict | None = None,
              signal_metrics=IMAGE_METRICS) -> dict:
    """Build the `results.json` dict (method.md section 6) from per-seed `records` (see the module docstring).

    `domain`, `dataset`, `split`: names stored at the top; `clean_accuracy`: the classifier's score on
    clean test items, in the records' metric (accuracy, or e.g. WER); `n_boot`, `seed`: bootstrap resamples and their seed (deterministic output);
    `extra`: settings stored under "settings"; `signal_metrics`: the names of the records' per-item signal
    metrics (the domain's; PSNR and SSIM for images), each row's mean of them. One row per (method, corruption, severity, readout): readout
    "logits" where `correct_logits` is given, "classifier" always. `value` is the mean over seeds and items,
    `ci95` its bootstrap interval over items, `delta_vs_sequential`/`delta_ci95` the paired difference to
    sequential's classifier readout on the same items (null without a sequential record), `gap_recovered`
    is measured from noisy's classifier readout to `clean_accuracy` (null without noisy, or with no gap).
    """
    if not isinstance(records, (list, tuple)) or not records:
        raise CoupledError("records must be a non-empty list of per-seed result dicts; run at least one method")
    metrics = {record_metric(r).name for r in records if isinstance(r, dict)}
    if len(metrics) > 1:
        raise CoupledError(f"records mix metrics {sorted(metrics)}; summarise one task's records at a time")
    metric = get_metric(metrics.pop() if metrics else "accuracy")
    top = 1 if metric.name == "accuracy" else math.inf
    if isinstance(clean_accuracy, bool) or not isinstance(clean_accuracy, numbers.Real) or not 0 <= clean_accuracy <= top:
        raise CoupledError(f"clean_accuracy must be a number in [0, {top:g}] (the clean {metric.name}), got {clean_accuracy!r}")
    for k, v in (("domain", domain), ("dataset", dataset), ("split", split)):
        if not isinstance(v, str) or not v:
            raise CoupledError(f"{k} must be a non-empty string, got {v!r}")
    if extra is not None and not isinstance(extra, dict):
        raise CoupledError(f"extra must be a dict of settings or None, got {type(extra).__name__}")

    # one group per condition: (corruption, severity, level); two labelled conditions may share a severity
    groups: dict[tuple[str, float, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen_corruption: dict[str, int] = {}
    seen_method: dict[str, int] = {}
    for i, r in enumerate(records):
        _check_record(i, r, signal_metrics)
        runs = groups[(r["corruption"], float(r["severity"]), r["level"])][r["method"]]
        if any(int(q["seed"]) == int(r["seed"]) for q in runs):
            raise CoupledError(f"record {i} repeats seed {r['seed']} of method '{r['method']}' at {r['corruption']} {r['severity']:g}; keep one record per seed")
        runs.append(r)
        seen_corruption.setdefault(r["corruption"], i)
        seen_method.setdefault(r["method"], i)

    rows = []
    for key in sorted(groups, key=lambda g: (seen_corruption[g[0]], g[1], g[2])):
        (corruption, severity, _), by_method = key, groups[key]
        n = _item_count(by_method)
        scores = {}
        for m, recs in by_method.items():
            recs.sort(key=lambda r: int(r["seed"]))
            where = f"method '{m}' at {corruption} {severity:g}"
            scores[m] = {ro: _stack(recs, f"score_{ro}", n, where, metric.ratio, metric.columns) for ro in READOUTS}
            scores[m].update({q: _stack(recs, q, n, where) for q in signal_metrics})
            if scores[m]["classifier"] is None and scores[m]["logits"] is None:
                raise CoupledError(f"both 'score_classifier' and 'score_logits' are None for {where}; give at least one readout")
            if len({r["level"] for r in recs}) > 1:
                raise CoupledError(f"seeds of {where} disagree on its level {sorted({r['level'] for r in recs})}; use one level name per severity")
        seq = scores.get("sequential", {}).get("classifier")
        noisy_acc = metric.value(scores["noisy"]["classifier"]) if "noisy" in scores else None
        for m in sorted(by_method, key=_method_key(seen_method)):
            recs, s = by_method[m], scores[m]
            for readout in READOUTS:
                if s[readout] is None:
                    continue
                value = metric.value(s[readout])
                delta = paired_bootstrap(s[readout], seq, n_boot=n_boot, seed=seed, metric=metric) if seq is not None else None
                gap = gap_recovered(value, noisy_acc, clean_accuracy) if noisy_acc is not None else None
                rows.append({
                    "method": m, **({"base_method": recs[0]["base_method"], "settings": recs[0].get("settings", {})}
                                    if recs[0].get("base_method", m) != m or recs[0].get("settings") else {}),
                    "corruption": corruption, "severity": severity, "level": recs[0]["level"],
                    **recs[0].get("condition", {}),
                    "metric": metric.name, "readout": readout, "value": value,
                    "ci95": list(bootstrap_ci(s[readout], n_boot=n_boot, seed=seed, metric=metric)),
                    "delta_vs_sequential": None if delta is None else delta[0],
                    "delta_ci95": None if delta is None else list(delta[1:]),
                    "calls": {k: _num(np.mean([r["calls"][k] for r in recs])) for k in (*_CALLS, *_PASSES)
                              if all(k in r["calls"] for r in recs)},
                    "seconds_per_item": float(np.mean([r["seconds_per_item"] for r in recs])),
                    **({"seconds_per_signal_second": float(np.mean([r["seconds_per_signal_second"] for r in recs]))}
                       if all("seconds_per_signal_second" in r for r in recs) else {}),
                    "n_items": n, "seeds": [int(r["seed"]) for r in recs],
                    **{q: None if s[q] is None else _signal_mean(s[q]) for q in signal_metrics},
                    "gap_recovered": _finite(gap),
                    **_secondary(recs, readout, n_boot, seed),
                })
    results = {"schema": SCHEMA, "domain": domain, "dataset": dataset, "split": split,
               "clean": {"metric": metric.name, "value": float(clean_accuracy)}, "rows": rows}
    if tuple(signal_metrics) != IMAGE_METRICS:  # image results keep their shape of before the domain registry
        results["signal_metrics"] = list(signal_metrics)
    if extra is not None:
        results["settings"] = dict(extra)
    return results


def write_results(results: dict, path) -> Path:
    """Write `results` as strict JSON (no NaN) to `path` atomically (`coupled.atomic`), so a reader never sees a
    half-written file. Creates missing parent folders. Returns the path."""
    try:
        text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise CoupledError(f"results are not JSON-serialisable ({e}); pass the dict from summarise, with plain floats and no NaN") from None
    return atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------- markdown
def settings_text(s: dict) -> str:
    """A method's settings in the short names the tables use (GLOSSARY says what they are)."""
    short = {"signal_steps": "Nx", "logit_steps": "Ny", "signal_net": "net", "signal_eta": "eta", "noise_fraction": "t*",
             "logit_samples": "M", "signal_guidance": "w", "switch_fraction": "switch", "refresh_every": "every",
             "refresh_from": "warm", "refresh_signal_steps": "Nr", "rounds": "R", "k": "K", "classifier_gradient": "grad"}
    return ", ".join(f"{short.get(k, k)}={v}" for k, v in s.items() if k != "refresh_window") or "-"



GLOSSARY = (
    "Columns: **value** is the task score on the test items (accuracy: higher is better; WER: lower is better), "
    "**s/item** the measured seconds per item in this run, **Δ [95%]** the coupled pick minus the cost-matched "
    "baseline with its paired bootstrap interval over items, **per-seed Δ** the same difference per sampling seed. "
    "Readouts: *logits* reads the logit chain's final estimate y_hat, *classifier* the frozen classifier on the "
    "enhanced signal f(x_hat). Settings: Nx / Ny signal / logit steps, net which signal denoiser (joint: the "
    "coupled one; pretrained; sequential: the baseline's own), eta the DDIM noise, w the guidance weight on the "
    "logit conditioning, switch Parallel's switch fraction, R Alternating's rounds, M logit samples, every / warm / "
    "Nr Nested's refresh period, warm-start fraction and steps, K ensemble members, t* purification's noising "
    "time, grad gradient-guidance step. Calls s/l/c: signal denoiser, logit denoiser and classifier calls per item.")


def verdict(h: dict) -> str:
    """One sentence saying what a cost-matched headline entry shows, e.g. "pixel_noise (heavy): coupling is not
    better than one_step here: -0.005 [-0.015, +0.005] at 1.3x its cost." """
    metric = get_metric(h.get("metric", "accuracy"))
    c, b = h["coupled"], h["baseline"]
    lo, hi = h["delta_ci95"]
    better = lo > 0 if metric.higher_is_better else hi < 0
    worse = hi < 0 if metric.higher_is_better else lo > 0
    word = "better than" if better else ("worse than" if worse else "not distinguishable from")
    ratio = c["seconds_per_item"] / b["seconds_per_item"] if b["seconds_per_item"] > 0 else float("inf")
    # one round of Alternating classifies a signal trajectory that no logit estimate has reached yet: its
    # classifier readout is the signal chain's alone, so a difference it makes is no coupling's
    uncoupled = (c["method"] == "alternating" and c["readout"] == "classifier"
                 and (c.get("settings") or {}).get("rounds", 2) == 1)
    note = (" (the interval includes zero)" if not (better or worse) else "") + (
        "; no coupling is at work in this pick: with one round its classifier readout is the signal chain's alone "
        "(sequential's answer with the joint signal net)" if uncoupled else "")
    return (f"{h['corruption']} ({h['level']}): coupling ({c['method']}) is {word} the best baseline of no greater "
            f"cost ({b['method']}) here: {h['delta']:+.3f} {metric.name} [{lo:+.3f}, {hi:+.3f}] at {ratio:.1f}x its "
            f"cost{note}.")


def headline_table(results: dict) -> str:
    """Markdown: the cost-matched headline of a test results dict, one verdict sentence per entry, then the table."""
    name = results.get("clean", {}).get("metric", "accuracy")
    short = "acc" if name == "accuracy" else name.upper()
    lines = [f"| corruption | level | coupled pick (readout; settings) | {short} | s/item | cost-matched baseline | {short} | s/item | Δ [95%] | per-seed Δ | coupling better |",
             "|---|---|---|---:|---:|---|---:|---:|---|---|---|"]
    for h in results.get("headline", []):
        c, b = h["coupled"], h["baseline"]
        lo, hi = h["delta_ci95"]
        lines.append(f"| {h['corruption']} | {h['level']} | {c['method']} ({c['readout']}; {settings_text(c['settings'])}) | {c['value']:.3f} | "
                     f"{c['seconds_per_item']:.4f} | {b['method']} ({settings_text(b['settings'])}) | {b['value']:.3f} | {b['seconds_per_item']:.4f} | "
                     f"{h['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {', '.join(f'{d:+.3f}' for d in h['per_seed_delta'])} | "
                     f"{'yes' if h.get('coupled_better', h['above_zero']) else 'no'} |")
    sentences = [f"- {verdict(h)}" for h in results.get("headline", [])]
    return "\n".join([*sentences, "", *lines])


def _check_results(results) -> list[dict]:
    if not isinstance(results, dict) or "rows" not in results or "clean" not in results:
        raise CoupledError("results must be the dict returned by summarise (with 'clean' and 'rows'); build it with summarise(records, ...)")
    return results["rows"]


def _ordered(rows: list[dict], key: str) -> list:
    return list(dict.fromkeys(r[key] for r in rows))


def _series(rows: list[dict]) -> list[tuple[str, str]]:
    """(method, readout) pairs in report order."""
    first = {m: i for i, m in enumerate(_ordered(rows, "method"))}
    pairs = dict.fromkeys((r["method"], r["readout"]) for r in rows)
    return sorted(pairs, key=lambda p: (_method_key(first)(p[0]), READOUTS.index(p[1]) if p[1] in READOUTS else len(READOUTS)))


def _table(header: list[str], body: list[list[str]], left: int = 2) -> str:
    """Plain pipe table, padded so it also reads in a terminal; the first `left` columns left-aligned."""
    width = [max(len(row[j]) for row in [header, *body]) for j in range(len(header))]
    pad = lambda row: "| " + " | ".join(c.ljust(w) if j < left else c.rjust(w) for j, (c, w) in enumerate(zip(row, width))) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if j >= left else ("-" * (w + 2)) for j, w in enumerate(width)) + "|"
    return "\n".join([pad(header), rule, *map(pad, body)])


def _acc_cell(r: dict | None) -> str:
    return "-" if r is None else f"{r['value']:.3f} ± {(r['ci95'][1] - r['ci95'][0]) / 2:.3f}"


def _delta_cell(r: dict | None) -> str:
    if r is None or r.get("delta_vs_sequential") is None:
        return "-"
    lo, hi = r["delta_ci95"]
    return f"{r['delta_vs_sequential']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _opt(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown_report(results: dict) -> str:
    """Human-readable `report.md` text for `results` (from `summarise`): the clean accuracy, then one pipe
    table per corruption with a row per (method, readout): accuracy ± 95% CI half-width and the paired
    difference to sequential [95% interval] at every severity, then PSNR, SSIM, denoiser/classifier calls
    and seconds per item at the heaviest severity."""
    rows = _check_results(results)
    metrics = tuple(results.get("signal_metrics", IMAGE_METRICS))
    title = " / ".join(str(results.get(k, "?")) for k in ("domain", "dataset", "split"))
    metric = get_metric(results["clean"].get("metric", "accuracy"))
    short = "acc" if metric.name == "accuracy" else metric.name.upper()
    out = [f"# Results: {title}", "", f"Clean {metric.name}: {results['clean']['value']:.3f}", ""]
    if not rows:
        out += ["No result rows.", ""]
    for corruption in _ordered(rows, "corruption"):
        rs = [r for r in rows if r["corruption"] == corruption]
        sevs = sorted({r["severity"] for r in rs})
        level = {r["severity"]: r.get("level") for r in rs}
        at = {(r["method"], r["readout"], r["severity"]): r for r in rs}
        heavy = [r for r in rs if r["severity"] == sevs[-1]]
        header = ["method", "readout"]
        for s in sevs:
            header += [f"{short} {s:g} ({level[s]})", f"Δ vs sequential {s:g} [95%]"]
        header += [*map(_metric_head, metrics), "calls s/l/c", "s/item"]
        body = []
        for m, ro in _series(rs):
            cells = [m, ro]
            for s in sevs:
                cells += [_acc_cell(at.get((m, ro, s))), _delta_cell(at.get((m, ro, s)))]
            h = at.get((m, ro, sevs[-1]))
            calls = "-" if h is None else "/".join(str(h["calls"][k]) for k in _CALLS)
            cells += [*(_opt(h and h.get(q), _METRIC_FORMAT.get(q, ".3g")) for q in metrics), calls,
                      _opt(h and h["seconds_per_item"], ".3g")]
            body.append(cells)
        seeds = sorted({s for r in heavy for s in r["seeds"]})
        out += [f"## {corruption}", "",
                f"{heavy[0]['n_items']} items, seeds {seeds}. {metric.name.capitalize()} "
                f"({'higher' if metric.higher_is_better else 'lower'} is better) ± half-width of its 95% bootstrap interval; "
                f"Δ is the paired difference to sequential (classifier readout). {', '.join(map(_metric_head, metrics))}{', ' if metrics else ''}calls (signal/logits/classifier) "
                f"and seconds per item at severity {sevs[-1]:g} ({level[sevs[-1]]}).", "", _table(header, body), ""]
    if results.get("headline"):
        out += ["## Cost-matched headline", "", headline_table(results), "", GLOSSARY, ""]
    if results.get("settings"):
        out += ["## Settings", "", *(f"- {k}: {json.dumps(v, default=str)}" for k, v in results["settings"].items()), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- plots
def _figure(**kwargs):
    # A bare Figure on an Agg canvas: no pyplot state, no GUI backend, nothing left open after saving.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def _message_figure(text: str):
    fig = _figure(figsize=(4, 2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=14)
    return fig


def plot_accuracy_vs_severity(results: dict, path) -> Path:
    """Plot the score against severity from `results` (from `summarise`) into the PNG `path`: one panel per
    corruption, a colour per method and a line style per readout (classifier solid, logits dashed), 95% CI
    error bars, the clean score as a dotted line, the legend outside on the right. A panel with a single
    severity is a bar chart instead (hatched bars are the logits readout). Returns the path."""
    rows = _check_results(results)
    if not rows:
        return _save(_message_figure("no results"), path)
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    corruptions, series = _ordered(rows, "corruption"), _series(rows)
    methods = list(dict.fromkeys(m for m, _ in series))
    colour = {m: matplotlib.colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    metric = results["clean"].get("metric", "accuracy")
    # At most 3 panels a row, so many corruptions wrap instead of making an unreadably wide strip.
    ncols = min(3, len(corruptions))
    nrows = -(-len(corruptions) // ncols)
    fig = _figure(figsize=(4.6 * ncols + 2.8, 4.0 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for ax in grid.flat[len(corruptions):]:
        ax.set_axis_off()
    bars = False
    for ax, corruption in zip(grid.flat[: len(corruptions)], corruptions):
        rs = [r for r in rows if r["corruption"] == corruption]
        sevs = sorted({r["severity"] for r in rs})
        present = [(m, ro) for m, ro in series if any(r["method"] == m and r["readout"] == ro for r in rs)]
        if len(sevs) == 1:  # one condition: bars, one per (method, readout)
            bars = True
            for j, (m, ro) in enumerate(present):
                r = next(r for r in rs if r["method"] == m and r["readout"] == ro)
                ax.bar(j, r["value"], color=colour[m], hatch="//" if ro == "logits" else None, edgecolor="k", lw=0.5,
                       yerr=[[r["value"] - r["ci95"][0]], [r["ci95"][1] - r["value"]]], capsize=3)
            ax.set_xticks(range(len(present)), [m for m, _ in present], rotation=35, ha="right", fontsize="small")
            level = rs[0].get("level")
            ax.set_xlabel(f"severity {sevs[0]:g}" + (f" ({level})" if level else ""))
        else:
            step = 0.008 * ((sevs[-1] - sevs[0]) or 1.0)  # a small sideways nudge so error bars stay apart
            for j, (m, ro) in enumerate(present):
                pts = sorted((r for r in rs if r["method"] == m and r["readout"] == ro), key=lambda r: r["severity"])
                y = np.array([r["value"] for r in pts])
                ci = np.array([r["ci95"] for r in pts])
                ax.errorbar([r["severity"] + (j - (len(present) - 1) / 2) * step for r in pts], y,
                            yerr=[y - ci[:, 0], ci[:, 1] - y], color=colour[m], ls="--" if ro == "logits" else "-",
                            marker="o", ms=4, lw=1.5, capsize=3)
            ax.set(xlabel="severity", xticks=sevs)
        ax.axhline(results["clean"]["value"], color="0.35", ls=":", lw=1.3)
        ax.set_title(corruption)
        ax.grid(alpha=0.3, axis="y")
    for ax in grid[:, 0]:
        ax.set_ylabel(metric)
    handles = [Patch(color=colour[m], label=m) for m in methods]
    if bars:
        handles += [Patch(facecolor="white", edgecolor="k", label="classifier readout"),
                    Patch(facecolor="white", edgecolor="k", hatch="//", label="logits readout")]
    if not all(len({r["severity"] for r in rows if r["corruption"] == c}) == 1 for c in corruptions):
        handles += [Line2D([], [], color="k", ls="-", label="classifier readout (line)"),
                    Line2D([], [], color="k", ls="--", label="logits readout (line)")]
    handles.append(Line2D([], [], color="0.35", ls=":", label=f"clean {metric}"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="colour: method")
    return _save(fig, path)


def _to_image(img, where: str) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise CoupledError(f"image of {where} must be [H, W] or [H, W, 3], got shape {a.shape}; move channels last with img.transpose(1, 2, 0)")
    return a


def plot_examples(rows: list[dict], path) -> Path:
    """Draw example images into the PNG `path`: one grid row per entry of `rows`, each
    `{"title": str, "panels": [(caption, image), ...]}` with images [H, W] (grey) or [H, W, 3] in [-1, 1];
    the caption sits over each panel, the title left of its row. An empty `rows` writes a figure saying
    "no examples". Returns the path."""
    if not rows:
        return _save(_message_figure("no examples"), path)
    if not all(isinstance(r, dict) and "panels" in r for r in rows):
        raise CoupledError("rows must be a list of {'title': str, 'panels': [(caption, image), ...]} dicts")
    ncols = max(1, max(len(r["panels"]) for r in rows))
    longest = max(len(str(r.get("title", ""))) for r in rows)
    # Leave room on the left for the row titles (about 0.09 inch per character at this font size).
    fig = _figure(figsize=(1.7 * ncols + 0.09 * longest + 0.3, 1.9 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            if j >= len(row["panels"]):
                ax.set_axis_off()
                continue
            caption, img = row["panels"][j]
            a = _to_image(img, f"row {i} panel {j}")
            if a.ndim == 2:
                ax.imshow(a, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            else:
                ax.imshow(np.clip((a + 1) / 2, 0, 1), interpolation="nearest")
            ax.set_title(textwrap.fill(str(caption), 26), fontsize="small")  # long captions (transcripts) wrap
            # Ticks and frame off but the axis kept on: the row title lives in the first panel's y label.
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
        axes[i][0].set_ylabel(str(row.get("title", "")), rotation=0, ha="right", va="center", fontsize="medium")
    return _save(fig, path)
