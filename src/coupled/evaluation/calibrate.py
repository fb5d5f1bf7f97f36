"""`coupled calibrate` for any domain whose severities are numbers: light / medium / heavy chosen on the validation
split, where the noisy classifier's task metric crosses each level's target.

The domain says how (`Domain.calibration_search`): the targets ({level: value of its task metric}, e.g. accuracy
70% / 40% / 20%, or a WER for a domain scored by WER) and where to look, either a grid of severities (ascending;
each level takes the last grid point before the metric first falls short of its target, the first point if it
already does) or bisection in [0, top] (the metric must worsen monotonically with the severity). The validation
split is corrupted with the corruption stream of `CALIBRATION_SEED` and scored by the bundle's classifier
(`Domain.clean_score` on the corrupted items). A domain with its own way (speech's labelled SNR conditions)
defines `run_calibrate` instead.
"""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np

from ..errors import CoupledError
from ..scores import get_metric

CALIBRATION_SEED = 777  # the corruption seed of the validation items calibration scores (the published severities')
BISECTION_STEPS = 14


def grid_levels(grid: list, scores: list, targets: dict, metric="accuracy") -> dict:
    """{level: severity}: for each target, the last severity of `grid` (ascending) before `scores` (the metric at
    each grid point) first fall short of the target; the first grid point if it already does."""
    metric = get_metric(metric)
    out = {}
    for level, target in targets.items():
        short = next((i for i, s in enumerate(scores) if metric.better(target, s)), len(grid))
        out[level] = grid[max(short - 1, 0)]
    return out


def bisect_level(score_at, target: float, top: float, metric="accuracy", steps: int = BISECTION_STEPS) -> float:
    """The severity in [0, `top`] where `score_at` (worsening with the severity) crosses `target`, by `steps`
    bisections; rounded to 3 decimals."""
    metric = get_metric(metric)
    lo, hi = 0.0, float(top)
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if metric.better(score_at(mid), target) else (lo, mid)
    return round((lo + hi) / 2, 3)


def score_function(domain, classifier, val, name: str, seed: int = CALIBRATION_SEED):
    """severity -> the classifier's task metric on the validation split `val` corrupted by `name` at that severity
    (item i by the corruption stream of (`seed`, its index or id))."""

    def score_at(severity) -> float:
        x = domain.corrupt_set(val.signals, name, severity, seed, lengths=val.lengths, indices=val.ids)
        # in single precision, as the published image severities were found (a float32 mean): a score exactly at
        # a target then falls on the side its float32 rounding does (0.2 above, 0.7 below), as it did for them
        return float(np.float32(domain.clean_score(classifier, replace(val, signals=x))))

    return score_at


def calibrate(domain, cfg: dict, *, checkpoint=None, seed: int = CALIBRATION_SEED, progress: bool = True) -> dict:
    """{"severities": {corruption: {level: severity}}, "val_<metric>": the metric measured at each, "targets": ...}
    for every corruption the config names (in `corruptions.severities` or `train_severity`), with the classifier of
    the bundle `checkpoint` (default: the config's `output`)."""
    from ..bundle import load_net

    classifier, _ = load_net(checkpoint or cfg["output"], "classifier", "classifier", domain.name)
    val = domain.load_splits(cfg)["val"]
    metric = get_metric(domain.task_metric(val.task))
    corruptions = cfg["corruptions"]
    names = list(dict.fromkeys([*corruptions.get("severities", {}), *corruptions.get("train_severity", {})]))
    severities, measured, all_targets = {}, {}, {}
    for name in names:
        score_at = score_function(domain, classifier, val, name, seed)
        search = domain.calibration_search(name, cfg, val, score_at)
        if search is None:
            raise CoupledError(f"the {domain.name} domain sets no calibration targets for corruption {name!r}; give it "
                               "`calibration_targets` ({level: target of its task metric}) or a `calibration_search`")
        targets = search["targets"]
        all_targets[name] = dict(targets)
        if "grid" in search:
            grid = list(search["grid"])
            scores = [score_at(sev) for sev in grid]
            severities[name] = grid_levels(grid, scores, targets, metric)
            measured[name] = {level: round(scores[grid.index(sev)], 3) for level, sev in severities[name].items()}
        else:
            top = search["bisect"]
            if isinstance(top, bool) or not isinstance(top, numbers.Real) or not top > 0:
                raise CoupledError(f"calibration of {name!r}: the top of the bisection must be a positive number, got {top!r}")
            severities[name] = {level: bisect_level(score_at, t, top, metric) for level, t in targets.items()}
            measured[name] = {level: round(score_at(sev), 3) for level, sev in severities[name].items()}
        if progress:
            import sys

            print(f"{name}: {severities[name]}", file=sys.stderr, flush=True)
    return {"severities": severities, f"val_{metric.name}": measured, "targets": all_targets}
