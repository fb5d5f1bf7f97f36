"""The Gaussian laboratory's designs on MNIST (issue 18, item 3): does a design made for a circulant Gaussian
with the digits' power spectrum help the trained prior (checkpoints/mnist_prior) on real digits?

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py spectrum   # part a, ~1 min
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py error      # the prior's error, ~30 s
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py grids --steps 5 --samples 1000 --truncated  # part b
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py grids --steps 3 10 --samples 300
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py grids --steps 20 --samples 200
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py guidance --sweep --split val --seeds 0 --steps S
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py guidance --steps S   # part c, S = 5, 10
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py tables     # the tables docs/results.md quotes

Each grids or guidance run takes 2 to 15 minutes on one core. Results (JSON + PNG) go to docs/results/designs/.
The spectrum is the training digits' (the bundle's split); the designs are not tuned: they come from the closed
form alone, or for `designed_error` from the prior's denoising error measured on the validation digits. The only
tuned quantity is the baseline's constant guidance weight (on validation digits).

- error: E||x0_hat(x_t) - x0||^2 of the prior per noise level (`coupled.analysis.denoising_error`) and the
  Gaussian with that MMSE curve (`effective_spectrum`), which `grids` designs `designed_error` for.

- spectrum: lam_k = E|fft2(x, 'ortho')_k|^2 of the 3,500 training digits in [-1, 1] (`coupled.analysis.
  power_spectrum_2d`, uncentred: the VP process diffuses raw pixels), and how circulant their second moment is
  (`circulant_report`).
- grids: DDIM (eta 0) with the prior on the designed grids (`design_grid` on lam, on the centred spectrum with
  the mean image, and on the error's Gaussian, for the prior's cosine process; `--truncated` adds the cosine grid
  started where designed_error starts) and on the uniform trailing grids of the cosine and the linear-beta schedules (the linear grid's alpha_bar
  mapped to the nearest training step of the prior's cosine process in log-SNR), at 3, 5, 10 and 20 steps;
  every grid starts from the same initial noise (paired). Quality: the Frechet distance between the frozen
  classifier's penultimate features (the 128 ReLU units before its last layer) of the samples and of the
  1,000 test digits. Interval: a paired bootstrap over samples (the same resampled indices for both grids and
  for the real digits), the difference averaged over seeds.
- guidance: DPS, PiGDM and DDNM(+) with the anchors' default weights against weights designed by
  `design_guidance` on lam and each operator's closed-form gains (see `_operator`), for the averaged W2 to the
  posterior ("designed") and for the closed-form squared error to the clean digit, PSNR's ("designed_mse"), at
  the same grid (equal network evaluations), observation noise std 0.05, 3 sampling seeds; PSNR and the
  classifier's accuracy on x_hat,
  paired bootstrap intervals over test digits (seed outcomes averaged per digit). The digits are class-balanced
  (`_balanced`: the splits are stored sorted by label). `guidance --sweep --split val --seeds 0` first tunes a
  constant weight per cell on validation digits (tune_val_<S>steps.json); the test run then compares both designs
  with both the anchors' defaults and that tuned constant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from coupled.analysis import (
    circulant_report, denoising_error, design_grid, design_guidance, effective_spectrum, gaussian_mmse, grid_alpha_bar,
    mse_to_truth, power_spectrum_2d, sampler_transfer, w2_to_data, w2_to_posterior, Transfer,
)
from coupled.atomic import atomic_write, atomic_write_json
from coupled.bundle import NullObservation, load_net, wrap_denoiser
from coupled.domains.registry import get_domain
from coupled.engine import VPProcess, sample
from coupled.seeds import sequence, stream_seed

OUT = Path("docs/results/designs")
BUNDLE, PRIOR = Path("checkpoints/mnist"), Path("checkpoints/mnist_prior")
STEPS = (3, 5, 10, 20)


def _splits():
    cfg = json.loads((BUNDLE / "config.json").read_text())
    return get_domain("image").load_splits(cfg)


def _spectrum(train):
    lam = power_spectrum_2d(train.signals)
    return lam, torch.ones_like(lam)


def _spectrum_with_mean(train):
    """(C's spectrum, |fft2(m)|^2): the prior N(m, C) with the digits' mean image m and centred spectrum."""
    mean = train.signals.double().mean(0)[0]
    return power_spectrum_2d(train.signals, centred=True), torch.fft.fft2(mean, norm="ortho").abs().flatten() ** 2


def _save_png(path, fig):
    import matplotlib

    matplotlib.use("Agg")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


# ------------------------------------------------------------------------------------------------ part a


def cmd_spectrum(a):
    import matplotlib.pyplot as plt

    splits = _splits()
    train = splits["train"].signals
    lam, counts = _spectrum(splits["train"])
    rep = {"raw": circulant_report(train), "centred": circulant_report(train, centred=True)}
    # what the mismatch costs in the laboratory's own terms: the W2 scale of the sampler's closed form
    process = VPProcess(1000, "cosine")
    w2_cos5 = float(w2_to_data(lam, sampler_transfer(lam, grid_alpha_bar(process, process.grid(5))), counts))
    w2_prior = float(w2_to_data(lam, Transfer(0 * lam, torch.ones_like(lam)), counts))
    # radial profile for the figure
    h = w = 28
    ky = torch.fft.fftfreq(h) * h
    kx = torch.fft.fftfreq(w) * w
    radius = (ky[:, None] ** 2 + kx[None, :] ** 2).sqrt().flatten()
    lam_c = power_spectrum_2d(train, centred=True)
    out = {
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py spectrum",
        "images": int(train.shape[0]), "size": [h, w], "units": "[-1, 1] pixels",
        "lam": lam.tolist(), "lam_centred": lam_c.tolist(),
        "dc_fraction": float(lam[0] / lam.sum()),
        "energy_below_radius_4": float(lam[radius < 4].sum() / lam.sum()),
        "circulant": rep,
        "w2_uniform_cosine_5_steps_closed_form": w2_cos5, "w2_prior_noise_to_data_closed_form": w2_prior,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "spectrum.json", out)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    img = torch.fft.fftshift(lam.reshape(h, w)).log10()
    im = axes[0].imshow(img, cmap="viridis")
    axes[0].set_title("log10 power spectrum (fftshift)")
    fig.colorbar(im, ax=axes[0])
    axes[1].loglog(1 + radius, lam, ".", ms=3, label="raw (uncentred)")
    axes[1].loglog(1 + radius, lam_c, ".", ms=3, alpha=0.6, label="centred")
    axes[1].set_xlabel("1 + |k|")
    axes[1].set_ylabel("lam_k")
    axes[1].legend()
    axes[1].set_title("per bin")
    Mf = __import__("coupled.analysis", fromlist=["fourier_moment"]).fourier_moment(train)
    axes[2].imshow(Mf.abs().log10().clamp(min=-4), cmap="magma")
    axes[2].set_title("log10 |F M F^H| (784 x 784)")
    fig.suptitle(f"MNIST training digits: {rep['raw']['offdiagonal_energy']:.0%} of the second moment's energy is off "
                 "the Fourier diagonal")
    _save_png(OUT / "spectrum.png", fig)
    print(json.dumps({k: v for k, v in out.items() if not k.startswith("lam")}, indent=1))


# ------------------------------------------------------------------------------------------------ shared


def _prior():
    net, meta = load_net(PRIOR, "prior", "signal")
    den = wrap_denoiser("signal", NullObservation(net), meta)
    return den, den.process


def _classifier():
    net, _ = load_net(BUNDLE, "classifier", "classifier")
    net.eval()

    def features(x):
        with torch.no_grad():
            h = net.head[:-1](net.features(x))
        return h

    def logits(x):
        with torch.no_grad():
            return net(x)

    return features, logits


def _frechet_stats(f):
    f = f.double()
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def frechet(f1, f2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [n, D] (the FID formula)."""
    m1, s1 = _frechet_stats(f1)
    m2, s2 = _frechet_stats(f2)
    ev = np.linalg.eigvals((s1 @ s2).numpy())
    tr = float(np.sqrt(np.clip(ev.real, 0, None)).sum())
    return float(((m1 - m2) ** 2).sum() + s1.trace() + s2.trace() - 2 * tr)


def _linear_grid_on(process: VPProcess, steps: int) -> torch.Tensor:
    """The linear-beta schedule's uniform trailing grid, as the nearest training steps of `process` in log-SNR."""
    lin = VPProcess(process.num_train_steps, "linear")
    ab = grid_alpha_bar(lin, lin.grid(steps))[:-1].clamp(1e-12, 1 - 1e-12)
    ab_p = process.alpha_bar.double().clamp(1e-12, 1 - 1e-12)
    ls, lp = (ab / (1 - ab)).log(), (ab_p / (1 - ab_p)).log()
    times = [int((lp - v).abs().argmin()) for v in ls]
    for i in range(1, len(times)):
        times[i] = min(times[i], times[i - 1] - 1)
    return torch.tensor([*times, -1], dtype=torch.float32)


def _bootstrap(diff_fn, n, reps, seed):
    rng = np.random.default_rng(sequence("bootstrap", seed))
    vals = [diff_fn(rng.integers(0, n, n)) for _ in range(reps)]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


# ------------------------------------------------------------------------------------------------ part b


DESIGNS = ("designed", "designed_mean", "designed_error")  # the three designed grids, by the model they design for
ERROR_TIMES = 40  # noise levels at which the prior's denoising error is measured (uniform over the training steps)


def _prior_error(den, process, val):
    """The prior's measured denoising error per noise level on the validation digits and the Gaussian fitted to it
    (`effective_spectrum`), from docs/results/designs/prior_error.json when measured before (half a minute)."""
    path = OUT / "prior_error.json"
    if path.exists():
        e = json.loads(path.read_text())
        return torch.tensor(e["fit"]["lam"], dtype=torch.float64), torch.tensor(e["fit"]["counts"], dtype=torch.float64)
    m = measure_and_fit(den, process, val.signals, 0)
    err, ab = torch.tensor(m["error"], dtype=torch.float64), torch.tensor(m["alpha_bar"], dtype=torch.float64)
    lam, counts = m.pop("lam"), m.pop("counts")
    fit = gaussian_mmse(lam, counts, ab)
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py error",
        "what": "E||x0_hat(x_t) - x0||^2 of the prior on the 500 validation digits (one noise draw each), per time t",
        **m,
        "fit": {"lam": lam.tolist(), "counts": counts.tolist(), "relative_rms": float(((fit / err - 1) ** 2).mean().sqrt()),
                "relative_max": float((fit / err - 1).abs().max()), "coordinates": float(counts.sum())}})
    return lam, counts


