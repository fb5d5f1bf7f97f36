"""Run methods over a fixed corrupted split: the paired comparisons of the spec's section 5.

The corrupted split is generated once per (corruption, severity) from `corruption_seed`, so every method
and every sampling seed sees the same degraded items. Item i under sampling seed s draws its noise from
its own generator seeded by (s, i): results do not depend on batch size or order.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..engine import METHODS, item_generators, run_method
from .metrics import psnr, ssim

COUPLED = ("parallel", "alternating", "nested")
CORRUPTION_SEED = 12345  # the seed of the fixed corrupted splits every method is evaluated on


def sampling_seeds(seed: int, first_index: int, n: int) -> list[int]:
    """Per-item generator seeds for sampling seed `seed` and items first_index .. first_index + n - 1."""
    return [int(np.random.SeedSequence([seed, first_index + i]).generate_state(1)[0]) for i in range(n)]


@torch.no_grad()
def run_split(bundle, clean: torch.Tensor, labels: torch.Tensor, degraded: torch.Tensor, method: str, seed: int,
              options: dict, batch_size: int, device) -> dict:
    """One method, one sampling seed, over a whole (already degraded) split; returns per-item outcomes."""
    out = {"correct_logits": [], "pred_classifier": [], "psnr": [], "ssim": [], "x_hat": []}
    coupling, options = bundle.for_method(options)
    calls, started = None, time.perf_counter()
    for i in range(0, len(degraded), batch_size):
        d = degraded[i:i + batch_size].to(device)
        gens = item_generators(sampling_seeds(seed, i, len(d)))
        res = run_method(method, coupling, d, gens, **options)
        y = labels[i:i + batch_size]
        out["pred_classifier"].append(res.prediction("classifier").cpu().numpy())
        if res.y_hat is not None:
            out["correct_logits"].append((res.prediction("logits").cpu() == y).numpy())
        if res.x_hat is not None:
            x = res.x_hat.cpu()
            out["psnr"].append(psnr(x, clean[i:i + batch_size]).numpy())
            out["ssim"].append(ssim(x, clean[i:i + batch_size]).numpy())
            out["x_hat"].append(x)
        calls = res.calls
    seconds = (time.perf_counter() - started) / len(degraded)
    cat = lambda k: np.concatenate(out[k]) if out[k] else None  # noqa: E731
    pred = cat("pred_classifier")
    return {"correct_logits": cat("correct_logits"), "correct_classifier": pred == labels.numpy(), "pred": pred,
            "psnr": cat("psnr"), "ssim": cat("ssim"), "calls": calls, "seconds_per_item": seconds,
            "x_hat": torch.cat(out["x_hat"]) if out["x_hat"] else None}


def evaluate(bundle, data, severities: dict, *, methods=tuple(METHODS), method_options: dict | None = None,
             seeds_for_level=None, batch_size: int = 250, corruption_seed: int = CORRUPTION_SEED, device="cpu",
             progress: bool = True, n_examples: int = 3):
    """Every method over every corruption and severity of `severities` ({name: {level: severity}}).

    Returns (records, example_rows): records as `report.summarise` reads them, and rows for
    `report.plot_examples` (heavy severity, first seed, items where a coupled method changed the answer).
    """
    from ..domains.image.corruptions import corrupt

    method_options = method_options or {}
    seeds_for_level = seeds_for_level or (lambda level: [0, 1, 2] if level == "heavy" else [0])
    jobs = [(name, level, sev, seed, m) for name, levels in severities.items() for level, sev in levels.items()
            for seed in seeds_for_level(level) for m in methods if not (m == "noisy" and seed != seeds_for_level(level)[0])]
    records, examples, cache = [], [], {}
    bar = tqdm(jobs, desc="evaluate", disable=not progress, unit="run")
    for name, level, sev, seed, method in bar:
        bar.set_postfix_str(f"{name}/{level} {method} seed {seed}")
        key = (name, level)
        if key not in cache:
            cache = {key: corrupt(data.images, name, sev, corruption_seed)}
            outcomes = {}
        degraded = cache[key]
        r = run_split(bundle, data.images, data.labels, degraded, method, seed, method_options.get(method, {}),
                      batch_size, device)
        if seed == seeds_for_level(level)[0]:
            outcomes[method] = r
        if method == methods[-1] and level == "heavy" and seed == seeds_for_level(level)[0]:
            examples += _example_rows(name, sev, data, degraded, outcomes, n_examples)
        records.append({"method": method, "corruption": name, "severity": float(sev), "level": level, "seed": seed,
                        **{k: v for k, v in r.items() if k not in ("x_hat", "pred")}})
    return records, examples


def _example_rows(name, sev, data, degraded, outcomes, n):
    """Items where a coupled method's answer differs from sequential's: clean / degraded / each x_hat."""
    seq = outcomes.get("sequential")
    if seq is None:
        return []
    changed = np.zeros(len(degraded), dtype=bool)
    for m in COUPLED:
        if m in outcomes:
            changed |= outcomes[m]["pred"] != seq["pred"]
    rows = []
    idx = np.flatnonzero(changed)
    if len(idx) > n:  # evenly spread over the split (stored class by class), not the first n items
        idx = idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]
    for i in idx:
        label = int(data.labels[i])
        panels = [(f"clean ({label})", data.images[i, 0].numpy()), (f"{name} {sev:g}", degraded[i, 0].numpy())]
        for m in ("sequential", *COUPLED):
            if m in outcomes and outcomes[m]["x_hat"] is not None:
                pred = int(outcomes[m]["pred"][i])
                panels.append((f"{m}: {pred}{'' if pred == label else ' (wrong)'}", outcomes[m]["x_hat"][i, 0].numpy()))
        rows.append({"title": f"item {i}, label {label}", "panels": panels})
    return rows
