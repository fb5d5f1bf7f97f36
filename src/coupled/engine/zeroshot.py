"""The measurement terms of the zero-shot posterior samplers: what each anchor adds to a VP step to sample
p(x | y) for y = A x + n, n ~ N(0, sigma_y^2 I), with an unconditional prior denoiser x0_hat(x_t) = E[x0 | x_t].

The steps themselves (`samplers.dps_step`, `pigdm_step`, `ddnm_step`) are the engine's DDIM / DDPM steps around
these terms. With x_t = a_t x0 + s_t eps (VP, a^2 + s^2 = 1):

- DPS (Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems", ICLR 2023, Algorithm 1
  and its official code's `PosteriorSampling`): after the unconditional step, x_{t-1} -= zeta grad_{x_t}
  ||y - A x0_hat(x_t)||, the gradient of the residual's norm (not squared), i.e. the paper's step size
  zeta_i = zeta' / ||y - A x0_hat|| on the squared norm. The official configs use zeta' = 0.5 (box and random
  inpainting) and 0.3 (4x super-resolution, Gaussian deblurring); we take the norm per item (the code's norm
  runs over the whole batch, which couples the items of a batch).
- PiGDM (Song, Vahdat, Mardani, Kautz, "Pseudoinverse-Guided Diffusion Models for Inverse Problems", ICLR
  2023, eq. 7-8): p(x0 | x_t) ~ N(x0_hat, r_t^2 I), hence p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)
  and the likelihood score g = J^T A^T (r_t^2 A A^T + sigma_y^2 I)^-1 (y - A x0_hat), J = d x0_hat / d x_t,
  one vector-Jacobian product. r_t^2 = v s_t^2 / (a_t^2 v + s_t^2), the posterior variance of x0 for data of
  per-coordinate variance v (the paper's r_t^2 = sigma_t^2 / (1 + sigma_t^2) is v = 1 in its VE
  parameterisation; here v is `prior_variance`). The guidance enters as a score: x0_hat += w s_t^2 / a_t g,
  which is the same as eps_hat -= w s_t g, the Tweedie form of adding w g to the score; with w = 1 and data
  that are white Gaussian of variance v the approximation is exact, so the sampler then samples the exact
  posterior in the many-step limit (tests/engine/test_zeroshot.py). The paper's Algorithm 1 instead adds
  sqrt(alpha_bar_t) g to x_{t-1} (a heuristic weight; azula's PGDMSampler adds sqrt(alpha_bar_{t-1}
  alpha_bar_t) g): `weight` is the knob the Gaussian laboratory (coupled.analysis) designs per step.
- DDNM / DDNM+ (Wang, Yu, Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model",
  ICLR 2023, Algorithm 1 and eq. 17-19): the range-space correction x0_hat <- x0_hat - Sigma_t A^+ (A x0_hat - y),
  then a DDPM step from x_t and the corrected x0_hat. Noise-free (sigma_y = 0) Sigma_t = I, which is
  A^+ y + (I - A^+ A) x0_hat. With noise (DDNM+), per singular value s of A, with the DDPM step
  x_{t-1} = c_x x_t + c_0 x0_hat + gamma_t z: lambda_t(s) = 1 where gamma_t >= c_0 sigma_y / s, else
  s gamma_t / (c_0 sigma_y), and the step's fresh noise is shrunk to Phi_t(s) = sqrt(gamma_t^2 - (c_0 lambda_t
  sigma_y / s)^2), so that the noise carried in from y plus the fresh noise is the step's own (the paper's
  principle; its official code does the same in the SVD basis, `Lambda` / `Lambda_noise`, with a DDIM-like
  step that re-uses the network's eps, which we do not: the DDPM form is the paper's Algorithm 1). DDNM's
  "time travel" (RePaint-style resampling) is not implemented. `weight` scales Sigma_t (1: the paper's).

PiGDM and DDNM step from a corrected x0_hat with the eps re-derived from it, eps = (x_t - a_t x0_hat) / s_t,
which is DiffPIR's choice after its data-proximal step (Zhu et al., "Denoising Diffusion Models for
Plug-and-Play Image Restoration", CVPR workshops 2023, arXiv 2305.08995; deepinv's `DiffPIR` and its demo): it
makes every zero-shot step an engine DDIM or DDPM step. DDRM (Kawar et al., NeurIPS 2022) is where working in
A's SVD basis comes from (`operators.LinearOperator.spectral`).
"""