def measure_and_fit(den, process, x0, stream: int, **conditioning) -> dict:
    """A denoiser's error at ERROR_TIMES training steps (t = 0, the clean end, left out) on the signals `x0`, noise
    from the sampling stream (18, `stream`), and the Gaussian fitted to it: {t, alpha_bar, error, seconds} as
    lists, and lam, counts as tensors (`_prior_error` and mnist_designed_grids.py's `conditional_grid`)."""
    times = torch.unique(torch.linspace(0, process.num_train_steps - 1, ERROR_TIMES).round().long())[1:]
    t0 = time.time()
    err = denoising_error(den, process, x0, times.tolist(),
                          generator=torch.Generator().manual_seed(stream_seed("sampling", 18, stream)), **conditioning)
    ab = process.alpha_bar.double()[times]
    lam, counts = effective_spectrum(ab, err, int(x0[0].numel()))
    return {"t": times.tolist(), "alpha_bar": ab.tolist(), "error": err.tolist(), "seconds": round(time.time() - t0, 1),
            "lam": lam, "counts": counts}


def _grid_designs(steps, lam, counts, lam_c, mean_power, process, lam_e, counts_e):
    """The designed grids at `steps`, from docs/results/designs/grid_designs.json when computed before (the
    design is deterministic: L-BFGS and coordinate descent on fixed data; minutes per step count on one core):
    `designed` for N(0, circ M), `designed_mean` for N(m, C) and `designed_error` for the Gaussian whose MMSE
    per noise level is the prior's measured error (`_prior_error`)."""
    path = OUT / "grid_designs.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    entry = cache.get(str(steps), {})
    make = {"designed": lambda: design_grid(lam, counts, process, steps),
            "designed_mean": lambda: design_grid(lam_c, counts, process, steps, mean_power=mean_power),
            "designed_error": lambda: design_grid(lam_e, counts_e, process, steps)}
    missing = [k for k in DESIGNS if k not in entry]
    if missing:
        for k in missing:
            t0 = time.time()
            entry[k] = make[k]()[:-1].int().tolist()
            entry.setdefault("seconds_per_design", {})[k] = round(time.time() - t0, 1)
        cache[str(steps)] = entry
        OUT.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, dict(sorted(cache.items(), key=lambda kv: int(kv[0]))))
    return {k: torch.tensor([*entry[k], -1], dtype=torch.float32) for k in DESIGNS}


