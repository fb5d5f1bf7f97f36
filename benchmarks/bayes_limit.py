"""The Bayes limit (issue 18, item 4): every method of the engine with exact denoisers on class-conditional
Gaussian mixtures, against network evaluations, beside the best accuracy any method can reach from d.

For each cell (mixture geometry x class separation x noise level) the script draws a validation split and a
test split, degrades them with white noise, and runs every candidate configuration of every method (baselines
with their own knobs: signal steps, eta, ensemble size, purification time; coupled strategies with theirs: step
counts, rounds, the signal denoiser's trust in the logit estimate) with the domain's exact networks
(`coupled.domains.gmm`): the Bayes classifier, E[s | x_t, d] (re-weighted by the logit evidence for the coupled
methods), and the CARD-like Gaussian logit denoiser. Cost is network evaluations, D_x + D_y calls per item (f
calls beside them). Selection is on validation; test figures (3 sampling seeds, paired bootstrap over items) are
read for the selected configurations only:

- headline (method.md section 5): the best coupled configuration on validation against the best baseline whose
  cost is not higher, also chosen on validation;
- per budget (1, 2, 5, 10, 20, 40 evaluations): the best coupled and the best baseline within it;
- per method family: its best configuration and the fraction of the gap from noisy f(d) to the Bayes limit it
  closes, (acc - acc_noisy) / (acc_bayes - acc_noisy), the Bayes limit being argmax p(k | d) on the same items.

Then the same with a signal denoiser whose error is controlled (`error`: a deterministic error field of that RMS
per coordinate, measured) on a few cells.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bayes_limit.py            # 37 min, one thread, busy machine
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bayes_limit.py --quick    # one cell, a smoke run

writes docs/results/bayes_limit.json, docs/results/bayes_limit.png (the map) and bayes_limit_curves.png
(accuracy against evaluations; the error sweep).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from coupled.domains.gmm.mixture import bayes_accuracy, make_mixture
from coupled.domains.gmm.networks import BayesClassifier, ExactSignalNet, GaussianLogitNet, MixtureNetConfig
from coupled.engine import BASELINES, COUPLED, Chain, Coupling, Denoiser, FrozenClassifier, VPProcess, run_method
from coupled.evaluation.stats import paired_bootstrap
from coupled.seeds import stream_seed

OUT = Path(__file__).parents[1] / "docs" / "results"
PROCESS = VPProcess(1000, "cosine")
DIM, TAU, LOGIT_SCALE = 8, 0.3, 0.8
GEOMETRIES = {"means": {"classes": 4}, "sandwich": {"classes": 3}}
SEPARATIONS = {"means": (1.0, 2.0, 3.0), "sandwich": (1.0, 2.0, 3.0)}
NOISES = (0.5, 1.0, 1.5, 2.0)
BUDGETS = (1, 2, 5, 10, 20, 40)
BETAS = (1.0, 4.0, 16.0)  # the signal denoiser's trust in the logit estimate (p(l | k) ∝ exp(beta l_k))
ERRORS = (0.0, 0.1, 0.25, 0.5)
ERROR_CELLS = (("means", 2.0, 1.0), ("sandwich", 2.0, 1.0))
ASYMPTOTIC = {"k": 32, "signal_steps": 50}  # method.md section 9: many posterior samples, probabilities averaged
N_VAL, N_TEST, SEEDS, N_BOOT = 1000, 2000, (0, 1, 2), 1000


def candidates():
    """(family, method, options, eta, beta): every configuration tried; baselines do not read beta."""
    out = [("noisy", "noisy", {}, 0.0, 0.0), ("one_step", "one_step", {}, 0.0, 0.0)]
    for eta in (0.0, 1.0):
        for s in (2, 3, 5, 10, 20):
            out.append(("sequential", "sequential", {"signal_steps": s}, eta, 0.0))
    for k in (2, 4, 8, 16):
        for s in (1, 2, 5):
            out.append(("sequential_ensemble", "sequential_ensemble", {"k": k, "signal_steps": s}, 0.0, 0.0))
    for k in (4, 16):  # ancestral (eta 1) ensembles: one step would be the same as eta 0
        for s in (2, 5):
            out.append(("sequential_ensemble", "sequential_ensemble", {"k": k, "signal_steps": s}, 1.0, 0.0))
    for frac in (0.3, 0.6):
        for s in (1, 2, 5):
            out.append(("purification", "purification", {"noise_fraction": frac, "signal_steps": s}, 0.0, 0.0))
    for s in (2, 5):
        out.append(("logits_only", "logits_only", {"logit_steps": s}, 0.0, 0.0))
    for beta in BETAS:
        for sx, sy in ((1, 1), (2, 2), (5, 5), (10, 10), (5, 2)):
            out.append(("parallel", "parallel", {"signal_steps": sx, "logit_steps": sy, "switch_fraction": 0.5}, 0.0, beta))
        for r, s in ((2, 1), (2, 2), (3, 2), (2, 5)):
            out.append(("alternating", "alternating", {"rounds": r, "signal_steps": s, "logit_steps": s}, 0.0, beta))
        for s in (2, 5):
            out.append(("nested", "nested", {"signal_steps": s, "logit_steps": 4, "refresh_every": 2}, 0.0, beta))
    return out


def net_config(geometry, separation, noise, beta=0.0, error=0.0, seed=0):
    return MixtureNetConfig(dim=DIM, geometry=geometry, separation=separation, seed=seed,
                            noise_levels=[noise], logit_weight=beta, error=error, tau=TAU, **GEOMETRIES[geometry])


def coupling(cfg: MixtureNetConfig, eta: float) -> Coupling:
    """The engine's Coupling of the exact networks (x0 predictions, no clipping), DDIM on both chains."""
    return Coupling(FrozenClassifier(BayesClassifier(cfg), cfg.classes, LOGIT_SCALE),
                    Denoiser(ExactSignalNet(cfg), PROCESS, "x0"), Denoiser(GaussianLogitNet(cfg), PROCESS, "x0"),
                    Chain(PROCESS, 5, "ddim", eta=eta), Chain(PROCESS, 5, "ddim", eta=0.0))


