"""Run methods over a fixed corrupted split: the paired, cost-measured comparisons of the spec's section 5.

The corrupted split is generated once per (corruption, severity) from `corruption_seed`, so every method
and every sampling seed sees the same degraded items. Item i (its index in the split) under sampling seed s
draws its noise from its own generator, seeded `coupled.seeds.item_seeds("sampling", s, i, 1)[0]`: a stream
of its own, never the corruption's, whatever the seeds (`coupled.seeds`). Results do not depend on batch size,
and every method draws the same noise for the same item (common random numbers, which tightens paired
comparisons).

Methods are interleaved batch by batch (each batch runs every method, in an order that rotates from batch
to batch), so the seconds per item they report are measured under the same machine load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..bundle import REFERENCE_METHODS
from ..domains.registry import get_domain
from ..engine import COUPLED, item_generators, readouts, run_method
from ..errors import CoupledError
from ..seeds import item_seeds

CORRUPTION_SEED = 12345  # the seed of the fixed corrupted splits every method is evaluated on
# no sampling: one seed is all there is (noisy, and the reference methods that run it)
DETERMINISTIC = ("noisy", *(r for r, engine_method in REFERENCE_METHODS.items() if engine_method == "noisy"))


@dataclass(frozen=True)
class MethodSpec:
    """One evaluated configuration: a row `label` (the method's name, or a clearly named variant of it),
    the `method` that runs and its `options` (strategy options plus the bundle's: signal_guidance,
    signal_net, signal_eta)."""

    label: str
    method: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise CoupledError(f"a method's label must be a non-empty string, got {self.label!r}")
        if not isinstance(self.options, dict):
            raise CoupledError(f"options of {self.label!r} must be a mapping, got {type(self.options).__name__}")


def _readouts(method: str) -> tuple[str, ...]:
    return ("classifier",) if method in DETERMINISTIC else readouts(method)


@torch.no_grad()
def run_specs(bundle, clean: torch.Tensor, labels: torch.Tensor, degraded: torch.Tensor, specs, seed: int,
              batch_size: int, device, keep_x_hat: bool = False) -> dict:
    """Every spec over a whole (already degraded) split under one sampling seed, interleaved batch by batch.

    Returns {label: per-item outcomes, calls per item and measured seconds per item}.
    """
    if not specs:
        return {}
    prepared = {s.label: bundle.prepare(s.method, s.options) for s in specs}
    domain = get_domain(getattr(bundle, "domain", None))
    metrics = domain.signal_metrics  # per-item quality of x_hat
    out = {s.label: {"correct_logits": [], "pred": [], **{k: [] for k in metrics}, "x_hat": [], "calls": None,
                     "seconds": 0.0} for s in specs}
    for b, i in enumerate(range(0, len(degraded), batch_size)):
        d = degraded[i:i + batch_size].to(device)
        y = labels[i:i + batch_size]
        seeds = item_seeds("sampling", seed, i, len(d))
        order = specs[b % len(specs):] + specs[:b % len(specs)]  # rotate, so no method always runs first
        for spec in order:
            coupling, method, options = prepared[spec.label]
            o = out[spec.label]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            res = run_method(method, coupling, d, item_generators(seeds), **options)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            o["seconds"] += time.perf_counter() - started
            o["pred"].append(domain.readout(res.classifier_logits).cpu().numpy())  # the domain's answers
            if res.y_hat is not None:
                o["correct_logits"].append((domain.readout(res.y_hat).cpu() == y).numpy())
            if res.x_hat is not None:
                x = res.x_hat.cpu()
                for k, metric in metrics.items():
                    o[k].append(metric(x, clean[i:i + batch_size]).numpy())
                if keep_x_hat:
                    o["x_hat"].append(x)
            o["calls"] = dict(res.calls)  # per item: one batched call of a network serves every item once
    results = {}
    for spec in specs:
        o = out[spec.label]
        cat = lambda k: np.concatenate(o[k]) if o[k] else None  # noqa: E731
        pred = cat("pred")
        ro = _readouts(spec.method)
        results[spec.label] = {
            "correct_logits": cat("correct_logits") if "logits" in ro else None,
            "correct_classifier": pred == labels.numpy() if "classifier" in ro else None,
            "pred": pred, **{k: cat(k) for k in metrics}, "calls": o["calls"],
            "seconds_per_item": o["seconds"] / len(degraded),
            "x_hat": torch.cat(o["x_hat"]) if o["x_hat"] else None,
        }
    return results


def specs_from_methods(methods, method_options: dict | None = None) -> list[MethodSpec]:
    """One spec per method name, with its options from `method_options` (a config's `sampling.methods`)."""
    method_options = method_options or {}
    return [MethodSpec(m, m, dict(method_options.get(m, {}))) for m in methods]


def evaluate(bundle, data, severities: dict, *, specs, seeds_for_level=None, batch_size: int = 250,
             corruption_seed: int = CORRUPTION_SEED, device="cpu", progress: bool = True, n_examples: int = 3):
    """Every spec over every corruption and severity of `severities` ({name: {level: severity}}).

    Returns (records, example_rows): records as `report.summarise` reads them (one per spec, corruption,
    severity and seed; deterministic methods run on the first seed only), and rows for
    `report.plot_examples` (heavy severity, first seed, items where a coupled method changed the answer).
    """
    domain = get_domain(getattr(bundle, "domain", None))
    device = torch.device(device)
    specs = list(specs)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise CoupledError(f"method labels must be unique, got {labels}")
    seeds_for_level = seeds_for_level or (lambda level: [0, 1, 2] if level == "heavy" else [0])
    jobs = [(name, level, sev, seed) for name, levels in severities.items() for level, sev in levels.items()
            for seed in seeds_for_level(level)]
    records, examples = [], []
    bar = tqdm(jobs, desc="evaluate", disable=not progress, unit="run")
    degraded, key = None, None
    for name, level, sev, seed in bar:
        bar.set_postfix_str(f"{name}/{level} seed {seed}")
        if key != (name, level):
            key, degraded = (name, level), domain.corrupt_set(data.signals, name, sev, corruption_seed)
        first = seed == seeds_for_level(level)[0]
        todo = [s for s in specs if first or s.method not in DETERMINISTIC]
        outcomes = run_specs(bundle, data.signals, data.labels, degraded, todo, seed, batch_size, device,
                             keep_x_hat=first and level == "heavy")
        if first and level == "heavy":
            examples += _example_rows(name, sev, data, degraded, outcomes, {s.label: s.method for s in todo}, n_examples,
                                      domain.example_panel)
        for spec in todo:
            r = outcomes[spec.label]
            records.append({"method": spec.label, "base_method": spec.method, "settings": dict(spec.options),
                            "corruption": name, "severity": float(sev), "level": level, "seed": seed,
                            **{k: v for k, v in r.items() if k not in ("x_hat", "pred")}})
    return records, examples


def _example_rows(name, sev, data, degraded, outcomes, methods: dict, n, panel):
    """Items where a coupled method's answer differs from sequential's: clean / degraded / each x_hat, each drawn
    by the domain's `panel` (signal -> picture)."""
    seq = outcomes.get("sequential")
    coupled = [label for label, m in methods.items() if m in COUPLED]
    if seq is None:
        return []
    changed = np.zeros(len(degraded), dtype=bool)
    for label in coupled:
        changed |= outcomes[label]["pred"] != seq["pred"]
    rows = []
    idx = np.flatnonzero(changed)
    if len(idx) > n:  # evenly spread over the split (stored class by class), not the first n items
        idx = idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]
    for i in idx:
        label = int(data.labels[i])
        panels = [(f"clean ({label})", panel(data.signals[i])), (f"{name} {sev:g}", panel(degraded[i]))]
        for m in ("sequential", *coupled):
            if outcomes[m]["x_hat"] is not None:
                pred = int(outcomes[m]["pred"][i])
                panels.append((f"{m}: {pred}{'' if pred == label else ' (wrong)'}", panel(outcomes[m]["x_hat"][i])))
        rows.append({"title": f"item {i}, label {label}", "panels": panels})
    return rows