def cmd_error(a):
    """The prior's denoising error per noise level against the Wiener filters of the two spectral models, and the
    Gaussian fitted to it (prior_error.json, prior_error.png)."""
    splits = _splits()
    den, process = _prior()
    lam_e, counts_e = _prior_error(den, process, splits["val"])
    e = json.loads((OUT / "prior_error.json").read_text())
    lam, counts = _spectrum(splits["train"])
    lam_c, _ = _spectrum_with_mean(splits["train"])
    ab = torch.tensor(e["alpha_bar"], dtype=torch.float64)
    curves = {"prior, measured (500 val digits)": torch.tensor(e["error"]),
              "Wiener filter of N(0, circ M)": gaussian_mmse(lam, counts, ab),
              "Wiener filter of N(m, C) (C's spectrum)": gaussian_mmse(lam_c, counts, ab),
              "fitted Gaussian (designed_error's model)": gaussian_mmse(lam_e, counts_e, ab)}
    print(f"fit: relative rms {e['fit']['relative_rms']:.3f}, max {e['fit']['relative_max']:.3f}, "
          f"{e['fit']['coordinates']:.0f} coordinates; measured in {e['seconds']} s")
    for i in range(0, len(e["t"]), 4):
        print(f"t {e['t'][i]:4d}: " + ", ".join(f"{k.split(' (')[0]} {float(v[i]):.1f}" for k, v in curves.items()))
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (name, v), mk in zip(curves.items(), ("o", "-", "--", ":")):
        axes[0].plot(e["t"], v.numpy(), mk, label=name, ms=3)
    axes[0].set(xlabel="training step t (cosine process)", ylabel="E||x0_hat - x0||^2 (pixels, [-1, 1])", yscale="log",
                title="denoising error per noise level")
    axes[0].legend(fontsize=8)
    big = counts_e > 0.05
    axes[1].scatter(lam_e[big].numpy(), counts_e[big].numpy())
    axes[1].set(xscale="log", yscale="log", xlabel="variance", ylabel="coordinates", title="the fitted Gaussian's spectrum (weights > 0.05)")
    _save_png(OUT / "prior_error.png", fig)


