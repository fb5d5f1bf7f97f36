"""The Gaussian laboratory (issue 18, item 2): designed time grids and guidance weights against the heuristics,
in closed form (coupled.analysis). Prints the tables docs/results.md quotes; about a minute on one core.

    OMP_NUM_THREADS=1 python benchmarks/gaussian_lab.py
"""

from __future__ import annotations

import torch

from coupled.analysis import (
    Transfer, bin_counts, design_grid, design_guidance, gaussian_blur_gains, grid_alpha_bar, power_law_spectrum,
    sampler_transfer, w2_to_data, w2_to_posterior,
)
from coupled.engine import VPProcess

N, STEPS = 64, (3, 5, 10, 20)
BLUR, S2, SAMPLER = 2.0, 1e-3, "ddpm"  # Gaussian blur of std 2 samples, noise std ~0.032; DPS and DDNM run DDPM


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def main():
    torch.set_num_threads(1)
    lam, counts = power_law_spectrum(N), bin_counts(N)
    cosine, linear = VPProcess(1000, "cosine"), VPProcess(1000, "linear")
    w2 = lambda p, g: float(w2_to_data(lam, sampler_transfer(lam, grid_alpha_bar(p, g)), counts))  # noqa: E731
    print(f"Schedule design: W2 of DDIM (eta 0, ideal denoiser) to the data N(0, C), lam_k = (1 + k)^-2, N = {N}")
    print(_row(["steps", "cosine, uniform", "linear, uniform", "designed", "designed timesteps (cosine process)"]))
    print(_row(["---"] * 5))
    for s in STEPS:
        grid = design_grid(lam, counts, cosine, s)
        print(_row([str(s), f"{w2(cosine, cosine.grid(s)):.4f}", f"{w2(linear, linear.grid(s)):.4f}",
                    f"{w2(cosine, grid):.4f}", " ".join(str(int(t)) for t in grid[:-1])]))
    print(f"(the uniform cosine grid starts at t = 999; W2 of the prior N(0, I) itself: "
          f"{float(w2_to_data(lam, Transfer(0 * lam, torch.ones_like(lam)), counts)):.4f})")

    h = gaussian_blur_gains(N, BLUR)
    print(f"\nZero-shot posterior sampling: averaged W2 to p(x | d), blur std {BLUR}, noise variance {S2}, "
          f"{SAMPLER.upper()} on the cosine process's uniform grid")
    print(_row(["steps", "DPS zeta = 1", "DPS designed", "DDNM p = 1", "DDNM designed", "DPS designed zeta_i"]))
    print(_row(["---"] * 6))
    for s in STEPS:
        ab = grid_alpha_bar(cosine, cosine.grid(s))
        post = lambda **kw: float(w2_to_posterior(lam, h, S2, sampler_transfer(lam, ab, sampler=SAMPLER, h=h, s2=S2,  # noqa: E731
                                                                                counts=counts, **kw), counts))
        zeta = design_guidance(lam, h, S2, ab, counts, method="dps", sampler=SAMPLER)
        p = design_guidance(lam, h, S2, ab, counts, method="projection", sampler=SAMPLER)
        print(_row([str(s), f"{post(dps_weights=1.0):.4f}", f"{post(dps_weights=zeta):.4f}",
                    f"{post(projection_weights=1.0):.4f}", f"{post(projection_weights=p):.4f}",
                    " ".join(f"{z:.2g}" for z in zeta.tolist())]))
    print(f"(a draw from the prior, ignoring d: {float(w2_to_posterior(lam, h, S2, Transfer(0 * lam, lam), counts)):.4f})")


if __name__ == "__main__":
    main()