def readouts(method):
    return ("logits", "classifier") if method in COUPLED else (("logits",) if method == "logits_only" else ("classifier",))


def draw(mixture, noise, n, purpose_word, cell_seed):
    g = torch.Generator().manual_seed(stream_seed("data", cell_seed, purpose_word))
    s, y, _ = mixture.sample(n, g)
    gc = torch.Generator().manual_seed(stream_seed("corruption", cell_seed, purpose_word))
    d = s + noise * torch.randn(s.shape, generator=gc, dtype=torch.float64)
    return s.float(), y, d.float()


def run_cell(geometry, separation, noise, error=0.0, cell_seed=0, quick=False):
    """Every candidate on one cell: {key: row} with validation and per-seed test correctness."""
    mixture = make_mixture(DIM, GEOMETRIES[geometry]["classes"], geometry, separation, seed=0)
    n_val, n_test = (300, 500) if quick else (N_VAL, N_TEST)
    _, y_val, d_val = draw(mixture, noise, n_val, 1, cell_seed)
    s_test, y_test, d_test = draw(mixture, noise, n_test, 2, cell_seed)
    couplings = {}
    rows = []
    for family, method, options, eta, beta in candidates():
        key = (eta, beta)
        if key not in couplings:
            couplings[key] = coupling(net_config(geometry, separation, noise, beta, error), eta)
        c = couplings[key]
        seeds = SEEDS[:1] if method == "noisy" else SEEDS
        val = run_method(method, c, d_val, torch.Generator().manual_seed(stream_seed("sampling", 99, cell_seed)), **options)
        tests = [run_method(method, c, d_test, torch.Generator().manual_seed(stream_seed("sampling", s, cell_seed)), **options)
                 for s in seeds]
        calls = tests[0].calls
        for ro in readouts(method):
            per_seed = np.stack([(t.prediction(ro) == y_test).numpy().astype(np.float64) for t in tests])
            rows.append({
                "family": family, "method": method, "options": options, "eta": eta, "logit_weight": beta, "readout": ro,
                "calls": {k: calls[k] for k in ("signal", "logits", "classifier")},
                "cost": calls["signal"] + calls["logits"],
                "val": float((val.prediction(ro) == y_val).double().mean()),
                "test": float(per_seed.mean()), "_per_seed": per_seed,
                "mse": (None if tests[0].x_hat is None else float(((tests[0].x_hat.double() - s_test.double()) ** 2).mean())),
            })
    if not quick and error == 0.0:  # the section 9 check, outside the budgets: an ensemble of many exact samples
        c = couplings[(0.0, 0.0)]
        res = run_method("sequential_ensemble", c, d_test[:1000], torch.Generator().manual_seed(stream_seed("sampling", 0, cell_seed)),
                         **ASYMPTOTIC)
        asym = float((res.prediction("classifier") == y_test[:1000]).double().mean())
        bayes_1000 = float((mixture.class_log_posterior(d_test[:1000].double(), noise).argmax(1) == y_test[:1000]).double().mean())
        rows.append({"family": "asymptotic_ensemble", "method": "sequential_ensemble", "options": ASYMPTOTIC, "eta": 0.0,
                     "logit_weight": 0.0, "readout": "classifier", "cost": ASYMPTOTIC["k"] * ASYMPTOTIC["signal_steps"],
                     "test_1000": asym, "bayes_1000": bayes_1000, "reference": True})
    bayes_items = (mixture.class_log_posterior(d_test.double(), noise).argmax(1) == y_test).numpy().astype(np.float64)
    clean_items = (mixture.class_log_posterior(s_test.double()).argmax(1) == y_test).numpy().astype(np.float64)
    return mixture, rows, bayes_items, clean_items