def cmd_grids(a):
    torch.set_num_threads(1)
    splits = _splits()
    lam, counts = _spectrum(splits["train"])
    lam_c, mean_power = _spectrum_with_mean(splits["train"])
    den, process = _prior()
    lam_e, counts_e = _prior_error(den, process, splits["val"])
    features, _ = _classifier()
    real = features(splits["test"].signals)
    path = OUT / "grids.json"
    out = json.loads(path.read_text()) if path.exists() else {
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py grids --steps S --samples N",
        "seeds": a.seeds, "sampler": "ddim eta 0", "prior": str(PRIOR), "reference": "1000 test digits",
        "features": "frozen classifier's penultimate layer (128 ReLU units)",
        "fd_val_vs_test_digits": frechet(features(splits["val"].signals), real),
        "bootstrap": f"{a.bootstrap} paired resamples of the sample and reference indices", "steps": {}}
    for s in a.steps:
        grids = {"cosine": process.grid(s), "linear": _linear_grid_on(process, s),
                 **_grid_designs(s, lam, counts, lam_c, mean_power, process, lam_e, counts_e)}
        if a.truncated:  # the cosine grid started where designed_error starts: is the gain its start or its spacing?
            grids["cosine_truncated"] = process.grid(s, start=(int(grids["designed_error"][0]) + 1) / process.num_train_steps)
        w2 = {k: float(w2_to_data(lam, sampler_transfer(lam, grid_alpha_bar(process, g)), counts)) for k, g in grids.items()}
        w2m = {k: float(w2_to_data(lam_c, sampler_transfer(lam_c, grid_alpha_bar(process, g)), counts, mean_power))
               for k, g in grids.items()}
        w2e = {k: float(w2_to_data(lam_e, sampler_transfer(lam_e, grid_alpha_bar(process, g)), counts_e))
               for k, g in grids.items()}
        print(f"{s} steps: grids {({k: g[:-1].int().tolist() for k, g in grids.items()})}; closed-form W2 {w2} / {w2m} / "
              f"{w2e}", flush=True)
        feats, cells, examples = {}, {}, {}
        bar = tqdm(total=s * len(grids) * len(a.seeds) * a.samples, desc=f"{s} steps", unit="img", mininterval=30)
        started = time.time()
        for seed in a.seeds:
            gens = [torch.Generator().manual_seed(stream_seed("sampling", seed, i)) for i in range(a.samples)]
            noise = process.prior((a.samples, 1, 28, 28), gens)
            for name, grid in grids.items():
                outs = []
                for b in range(0, a.samples, a.batch):
                    outs.append(sample(den, process, grid, noise[b:b + a.batch].clone(), sampler="ddim", eta=0.0))
                    bar.update(s * outs[-1].shape[0])
                x = torch.cat(outs).clamp(-1, 1)
                feats[(seed, name)] = features(x)
                cells[(seed, name)] = frechet(feats[(seed, name)], real)
                if seed == a.seeds[0]:
                    examples[name] = x[:10]
        bar.close()
        per = {name: [cells[(seed, name)] for seed in a.seeds] for name in grids}
        mean = {k: float(np.mean(v)) for k, v in per.items()}
        best = min(("cosine", "linear"), key=lambda k: mean[k])
        n = min(a.samples, real.shape[0])
        ref = real[torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(
            stream_seed("bootstrap", 18, s)))[:n]] if n < real.shape[0] else real

        def diff(idx, name):
            return float(np.mean([frechet(feats[(seed, name)][idx], ref[idx]) - frechet(feats[(seed, best)][idx], ref[idx])
                                  for seed in a.seeds]))

        entry = {"samples_per_cell": a.samples, "seeds": a.seeds, "sampling_seconds": round(time.time() - started, 1),
                 "fd": per, "fd_mean": mean, "best_heuristic": best, "closed_form_w2": w2, "closed_form_w2_mean_model": w2m,
                 "closed_form_w2_error_model": w2e, "grids": {k: g[:-1].int().tolist() for k, g in grids.items()}}
        if a.truncated:
            d = [a_ - b_ for a_, b_ in zip(per["designed_error"], per["cosine_truncated"])]
            entry["designed_error_vs_truncated"] = {
                "minus": mean["designed_error"] - mean["cosine_truncated"], "per_seed_difference": d,
                "seed_t_interval95": _t_interval(d),
                "bootstrap_interval95": _bootstrap(lambda idx: diff(idx, "designed_error") - diff(idx, "cosine_truncated"),
                                                   n, a.bootstrap, 18) if a.bootstrap else None}
        for name in (*DESIGNS, "cosine_truncated") if a.truncated else DESIGNS:
            d = [a_ - b_ for a_, b_ in zip(per[name], per[best])]
            entry[name] = {"minus_best": mean[name] - mean[best], "per_seed_difference": d,
                           "seed_t_interval95": _t_interval(d),
                           "bootstrap_interval95": _bootstrap(lambda idx, name=name: diff(idx, name), n, a.bootstrap, 18)
                           if a.bootstrap else None}
        print(f"{s} steps: FD {mean} best heuristic {best}; " + "; ".join(f"{k} {entry[k]}" for k in DESIGNS), flush=True)
        out = json.loads(path.read_text()) if path.exists() else out
        out["steps"][str(s)] = entry
        out["steps"] = dict(sorted(out["steps"].items(), key=lambda kv: int(kv[0])))
        OUT.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, out)
        if s == 5:
            _examples_png(examples)
        _grids_png(out)