from __future__ import annotations

import torch

from .operators import Measurement

__all__ = ["dps_guidance", "pigdm_guided_x0", "ddnm_scalings", "ddnm_projection"]


def _vjp(denoiser, x, tb, objective=None, cotangent=None):
    """(x0_hat, g): g = grad_x objective(x0_hat(x)) for a scalar `objective`, or J^T v with v = cotangent(x0_hat)
    (detached) and J = d x0_hat / d x. Zeros where nothing depends on x (a constant denoiser, A = 0)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = denoiser(xg, tb)
        g = None
        if objective is not None:
            out = objective(x0)
            if out.requires_grad:
                (g,) = torch.autograd.grad(out, xg, allow_unused=True)
        elif x0.requires_grad:
            (g,) = torch.autograd.grad(x0, xg, grad_outputs=cotangent(x0).to(x0.dtype), allow_unused=True)
    return x0.detach(), torch.zeros_like(x) if g is None else g


def dps_guidance(denoiser, x, tb, measurement: Measurement):
    """(x0_hat, grad_x sum_items ||y - A x0_hat(x)||): DPS's gradient of the residual norm, per item."""
    op, y = measurement.operator, measurement.y

    def norm(x0):
        r = (y.to(x0.dtype) - op(x0)).flatten(1)
        return r.pow(2).sum(dim=1).clamp_min(1e-30).sqrt().sum()

    return _vjp(denoiser, x, tb, objective=norm)


def pigdm_guided_x0(denoiser, x, tb, a: float, s: float, measurement: Measurement, weight: float,
                    prior_variance: float):
    """(guided x0_hat, plain x0_hat): x0_hat + weight s^2 / a J^T A^T (r^2 A A^T + sigma_y^2)^-1 (y - A x0_hat)."""
    op, sy2 = measurement.operator, float(measurement.noise_std) ** 2
    v = float(prior_variance)
    r2 = v * s * s / (a * a * v + s * s)

    def gain(sv):  # A^T (r^2 A A^T + sy2)^-1 = V diag(s^2 / (r^2 s^2 + sy2)) V^T A^+ on the row space
        keep = sv > 0
        return torch.where(keep, sv * sv / (r2 * sv * sv + sy2 + (~keep).to(sv.dtype)), torch.zeros_like(sv))

    def cotangent(x0):
        x0 = x0.detach()
        return op.spectral(op.pinv(measurement.y.to(x0.dtype) - op(x0)), gain)

    x0, g = _vjp(denoiser, x, tb, cotangent=cotangent)
    if weight == 0.0:
        return x0, x0
    return x0 + (weight * s * s / a) * g, x0


def ddnm_scalings(c0: float, gamma: float, noise_std: float, weight: float = 1.0):
    """DDNM+'s (lambda_t, Phi_t) as functions of the singular values s (eq. 19 and the noise principle) for a
    DDPM step whose x0_hat coefficient is `c0` and fresh-noise std `gamma`; noise-free: (1, gamma)."""
    sy = float(noise_std)

    def lam(sv):
        if sy == 0.0 or c0 == 0.0:
            return torch.ones_like(sv)
        return torch.where(gamma * sv >= c0 * sy, torch.ones_like(sv), sv * gamma / (c0 * sy))

    def phi(sv):
        if sy == 0.0:
            return torch.full_like(sv, gamma)
        carried = torch.where(sv > 0, weight * c0 * lam(sv) * sy / torch.where(sv > 0, sv, torch.ones_like(sv)),
                              torch.zeros_like(sv))
        return (gamma * gamma - carried * carried).clamp(min=0).sqrt()

    return lam, phi


def ddnm_projection(x0, measurement: Measurement, lam, weight: float = 1.0):
    """x0_hat - weight Sigma_t A^+ (A x0_hat - y), Sigma_t = V diag(lam(s)) V^T (lam = 1: A^+ y + (I - A^+ A) x0_hat)."""
    op = measurement.operator
    correction = op.spectral(op.pinv(op(x0) - measurement.y.to(x0.dtype)), lam)
    return x0 - weight * correction