def _pick(rows, pool, budget=math.inf):
    """The best row of `pool` (a predicate) on validation within `budget` evaluations (ties: the cheaper)."""
    fit = [r for r in rows if not r.get("reference") and pool(r) and r["cost"] <= budget]
    return max(fit, key=lambda r: (r["val"], -r["cost"])) if fit else None


def _public(r):
    return None if r is None else {k: v for k, v in r.items() if not k.startswith("_")}


def _compare(a, b, seed=0):
    """Paired test difference a - b over items (seeds averaged per item), with its interval and per-seed deltas."""
    delta, lo, hi = paired_bootstrap(a["_per_seed"], b["_per_seed"], n_boot=N_BOOT, seed=seed)
    sa, sb = a["_per_seed"], b["_per_seed"]
    per_seed = [float(sa[i % len(sa)].mean() - sb[i % len(sb)].mean()) for i in range(max(len(sa), len(sb)))]
    return {"delta": delta, "delta_ci95": [lo, hi], "per_seed_delta": per_seed}


def summarise_cell(geometry, separation, noise, mixture, rows, bayes_items, clean_items, error=0.0, bayes_mc=None):
    is_coupled = lambda r: r["method"] in COUPLED  # noqa: E731
    is_base = lambda r: r["method"] in BASELINES  # noqa: E731
    noisy = next(r for r in rows if r["method"] == "noisy")
    rows = list(rows)
    bayes = float(bayes_items.mean())
    gap = lambda acc: (acc - noisy["test"]) / (bayes - noisy["test"]) if bayes != noisy["test"] else math.nan  # noqa: E731
    coupled = _pick(rows, is_coupled)
    base = _pick(rows, is_base, coupled["cost"])
    headline = {"coupled": _public(coupled), "baseline": _public(base), **_compare(coupled, base)}
    budgets = []
    for b in BUDGETS:
        c, p = _pick(rows, is_coupled, b), _pick(rows, is_base, b)
        entry = {"budget": b, "coupled": _public(c), "baseline": _public(p)}
        if c is not None and p is not None:
            entry.update(_compare(c, p))
        budgets.append(entry)
    families = {}
    for fam in dict.fromkeys(r["family"] for r in rows if not r.get("reference")):
        best = _pick(rows, lambda r, fam=fam: r["family"] == fam)
        families[fam] = {**_public(best), "gap_closed": gap(best["test"])}
    bayes_row = {"family": "bayes", "test": bayes, "_per_seed": bayes_items[None]}
    return {
        "geometry": geometry, "separation": separation, "noise": noise, "error": error, "classes": mixture.num_classes,
        "clean_bayes": float(clean_items.mean()), "bayes": bayes, "bayes_mc": bayes_mc, "noisy": noisy["test"],
        "headline": headline, "budgets": budgets, "families": families,
        "coupled_vs_bayes": _compare(coupled, bayes_row), "baseline_vs_bayes": _compare(base, bayes_row),
        "asymptotic_ensemble": next((_public(r) for r in rows if r.get("reference")), None),
        "candidates": [_public(r) for r in rows if not r.get("reference")],
    }