def _t_interval(d):
    """A 95% Student-t interval of the mean of the per-seed differences (n - 1 degrees of freedom)."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return None
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return [float(d.mean() - half), float(d.mean() + half)]


def _examples_png(examples):
    import matplotlib.pyplot as plt

    names = list(examples)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.imshow(torch.cat([torch.cat(list(examples[n][:, 0]), dim=1) for n in names], dim=0), cmap="gray", vmin=-1, vmax=1)
    ax.set_yticks([14 + 28 * i for i in range(len(names))], names)
    ax.set_xticks([])
    ax.set_title("DDIM, 5 steps, the same initial noise per column (seed 0)")
    _save_png(OUT / "grids_examples.png", fig)


def _grids_png(out):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    steps = [int(s) for s in out["steps"]]
    e = [out["steps"][str(s)] for s in steps]
    models = (("closed_form_w2", "predicted: N(0, M), M's circulant part"),
              ("closed_form_w2_mean_model", "predicted: N(m, C), mean image + centred spectrum"),
              ("closed_form_w2_error_model", "predicted: the Gaussian of the prior's error"))
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for name, mk in (("cosine", "o"), ("linear", "s"), ("designed", "^"), ("designed_mean", "v"), ("designed_error", "D")):
        if any(name not in c["fd_mean"] for c in e):
            continue
        axes[0].errorbar(steps, [c["fd_mean"][name] for c in e], yerr=[np.std(c["fd"][name]) for c in e], fmt=mk + "-",
                         label=name, capsize=3)
        for ax, (key, _) in zip(axes[1:], models):
            if all(key in c for c in e):
                ax.plot(steps, [c[key][name] for c in e], mk + "-", label=name)
    trunc = [(s, c["fd_mean"]["cosine_truncated"]) for s, c in zip(steps, e) if "cosine_truncated" in c["fd_mean"]]
    if trunc:
        axes[0].plot(*zip(*trunc), "kx", ms=8, label="cosine started where designed_error starts")
    axes[0].axhline(out["fd_val_vs_test_digits"], color="gray", ls=":", label="500 real val digits")
    axes[0].set(ylabel="Frechet distance, classifier features", title="measured: trained prior, 3 seeds (mean, sd)")
    for ax, (_, title) in zip(axes[1:], models):
        ax.set(ylabel="closed-form W2", title=title)
    for ax in axes:
        ax.set(xscale="log", yscale="log", xlabel="DDIM steps")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    _save_png(OUT / "grids.png", fig)


# ------------------------------------------------------------------------------------------------ part c

NOISE_STD, BOX, DIGIT = 0.05, 12, (4, 24)  # observation noise; inpainting box side, inside the central 20 x 20
BLUR = 2.126  # the bundle's heavy gaussian_blur sigma (configs/mnist.yaml), here with periodic boundaries
# the anchors' defaults: DPS's official zeta' (0.5 box inpainting, 0.3 super-resolution and deblurring), PiGDM's
# weight 1 (the exact likelihood score for white data of variance 1), DDNM's weight 1 (its projection)
DEFAULTS = {"dps": {"blur": 0.3, "inpaint": 0.5, "down": 0.3}, "pigdm": 1.0, "ddnm": 1.0}
# the constant weights the validation sweep tries (`guidance --sweep --split val`): the baseline tuned as a knob
SWEEP = {"dps": (0.3, 1, 3, 10, 30, 100), "pigdm": (0.25, 0.5, 1, 2, 4), "ddnm": (0.25, 0.5, 1, 2, 4)}
SAMPLER_OPTIONS = {"dps": {"eta": 1.0}, "pigdm": {"eta": 1.0, "clip": (-1.0, 1.0)}, "ddnm": {}}
# the designs the test run compares: name -> design_guidance's objective
WEIGHT_DESIGNS = {"designed": "w2", "designed_mse": "mse"}
CLOSED = {"dps": ("dps", "ddim", 1.0, "dps_weights", {}), "pigdm": ("pigdm", "ddim", 1.0, "pigdm_weights", {}),
          "ddnm": ("ddnm", "ddpm", 0.0, "projection_weights", {"ddnm_plus": True})}


def _boxes(n, first=0):
    """A 0/1 mask per item [n, 1, 28, 28]: a BOX x BOX hole at a uniform position inside the digit's central area
    (about a third of it), drawn from the corruption stream of run 18 (issue 18), item by item."""
    mask = torch.ones(n, 1, 28, 28)
    lo, hi = DIGIT
    for i in range(n):
        g = torch.Generator().manual_seed(stream_seed("corruption", 18, first + i))
        top, left = (int(v) for v in torch.randint(lo, hi - BOX + 1, (2,), generator=g))
        mask[i, :, top:top + BOX, left:left + BOX] = 0
    return mask


def _operator(name, n):
    """(engine operator, closed-form (lam weights, h, counts) builder) for `name` on n items."""
    from coupled.engine.operators import AreaDownsample, CirculantBlur, Mask

    if name == "blur":
        op = CirculantBlur(BLUR, (28, 28))

        def closed(lam):
            return lam, op.gains.flatten().double(), torch.ones_like(lam)
    elif name == "inpaint":
        op = Mask(_boxes(n))
        seen = 1 - BOX * BOX / 784

        def closed(lam):  # commuting approximation: every bin seen exactly in a fraction `seen` of its energy
            one = torch.ones_like(lam)
            return torch.cat([lam, lam]), torch.cat([one, 0 * one]), torch.cat([seen * one, (1 - seen) * one])
    elif name == "down":
        op = AreaDownsample(2)

        def closed(lam):  # approximation: 2x2 block means as an ideal low-pass of gain 1/2 (the 14 x 14 lowest bins)
            k = torch.fft.fftfreq(28) * 28
            low = ((k[:, None] >= -7) & (k[:, None] < 7) & (k[None, :] >= -7) & (k[None, :] < 7)).flatten()
            return lam, 0.5 * low.double(), torch.ones_like(lam)
    else:
        raise ValueError(name)
    return op, closed


def _balanced(labels: torch.Tensor, n: int) -> torch.Tensor:
    """The indices of n items taken class by class in turn (the first of each class, then the second, ...): the
    splits are stored sorted by label, so their first n items would be one or two classes."""
    per = [torch.nonzero(labels == c).flatten().tolist() for c in sorted(set(labels.tolist()))]
    order = [idx[r] for r in range(max(map(len, per))) for idx in per if r < len(idx)]
    return torch.tensor(order[:n], dtype=torch.long)


def _measure(op, x, first=0):
    y = op(x)
    noise = torch.stack([torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(
        stream_seed("corruption", 18, 100000 + first + i))) for i in range(x.shape[0])])
    return y + NOISE_STD * noise


def _paired(diff: np.ndarray, reps: int, seed: int):
    rng = np.random.default_rng(sequence("bootstrap", seed))
    idx = rng.integers(0, len(diff), (reps, len(diff)))
    means = diff[idx].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def cmd_guidance(a):
    import matplotlib.pyplot as plt

    from coupled.domains.image.metrics import psnr
    from coupled.engine.operators import Measurement

    torch.set_num_threads(1)
    splits = _splits()
    lam_raw, _ = _spectrum(splits["train"])
    den, process = _prior()
    _, logits_of = _classifier()
    data = splits[a.split]
    keep = _balanced(data.labels, a.items)
    x0, labels = data.signals[keep], data.labels[keep]
    n = x0.shape[0]
    grid = process.grid(a.steps)
    results, examples = {}, {}
    tune_path = OUT / f"tune_val_{a.steps}steps.json"
    tuned = json.loads(tune_path.read_text()) if (not a.sweep and a.split == "test" and tune_path.exists()) else None
    per_cell = max(len(SWEEP[k]) for k in a.samplers) if a.sweep else len(WEIGHT_DESIGNS) + 1 + (tuned is not None)
    total = len(a.operators) * len(a.samplers) * per_cell * len(a.seeds) * n * a.steps
    bar = tqdm(total=total, desc="image steps", unit="img", mininterval=30)
    started = time.time()
    for op_name in a.operators:
        op, closed = _operator(op_name, n)
        y = _measure(op, x0)
        lam, h, counts = closed(lam_raw)
        s2 = NOISE_STD ** 2
        for sampler in a.samplers:
            method, cf_sampler, eta, key, extra = CLOSED[sampler]
            ab = grid_alpha_bar(process, grid)
            default = DEFAULTS[sampler][op_name] if isinstance(DEFAULTS[sampler], dict) else DEFAULTS[sampler]
            variants = {"default": default}
            for name, objective in WEIGHT_DESIGNS.items():  # the same nonnegative search from the same start
                variants[name] = [float(v) for v in design_guidance(
                    lam, h, s2, ab, counts, method=method, sampler=cf_sampler, eta=eta, init=default, iters=a.iters,
                    nonnegative=True, objective=objective)]

            def closed_form(w, distance):
                w = torch.as_tensor(w, dtype=torch.float64)
                t = sampler_transfer(lam, ab, sampler=cf_sampler, eta=eta, h=h, s2=s2, counts=counts, **{key: w}, **extra)
                return float(distance(lam, h, s2, t, counts))

            if a.sweep:  # validation: the best constant weight of a grid, picked by mean PSNR
                variants = {f"{c:g}": float(c) for c in SWEEP[sampler]}
            elif tuned is not None:
                variants["tuned"] = tuned["cells"][f"{op_name}/{sampler}"]["pick"]
            cell = {"weights": variants,
                    "closed_form_w2": {k: closed_form(v, w2_to_posterior) for k, v in variants.items()},
                    "closed_form_mse": {k: closed_form(v, mse_to_truth) for k, v in variants.items()}}
            per = {}
            for vname, weight in variants.items():
                ps, acc = [], []
                for seed in a.seeds:
                    outs = []
                    for b in range(0, n, a.batch):
                        e = min(n, b + a.batch)
                        gens = [torch.Generator().manual_seed(stream_seed("sampling", seed, i)) for i in range(b, e)]
                        m = Measurement(op.batch(b, e), y[b:e], NOISE_STD)
                        xt = process.prior((e - b, 1, 28, 28), gens)
                        outs.append(sample(den, process, grid, xt, sampler=sampler, generator=gens, measurement=m,
                                           weight=weight, **SAMPLER_OPTIONS[sampler]).clamp(-1, 1))
                        bar.update((e - b) * a.steps)
                    xh = torch.cat(outs)
                    ps.append(psnr(xh, x0).numpy())
                    acc.append((logits_of(xh).argmax(1) == labels).double().numpy())
                    if seed == a.seeds[0]:
                        examples[(op_name, sampler, vname)] = xh[:6]
                per[vname] = {"psnr": np.mean(ps, 0), "acc": np.mean(acc, 0),
                              "psnr_seeds": [float(v.mean()) for v in ps], "acc_seeds": [float(v.mean()) for v in acc]}
            for metric in ("psnr", "acc"):
                cell[metric] = {k: float(per[k][metric].mean()) for k in per}
                cell[f"{metric}_seeds"] = {k: per[k][f"{metric}_seeds"] for k in per}
                if a.sweep:
                    continue
                # "designed" keeps the keys of the files written before designed_mse: psnr_difference (vs
                # default), psnr_difference_vs_tuned; designed_mse's are psnr_difference_designed_mse, ..._vs_tuned,
                # ..._vs_designed
                for name in WEIGHT_DESIGNS:
                    tag = "" if name == "designed" else f"_{name}"
                    against = [("default", ""), ("tuned", "_vs_tuned")] + ([("designed", "_vs_designed")] if tag else [])
                    for base, suffix in against:
                        if base in per:
                            diff = per[name][metric] - per[base][metric]
                            cell[f"{metric}_difference{tag}{suffix}"] = float(diff.mean())
                            cell[f"{metric}_interval95{tag}{suffix}"] = _paired(diff, 2000, 18)
            results[f"{op_name}/{sampler}"] = cell
            if a.sweep:
                cell["pick"] = variants[max(per, key=lambda k: (cell["psnr"][k], cell["acc"][k]))]
                print(f"{op_name} {sampler}: sweep PSNR {cell['psnr']} acc {cell['acc']} -> pick {cell['pick']}", flush=True)
                continue
            print(f"{op_name} {sampler}: default {default} designed {[round(v, 3) for v in variants['designed']]} "
                  f"designed_mse {[round(v, 3) for v in variants['designed_mse']]}; W2 {cell['closed_form_w2']}; "
                  f"MSE {cell['closed_form_mse']}; PSNR {cell['psnr']} diff {cell['psnr_difference']:+.2f} "
                  f"{cell['psnr_interval95']}, designed_mse {cell['psnr_difference_designed_mse']:+.2f} "
                  f"{cell['psnr_interval95_designed_mse']}; acc {cell['acc']} diff {cell['acc_difference']:+.3f} "
                  f"{cell['acc_interval95']}", flush=True)
    bar.close()
    out = {"command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/mnist_designs.py guidance "
                      + ("--sweep " if a.sweep else "")
                      + f"--split {a.split} --items {n} --seeds {' '.join(map(str, a.seeds))} --steps {a.steps}",
           "digits": f"{n} {a.split} digits, classes in turn ({torch.bincount(labels, minlength=10).tolist()} per class)",
           "tuned_from": str(tune_path) if tuned is not None else None,
           "split": a.split, "items": n, "seeds": a.seeds, "steps": a.steps, "noise_std": NOISE_STD,
           "blur_sigma": BLUR, "box": BOX, "downsample": 2, "prior": str(PRIOR), "grid": grid[:-1].int().tolist(),
           "sampling_seconds": round(time.time() - started, 1),
           "interval": "paired bootstrap (2000) over digits of designed - default (and - tuned; designed_mse - default, "
                       "- tuned, - designed), seed outcomes averaged per digit",
           "cells": results}
    OUT.mkdir(parents=True, exist_ok=True)
    if a.sweep:
        atomic_write_json(tune_path, out)
        return
    stem = f"guidance_{a.steps}steps" + ("" if a.split == "test" else f"_{a.split}")
    atomic_write_json(OUT / f"{stem}.json", out)
    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8), gridspec_kw={"width_ratios": [1, 1, 1.9]})
    keys = list(results)
    xs = np.arange(len(keys))
    series = [("", "o", "designed (W2) - default"), ("_designed_mse", "^", "designed_mse - default")]
    if tuned is not None:
        series += [("_vs_tuned", "s", "designed (W2) - tuned constant"),
                   ("_designed_mse_vs_tuned", "v", "designed_mse - tuned constant")]
    for ax, metric, label in ((axes[0], "psnr", "PSNR difference (dB)"), (axes[1], "acc", "accuracy difference")):
        for j, (suffix, marker, name) in enumerate(series):
            d = [results[k][f"{metric}_difference{suffix}"] for k in keys]
            lo = [d_ - results[k][f"{metric}_interval95{suffix}"][0] for d_, k in zip(d, keys)]
            hi = [results[k][f"{metric}_interval95{suffix}"][1] - d_ for d_, k in zip(d, keys)]
            ax.errorbar(xs + 0.15 * j, d, yerr=[lo, hi], fmt=marker, capsize=3, label=name)
        ax.legend(fontsize=7)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(xs + 0.075 * (len(series) - 1), keys, rotation=60, ha="right")
        ax.set_title(label)
    columns = [("default", "default weights"), ("designed", "designed (W2)"), ("designed_mse", "designed (MSE)")]
    columns += [("tuned", "tuned constant")] if tuned is not None else []
    rows = [torch.cat([im for vname, _ in columns for im in examples[(*k.split("/"), vname)][:3, 0]], dim=1)
            for k in keys]
    axes[2].imshow(torch.cat(rows, 0), cmap="gray", vmin=-1, vmax=1)
    axes[2].set_yticks([14 + 28 * i for i in range(len(keys))], keys)
    axes[2].set_xticks([42 + 84 * j for j in range(len(columns))], [title for _, title in columns])
    fig.suptitle(f"{a.steps} steps, {n} {a.split} digits, {len(a.seeds)} seeds, noise std {NOISE_STD}")
    _save_png(OUT / f"{stem}.png", fig)


# ------------------------------------------------------------------------------------------------ tables


def _fmt_iv(iv, f="{:+.1f}"):
    return "n/a" if iv is None else "[" + ", ".join(f.format(v) for v in iv) + "]"


def cmd_tables(a):
    spec = json.loads((OUT / "spectrum.json").read_text())
    r, c = spec["circulant"]["raw"], spec["circulant"]["centred"]
    print(f"Spectrum: DC holds {spec['dc_fraction']:.1%} of E||x||^2 (= {r['rms_norm'] ** 2:.0f}); off the Fourier diagonal: "
          f"{r['offdiagonal_energy']:.1%} of M's energy ({c['offdiagonal_energy']:.1%} of the covariance's); W2(N(0, M), "
          f"N(0, circ M)) = {r['w2_gaussian']:.2f} (spectrum part {r['w2_eigen']:.2f}); centred {c['w2_gaussian']:.2f} "
          f"({c['w2_eigen']:.2f}); sqrt(E||x||^2) = {r['rms_norm']:.2f}")
    path = OUT / "grids.json"
    if path.exists():
        g = json.loads(path.read_text())
        print(f"\nGrids: Frechet distance to 1000 test digits (classifier features; 500 real val digits: "
              f"{g['fd_val_vs_test_digits']:.1f}), mean over seeds (per-seed sd)")
        print("| steps | samples/cell | cosine | linear | designed N(0, M) | designed N(m, C) | designed from the error | best | "
              "designed - best [seed t] [bootstrap] | designed(m, C) - best [seed t] [bootstrap] | "
              "designed(error) - best [seed t] [bootstrap] |")
        print("|" + "---|" * 11)
        for st, e in g["steps"].items():
            cells = [f"{e['fd_mean'][k]:.1f} ({np.std(e['fd'][k]):.1f})" if k in e["fd_mean"] else "-"
                     for k in ("cosine", "linear", *DESIGNS)]
            diffs = [f"{e[k]['minus_best']:+.1f} {_fmt_iv(e[k]['seed_t_interval95'])} {_fmt_iv(e[k]['bootstrap_interval95'])}"
                     if k in e else "-" for k in DESIGNS]
            print(f"| {st} | {e['samples_per_cell']} | " + " | ".join(cells) + f" | {e['best_heuristic']} | "
                  + " | ".join(diffs) + " |")
            if "designed_error_vs_truncated" in e:
                t = e["designed_error_vs_truncated"]
                print(f"|   | cosine from t = {e['grids']['cosine_truncated'][0]}: {e['fd_mean']['cosine_truncated']:.1f}; "
                      f"designed(error) - it {t['minus']:+.1f} {_fmt_iv(t['seed_t_interval95'])} "
                      f"{_fmt_iv(t['bootstrap_interval95'])} |")
        print("\n| steps | grid | timesteps | closed-form W2, N(0, M) | N(m, C) | the error's Gaussian |")
        print("|---|---|---|---|---|---|")
        for st, e in g["steps"].items():
            for k in e["grids"]:
                w2e = e.get("closed_form_w2_error_model", {}).get(k)
                print(f"| {st} | {k} | {' '.join(map(str, e['grids'][k]))} | {e['closed_form_w2'][k]:.2f} | "
                      f"{e['closed_form_w2_mean_model'][k]:.2f} | {'-' if w2e is None else f'{w2e:.2f}'} |")
    for path in sorted(OUT.glob("guidance_*steps*.json"), key=lambda p: (len(p.stem), p.stem)):
        gd = json.loads(path.read_text())
        print(f"\nGuidance ({path.name}: {gd['split']}, {gd['items']} digits, {len(gd['seeds'])} seeds, {gd['steps']} "
              f"steps, noise std {gd['noise_std']}; tuned: {gd['tuned_from']}, best mean PSNR; '-': not in this file)")
        names = ("default", "tuned", "designed", "designed_mse")
        print("| corruption | sampler | weights: default / tuned / designed | PSNR " + " / ".join(names) + " | designed - "
              "default [95%] | designed - tuned [95%] | designed_mse - tuned [95%] | accuracy " + " / ".join(names) +
              " | designed - default [95%] | designed - tuned [95%] | designed_mse - tuned [95%] |")
        print("|" + "---|" * 11)
        for key, cell in gd["cells"].items():
            op_name, sampler = key.split("/")
            w = cell["weights"]
            weights = " / ".join(_fmt_weights(w.get(k)) for k in names[:3])
            row = [op_name, sampler, weights]
            for metric, f in (("psnr", "{:.2f}"), ("acc", "{:.3f}")):
                row.append(" / ".join("-" if k not in cell[metric] else f.format(cell[metric][k]) for k in names))
                for tag in ("", "_vs_tuned", "_designed_mse_vs_tuned"):
                    row.append(_fmt_diff(cell, metric, tag, "{:+" + f[2:]))
            print("| " + " | ".join(row) + " |")
        print("\n| corruption | sampler | designed_mse weights | closed-form W2 default / tuned / designed / designed_mse | "
              "closed-form MSE, same order | PSNR designed_mse - default [95%] | designed_mse - designed [95%] | "
              "accuracy designed_mse - default [95%] | designed_mse - designed [95%] |")
        print("|" + "---|" * 9)
        for key, cell in gd["cells"].items():
            op_name, sampler = key.split("/")
            cf = [" / ".join("-" if k not in cell.get(c, {}) else f"{cell[c][k]:.4g}" for k in names)
                  for c in ("closed_form_w2", "closed_form_mse")]
            diffs = [_fmt_diff(cell, m, tag, f) for m, f in (("psnr", "{:+.2f}"), ("acc", "{:+.3f}"))
                     for tag in ("_designed_mse", "_designed_mse_vs_designed")]
            print(f"| {op_name} | {sampler} | {_fmt_weights(cell['weights'].get('designed_mse'))} | {cf[0]} | {cf[1]} | "
                  + " | ".join(diffs) + " |")


def _fmt_weights(w):
    """A constant weight as itself, a per-step schedule as its values (2 significant digits); '-' if absent."""
    if w is None:
        return "-"
    return f"{w:g}" if isinstance(w, (int, float)) else " ".join(f"{v:.2g}" for v in w)


def _fmt_diff(cell, metric, tag, f):
    """'+d [lo, hi]' of the cell's `metric`_difference`tag` and its interval; '-' where the file has none."""
    d, iv = cell.get(f"{metric}_difference{tag}"), cell.get(f"{metric}_interval95{tag}")
    return "-" if d is None else f"{f.format(d)} {_fmt_iv(iv, f)}"


