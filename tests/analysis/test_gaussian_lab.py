"""The Gaussian laboratory's closed form against the engine's own samplers driven by exact Gaussian denoisers.

Monte Carlo tolerance: with n independent outputs per coordinate, the empirical mean has standard error
sqrt(v / n) and the empirical variance v sqrt(2 / (n - 1)) (Gaussian outputs); every coordinate must agree
within 4 standard errors (two-sided p ~ 6e-5 per comparison; the draws are seeded, so the test is fixed).
With 20000 samples 4 standard errors of a variance are 4 %: a closed form off by 5 % in any coordinate fails.
"""

import math

import pytest
import torch

from coupled.analysis import (
    Transfer, design_grid, design_guidance, grid_alpha_bar, posterior,
    sampler_transfer, w2_diagonal, w2_to_data, w2_to_posterior,
)
from coupled.engine import VPProcess, ddim_step, sample
from coupled.engine.gaussian import GaussianPrior
from coupled.errors import CoupledError

from .lab import BIN, COUNTS, F, H, LAM, N, PROCESS, S2, SAMPLES, _agree, _circulant


PRIOR = GaussianPrior(torch.zeros(N), _circulant(LAM).float())
DENOISE = PRIOR.denoiser(PROCESS)
A = _circulant(H)


def test_the_real_fourier_basis_diagonalises_circulant_matrices():
    assert torch.allclose(F @ F.T, torch.eye(N, dtype=torch.float64), atol=1e-12)
    C = _circulant(LAM)
    assert torch.allclose(C, C.roll((1, 1), (0, 1)), atol=1e-12)  # stationary
    assert COUNTS.sum() == N and COUNTS.tolist()[:2] == [1, 2] and COUNTS[-1] == 1


@pytest.mark.parametrize("sampler,eta,steps", [("ddim", 0.0, 3), ("ddim", 0.0, 10), ("ddim", 1.0, 5),
                                               ("ddim", 0.5, 5), ("ddpm", None, 3), ("ddpm", None, 10)])
def test_unconditional_closed_form_matches_the_engine(sampler, eta, steps):
    grid = PROCESS.grid(steps)
    g = torch.Generator().manual_seed(steps)
    opts = {} if eta is None else {"eta": eta}
    out = sample(DENOISE, PROCESS, grid, PROCESS.prior((SAMPLES, N), g), sampler=sampler, generator=g, **opts)
    t = sampler_transfer(LAM, grid_alpha_bar(PROCESS, grid), sampler=sampler, eta=eta or 0.0)
    assert torch.all(t.gain == 0)
    _agree(out, torch.zeros(N, dtype=torch.float64), t.var)


def _observation(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, generator=g, dtype=torch.float64) @ _circulant(LAM.sqrt()).T
    return x @ A.T + math.sqrt(S2) * torch.randn(N, generator=g, dtype=torch.float64)


def test_dps_closed_form_matches_a_dps_loop_over_the_engine_step():
    """x_next = ddim_step(x) - w_i / 2 * grad_x ||d - A x0_hat(x)||^2, the gradient through the exact denoiser."""
    steps, weights = 5, torch.tensor([0.5, 2.0, 3.0, 1.0, 0.2], dtype=torch.float64)
    d = _observation()
    grid = PROCESS.grid(steps)
    g = torch.Generator().manual_seed(1)
    x = PROCESS.prior((SAMPLES, N), g)
    for i in range(steps):
        x_next, _ = ddim_step(DENOISE, PROCESS, x, grid[i], grid[i + 1], generator=g, eta=0.5)
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            r = d.float() - DENOISE(xr, grid[i].expand(SAMPLES)) @ A.float().T
            (grad,) = torch.autograd.grad((r * r).sum(), xr)
        x = x_next - float(weights[i]) / 2 * grad
    t = sampler_transfer(LAM, grid_alpha_bar(PROCESS, grid), sampler="ddim", eta=0.5, h=H, s2=S2,
                         dps_weights=weights, dps_normalised=False)
    _agree(x, t.gain[BIN] * (F @ d), t.var)


def test_projection_closed_form_matches_ddpm_with_the_projected_denoiser():
    """DDNM: the engine's ddpm step with x0_hat <- x0_hat + p_i A^+ (d - A x0_hat)."""
    steps, weights = 5, [1.0, 1.0, 0.7, 0.5, 0.2]
    d = _observation(1)
    hp = torch.where(H.abs() > 1e-3 * H.abs().max(), 1 / H, torch.zeros_like(H))
    A_pinv = _circulant(hp).float()
    grid = PROCESS.grid(steps)
    weight_at = {float(t): w for t, w in zip(grid[:-1], weights)}

    def projected(x, t):
        x0 = DENOISE(x, t)
        return x0 + weight_at[float(t[0])] * (d.float() - x0 @ A.float().T) @ A_pinv.T

    g = torch.Generator().manual_seed(2)
    out = sample(projected, PROCESS, grid, PROCESS.prior((SAMPLES, N), g), sampler="ddpm", generator=g)
    t = sampler_transfer(LAM, grid_alpha_bar(PROCESS, grid), sampler="ddpm", h=H, s2=S2, projection_weights=weights)
    _agree(out, t.gain[BIN] * (F @ d), t.var)