def measured_error_rms(geometry, separation, error, n=4000):
    """The RMS per coordinate of the added error over forward-process states x_t = a s + sigma eps (s from the
    mixture, t uniform over the training steps): the error's measured size."""
    cfg = net_config(geometry, separation, 1.0, error=error)
    net = ExactSignalNet(cfg)
    g = torch.Generator().manual_seed(stream_seed("data", 7, 0))
    s, _, _ = cfg.mixture().sample(n, g)
    t = torch.randint(0, PROCESS.num_train_steps, (n,), generator=g).double()
    a, _, sig = PROCESS.coefficients(t)
    x_t = a[:, None] * s + sig[:, None] * torch.randn(s.shape, generator=g, dtype=torch.float64)
    return float(error * net.error_field(x_t, PROCESS.network_time(t)).pow(2).mean().sqrt())


def plot(results, path_map, path_curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results["cells"]]
    geos = list(GEOMETRIES)
    fig, axes = plt.subplots(len(geos), 3, figsize=(15, 4.6 * len(geos)), squeeze=False)
    for gi, geo in enumerate(geos):
        seps = SEPARATIONS[geo]
        get = lambda sep, nz: next(c for c in cells if c["geometry"] == geo and c["separation"] == sep and c["noise"] == nz)  # noqa: E731
        bay = np.array([[get(s, n)["bayes"] for n in NOISES] for s in seps])
        dl = np.array([[get(s, n)["headline"]["delta"] for n in NOISES] for s in seps])
        gap_c = np.array([[_gap(get(s, n), get(s, n)["headline"]["coupled"]) for n in NOISES] for s in seps])
        best_b = np.array([[_gap(get(s, n), get(s, n)["headline"]["baseline"]) for n in NOISES] for s in seps])
        span = max(0.02, abs(dl).max())
        panels = [(bay, "Bayes limit: accuracy of argmax p(k|d)", "viridis", (None, None)),
                  (dl, "best coupled - best baseline of equal cost\n(test, paired; * : 95% interval excludes 0)", "RdBu",
                   (-span, span)),
                  (best_b, "gap to the Bayes limit closed, (acc - acc f(d)) / (Bayes - acc f(d))\n"
                   "the headline's baseline B (colour) / coupled pick C", "magma", (0.0, 1.0))]
        for pi, (m, title, cmap, (lo, hi)) in enumerate(panels):
            ax = axes[gi, pi]
            im = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, origin="lower", aspect="auto")
            ax.set_xticks(range(len(NOISES)), [f"{n:g}" for n in NOISES])
            ax.set_yticks(range(len(seps)), [f"{s:g}" for s in seps])
            ax.set_xlabel("noise std sigma (d = s + sigma n)")
            ax.set_ylabel(f"{geo}: class separation")
            ax.set_title(f"{geo} (K={GEOMETRIES[geo]['classes']}): {title}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
            for i, s in enumerate(seps):
                for j, n in enumerate(NOISES):
                    c = get(s, n)
                    if pi == 0:
                        txt = f"{c['bayes']:.3f}\nf(d) {c['noisy']:.3f}\nclean {c['clean_bayes']:.3f}"
                    elif pi == 1:
                        h = c["headline"]
                        star = "*" if h["delta_ci95"][0] > 0 or h["delta_ci95"][1] < 0 else ""
                        txt = (f"{h['delta']:+.3f}{star}\n{h['coupled']['family'][:5]} {h['coupled']['cost']}ev\n"
                               f"vs {h['baseline']['family'][:8]} {h['baseline']['cost']}ev")
                    else:
                        txt = f"B {best_b[i, j]:.2f}\nC {gap_c[i, j]:.2f}"
                    light = pi == 1 or im.norm(m[i, j]) > (0.6 if pi == 2 else 0.75)
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="k" if light else "w")
    fig.suptitle("The Bayes limit map: exact denoisers on class-conditional Gaussian mixtures (D=8), 3 seeds, "
                 f"{results['settings']['n_test']} test items per cell", fontsize=11)
    fig.tight_layout()
    fig.savefig(path_map, dpi=110)
    plt.close(fig)

    # accuracy against evaluations for two cells, and the error sweep
    picked = (("means", 2.0, 1.0), ("means", 1.0, 2.0), ("sandwich", 1.0, 1.0))  # typical; coupling's win; the gap no one closes
    show = [next(c for c in cells if (c["geometry"], c["separation"], c["noise"]) == p) for p in picked]
    fig, grid_axes = plt.subplots(2, 2, figsize=(14, 10))
    axes = grid_axes.reshape(1, -1)
    colours = {"sequential": "C0", "sequential_ensemble": "C1", "one_step": "C2", "purification": "C3",
               "logits_only": "C4", "parallel": "C5", "alternating": "C6", "nested": "C9", "noisy": "k"}
    for ax, c in zip(axes[0], show):
        for fam, col in colours.items():
            pts = [r for r in c["candidates"] if r["family"] == fam]  # both readouts of a coupled method: validation picks
            if not pts:
                continue
            # for each cost, the configuration validation picks; the line is the running best within a budget
            xs = sorted({max(r["cost"], 0.5) for r in pts})
            best = [max((r for r in pts if max(r["cost"], 0.5) <= x), key=lambda r: r["val"])["test"] for x in xs]
            mark = "s-" if fam in COUPLED else "o--"
            ax.plot(xs, best, mark, color=col, label=fam, ms=4)
        ax.axhline(c["bayes"], color="k", lw=2, label="Bayes limit argmax p(k|d), same items")
        if c.get("asymptotic_ensemble"):
            a = c["asymptotic_ensemble"]
            ax.plot([a["cost"]], [c["bayes"] + a["test_1000"] - a["bayes_1000"]], "*", color="C1", ms=10,
                    label="ensemble k=32 x 50 steps (minus Bayes, shifted)")
        ax.set_xscale("log")
        ax.set_ylim(c["noisy"] - 0.03, max(c["bayes"], c["bayes_mc"]["expected_max_posterior"]) + 0.03)
        ax.set_xlabel("network evaluations per item (D_x + D_y); noisy at 0.5")
        ax.set_ylabel("test accuracy (validation pick within the budget)")
        ax.set_title(f"{c['geometry']}, separation {c['separation']:g}, sigma {c['noise']:g} (clean Bayes {c['clean_bayes']:.3f})",
                     fontsize=9)
        if c is show[0]:
            ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax = axes[0, -1]
    for key, group in results["error_sweep"].items():
        xs = [e["error_rms"] for e in group]
        ys = [e["headline"]["delta"] for e in group]
        lo = [e["headline"]["delta"] - e["headline"]["delta_ci95"][0] for e in group]
        hi = [e["headline"]["delta_ci95"][1] - e["headline"]["delta"] for e in group]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=key)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("signal denoiser's added error, measured RMS per coordinate")
    ax.set_ylabel("best coupled - best baseline of equal cost (test)")
    ax.set_title("imperfect denoisers: does coupling gain?", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_curves, dpi=110)
    plt.close(fig)