# ------------------------------------------------------------------------------------------------ entry


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("spectrum")
    sub.add_parser("error")
    g = sub.add_parser("grids")
    g.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--samples", type=int, default=1000)
    g.add_argument("--batch", type=int, default=250)
    g.add_argument("--bootstrap", type=int, default=300)
    g.add_argument("--truncated", action="store_true",
                   help="also the cosine grid started at designed_error's first time (is the gain the start?)")
    c = sub.add_parser("guidance")
    c.add_argument("--operators", nargs="+", default=["blur", "inpaint", "down"], choices=["blur", "inpaint", "down"])
    c.add_argument("--samplers", nargs="+", default=["dps", "pigdm", "ddnm"], choices=["dps", "pigdm", "ddnm"])
    c.add_argument("--split", default="test", choices=["val", "test"])
    c.add_argument("--items", type=int, default=100, help="digits, the classes taken in turn")
    c.add_argument("--steps", type=int, default=10)
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--batch", type=int, default=100)
    c.add_argument("--iters", type=int, default=200)
    c.add_argument("--sweep", action="store_true", help="validation: try SWEEP's constant weights, write tune_val_<S>steps.json")
    sub.add_parser("tables")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    {"spectrum": cmd_spectrum, "error": cmd_error, "grids": cmd_grids, "guidance": cmd_guidance, "tables": cmd_tables}[a.cmd](a)


if __name__ == "__main__":
    main()