def test_posterior_matches_the_engines_linear_gaussian_posterior():
    from coupled.engine.gaussian import linear_gaussian_posterior

    d = _observation(2)
    post = linear_gaussian_posterior(torch.zeros(N), _circulant(LAM).float(), A.float(), S2 * torch.eye(N), d[None].float())
    p = posterior(LAM, H, S2)
    assert torch.allclose(post.mean[0].double(), F.T @ (p.gain[BIN] * (F @ d)), atol=1e-4)
    assert torch.allclose(post.cov.double(), _circulant(p.var), atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_zero_shot_samplers_without_a_degradation_are_the_unconditional_sampler(sampler):
    ab = grid_alpha_bar(PROCESS, PROCESS.grid(5))
    free = sampler_transfer(LAM, ab, sampler=sampler)
    zero = torch.zeros_like(LAM)
    for guided in (sampler_transfer(LAM, ab, sampler=sampler, h=zero, s2=S2, dps_weights=3.0, counts=COUNTS),
                   sampler_transfer(LAM, ab, sampler=sampler, h=zero, s2=S2, dps_weights=3.0, dps_normalised=False),
                   sampler_transfer(LAM, ab, sampler=sampler, h=zero, s2=S2, projection_weights=1.0)):
        assert torch.all(guided.gain == 0) and torch.equal(guided.var, free.var)


def test_the_projection_sampler_reaches_the_posterior_of_a_noiseless_spectral_mask_as_steps_grow():
    h = (torch.arange(LAM.numel()) % 2).double()  # every other frequency observed exactly
    w2 = [float(w2_to_posterior(LAM, h, 0.0, sampler_transfer(LAM, grid_alpha_bar(PROCESS, PROCESS.grid(s)),
                                                                sampler="ddpm", h=h, s2=0.0, projection_weights=1.0),
                                COUNTS)) for s in (3, 10, 30, 100, 300)]
    assert all(b < a for a, b in zip(w2, w2[1:])), w2
    assert w2[-1] < 0.1 * w2[0] and w2[-1] < 0.02, w2


def test_designed_dps_weights_approach_the_posterior_as_steps_grow_and_beat_constant_weights():
    w2_designed = []
    for steps in (3, 5, 10):
        ab = grid_alpha_bar(PROCESS, PROCESS.grid(steps))
        w = design_guidance(LAM, H, S2, ab, COUNTS, method="dps", iters=100)
        designed = float(w2_to_posterior(LAM, H, S2, sampler_transfer(LAM, ab, h=H, s2=S2, dps_weights=w, counts=COUNTS), COUNTS))
        constant = float(w2_to_posterior(LAM, H, S2, sampler_transfer(LAM, ab, h=H, s2=S2, dps_weights=1.0, counts=COUNTS), COUNTS))
        assert designed < 0.95 * constant, (steps, designed, constant)
        w2_designed.append(designed)
    assert w2_designed[0] > w2_designed[1] > w2_designed[2], w2_designed


def test_designed_projection_weights_beat_ddnm():
    ab = grid_alpha_bar(PROCESS, PROCESS.grid(5))
    w = design_guidance(LAM, H, S2, ab, COUNTS, method="projection", sampler="ddpm", iters=100)
    w2 = lambda p: float(w2_to_posterior(LAM, H, S2, sampler_transfer(LAM, ab, sampler="ddpm", h=H, s2=S2, projection_weights=p), COUNTS))  # noqa: E731
    assert w2(w) < w2(1.0) and w2(w) < w2(0.0)


def test_w2_of_a_hand_case():
    # N(0, 1) vs N(1, 4) in one coordinate: 1 + (1 - 2)^2 = 2; a bin of two coordinates counts twice
    assert float(w2_diagonal([0.0], [1.0], [1.0], [4.0])) == pytest.approx(math.sqrt(2))
    assert float(w2_diagonal([0.0, 3.0], [1.0, 9.0], [1.0, 3.0], [4.0, 9.0], counts=[2, 1])) == pytest.approx(2.0)
    exact = Transfer(torch.zeros_like(LAM), LAM)
    assert float(w2_to_data(LAM, exact, COUNTS)) == 0.0
    assert float(w2_to_posterior(LAM, H, S2, posterior(LAM, H, S2), COUNTS)) == 0.0


def test_the_designed_grid_is_no_worse_than_the_uniform_grids_at_five_steps():
    grid = design_grid(LAM, COUNTS, PROCESS, 5, iters=100, starts=(1.0, 0.6))
    assert grid.shape == (6,) and grid[-1] == -1 and torch.all(grid[:-1] > grid[1:])
    w2 = lambda process, grid: float(w2_to_data(LAM, sampler_transfer(LAM, grid_alpha_bar(process, grid)), COUNTS))  # noqa: E731
    linear = VPProcess(1000, "linear")
    assert w2(PROCESS, grid) <= w2(PROCESS, PROCESS.grid(5))
    assert w2(PROCESS, grid) <= w2(linear, linear.grid(5))


def test_bad_inputs_are_one_line_errors():
    ab = grid_alpha_bar(PROCESS, PROCESS.grid(3))
    with pytest.raises(CoupledError, match="needs the degradation"):
        sampler_transfer(LAM, ab, dps_weights=1.0)
    with pytest.raises(CoupledError, match="counts"):
        sampler_transfer(LAM, ab, h=H, s2=S2, dps_weights=1.0)
    with pytest.raises(CoupledError, match="unknown sampler"):
        sampler_transfer(LAM, ab, sampler="pc")
    with pytest.raises(CoupledError, match="unknown zero-shot"):
        design_guidance(LAM, H, S2, ab, COUNTS, method="dds")