def _gap(cell, row):
    """The fraction of the gap from f(d) to the Bayes limit (on the same test items) that `row` closes."""
    return (row["test"] - cell["noisy"]) / (cell["bayes"] - cell["noisy"]) if cell["bayes"] != cell["noisy"] else math.nan


def _sig(h):
    lo, hi = h["delta_ci95"]
    return "win" if lo > 0 else ("loss" if hi < 0 else "tie")


def _name(r):
    o = r["options"]
    short = {"signal_steps": "Sx", "logit_steps": "Sy", "rounds": "R", "k": "k", "noise_fraction": "t", "refresh_every": "every"}
    knobs = " ".join(f"{short.get(k, k)}={v}" for k, v in o.items() if k != "switch_fraction")
    extra = (f" w={r['logit_weight']:g}" if r["method"] in COUPLED else "") + (" eta=1" if r["eta"] else "")
    ro = "" if r["method"] not in COUPLED else (" [y]" if r["readout"] == "logits" else " [f]")
    return f"{r['family']} {knobs}{extra}{ro}".strip()


def tables(results) -> str:
    """The markdown tables of docs/results.md, from a results JSON."""
    lines = ["| geometry | sep | sigma | clean | Bayes (MC) | f(d) | best baseline (val pick, cost <= coupled's) | "
             "best coupled (val pick) | delta [95%] | gap closed B / C |", "|" + "---|" * 10]
    for c in results["cells"]:
        h = c["headline"]
        b, k = h["baseline"], h["coupled"]
        lines.append(f"| {c['geometry']} | {c['separation']:g} | {c['noise']:g} | {c['clean_bayes']:.3f} | "
                     f"{c['bayes_mc']['expected_max_posterior']:.3f} | {c['noisy']:.3f} | {_name(b)} ({b['cost']} ev) {b['test']:.3f} | "
                     f"{_name(k)} ({k['cost']} ev) {k['test']:.3f} | {h['delta']:+.3f} [{h['delta_ci95'][0]:+.3f}, {h['delta_ci95'][1]:+.3f}] | "
                     f"{_gap(c, b):.2f} / {_gap(c, k):.2f} |")
    out = ["Headline per cell (test, 3 seeds, paired bootstrap over items; Bayes (MC) = E[max_k p(k|d)] over 200,000 draws; "
           "gap closed = (acc - acc f(d)) / (Bayes on the same items - acc f(d)))", "", *lines, ""]
    fams = [f for f in results["cells"][0]["families"] if f != "noisy"]
    out += ["Fraction of the gap to the Bayes limit each method family closes (its best configuration on validation, any "
            "cost up to 80 evaluations): median, min and max over the cells", "",
            "| family | median gap closed | min | max | cells within 0.01 of Bayes |", "|---|---|---|---|---|"]
    for f in fams:
        g = np.array([c["families"][f]["gap_closed"] for c in results["cells"]])
        near = sum(c["bayes"] - c["families"][f]["test"] <= 0.01 for c in results["cells"])
        out.append(f"| {f} | {np.median(g):.2f} | {g.min():.2f} | {g.max():.2f} | {near} / {len(g)} |")
    asym = [c["asymptotic_ensemble"] for c in results["cells"] if c.get("asymptotic_ensemble")]
    if asym:
        d = np.array([a["test_1000"] - a["bayes_1000"] for a in asym])
        out += ["", f"Section 9's asymptotic claim: an ensemble of k=32 exact 50-step DDIM samples (1,000 test items, one seed) "
                f"minus the Bayes limit on the same items: mean {d.mean():+.3f}, min {d.min():+.3f}, max {d.max():+.3f} over "
                f"{len(d)} cells"]
    out += ["", "Per budget (network evaluations D_x + D_y per item): best coupled vs best baseline, both validation picks "
            "within the budget; cells where coupling wins / ties / loses (95% paired interval), mean delta", "",
            "| budget | wins | ties | losses | mean delta | largest win |", "|---|---|---|---|---|---|"]
    for i, b in enumerate(results["settings"]["budgets"]):
        es = [c["budgets"][i] for c in results["cells"] if "delta" in c["budgets"][i]]
        if not es:
            continue
        sig = [_sig(e) for e in es]
        best = max(es, key=lambda e: e["delta"])
        cell = next(c for c in results["cells"] if c["budgets"][i] is best)
        out.append(f"| {b} | {sig.count('win')} | {sig.count('tie')} | {sig.count('loss')} | {np.mean([e['delta'] for e in es]):+.3f} | "
                   f"{best['delta']:+.3f} ({cell['geometry']} sep {cell['separation']:g} sigma {cell['noise']:g}: "
                   f"{_name(best['coupled'])} vs {_name(best['baseline'])}) |")
    if results.get("error_sweep"):
        out += ["", "Signal denoiser with a controlled error (measured RMS per coordinate); headline as above", "",
                "| cell | error RMS | Bayes | best baseline | best coupled | delta [95%] |", "|---|---|---|---|---|---|"]
        for key, group in results["error_sweep"].items():
            for c in group:
                h = c["headline"]
                out.append(f"| {key} | {c['error_rms']:.3f} | {c['bayes']:.3f} | {_name(h['baseline'])} ({h['baseline']['cost']} ev) "
                           f"{h['baseline']['test']:.3f} | {_name(h['coupled'])} ({h['coupled']['cost']} ev) {h['coupled']['test']:.3f} | "
                           f"{h['delta']:+.3f} [{h['delta_ci95'][0]:+.3f}, {h['delta_ci95'][1]:+.3f}] |")
    return "\n".join(out)


def _rounded(x):
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def dump(results) -> str:
    """The results as compact JSON (floats to 5 decimals; one line per cell)."""
    head = {k: v for k, v in results.items() if k not in ("cells", "error_sweep")}
    cells = ",\n".join(json.dumps(_rounded(c), default=float) for c in results["cells"])
    sweep = json.dumps(_rounded(results["error_sweep"]), default=float)
    return json.dumps(_rounded(head), default=float)[:-1] + ',\n"cells": [\n' + cells + '],\n"error_sweep": ' + sweep + "}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one cell, small splits (a smoke run; writes to /tmp)")
    ap.add_argument("--cell", default="means,2.0,1.0", help="the --quick cell: geometry,separation,noise")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNGs from the JSON in --out")
    ap.add_argument("--tables", action="store_true", help="print the markdown tables docs/results.md quotes, from the JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path("/tmp/bayes_limit_quick") if args.quick else Path(args.out)
    if args.tables:
        print(tables(json.loads((out / "bayes_limit.json").read_text())))
        return
    if args.plot_only:
        plot(json.loads((out / "bayes_limit.json").read_text()), out / "bayes_limit.png", out / "bayes_limit_curves.png")
        return
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    q = args.cell.split(",")
    grid = [(q[0], float(q[1]), float(q[2]))] if args.quick else [(g, s, n) for g in GEOMETRIES for s in SEPARATIONS[g] for n in NOISES]
    cells = []
    for i, (geo, sep, nz) in enumerate(grid):
        t0 = time.time()
        mixture, rows, bayes_items, clean_items = run_cell(geo, sep, nz, cell_seed=i, quick=args.quick)
        mc = bayes_accuracy(mixture, nz, 20000 if args.quick else 200000, torch.Generator().manual_seed(stream_seed("data", 5, i)))
        cell = summarise_cell(geo, sep, nz, mixture, rows, bayes_items, clean_items,
                              bayes_mc={"expected_max_posterior": mc[0], "se": mc[1], "accuracy": mc[2]})
        cells.append(cell)
        h = cell["headline"]
        print(f"{geo:8s} sep {sep:g} sigma {nz:g}: bayes {cell['bayes']:.3f} f(d) {cell['noisy']:.3f} | coupled "
              f"{h['coupled']['family']} {h['coupled']['test']:.3f} @{h['coupled']['cost']} vs {h['baseline']['family']} "
              f"{h['baseline']['test']:.3f} @{h['baseline']['cost']}: {h['delta']:+.3f} [{h['delta_ci95'][0]:+.3f}, "
              f"{h['delta_ci95'][1]:+.3f}] ({time.time() - t0:.0f} s)", flush=True)
    sweep = {}
    for j, (geo, sep, nz) in enumerate([] if args.quick else ERROR_CELLS):
        key = f"{geo}, sep {sep:g}, sigma {nz:g}"
        sweep[key] = []
        for err in ERRORS:
            mixture, rows, bayes_items, clean_items = run_cell(geo, sep, nz, error=err, cell_seed=100 + j)
            cell = summarise_cell(geo, sep, nz, mixture, rows, bayes_items, clean_items, error=err)
            cell["error_rms"] = measured_error_rms(geo, sep, err)
            cell.pop("candidates")
            sweep[key].append(cell)
            h = cell["headline"]
            print(f"error {err:g} (rms {cell['error_rms']:.3f}) {key}: coupled {h['coupled']['family']} {h['coupled']['test']:.3f} "
                  f"vs {h['baseline']['family']} {h['baseline']['test']:.3f}: {h['delta']:+.3f} [{h['delta_ci95'][0]:+.3f}, "
                  f"{h['delta_ci95'][1]:+.3f}]", flush=True)
    results = {
        "schema": "coupled-bayes-limit/1",
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bayes_limit.py",
        "settings": {"dim": DIM, "geometries": GEOMETRIES, "separations": SEPARATIONS, "noises": NOISES, "tau": TAU,
                     "logit_scale": LOGIT_SCALE, "logit_weights": BETAS, "budgets": BUDGETS, "errors": ERRORS,
                     "n_val": 300 if args.quick else N_VAL, "n_test": 500 if args.quick else N_TEST, "seeds": SEEDS,
                     "process": PROCESS.to_dict(), "sampler": "ddim (eta 0 unless a candidate's eta says 1)",
                     "cost": "network evaluations per item: D_x + D_y calls (f calls listed beside)",
                     "seconds": round(time.time() - started, 1)},
        "cells": cells, "error_sweep": sweep,
    }
    (out / "bayes_limit.json").write_text(dump(results))
    if not args.quick:
        plot(results, out / "bayes_limit.png", out / "bayes_limit_curves.png")
    print(f"wrote {out}/bayes_limit.json ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
