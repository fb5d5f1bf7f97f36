"""Samplers against diffusers' schedulers and against closed-form Gaussian posteriors."""

import subprocess
import sys

import pytest
import torch

from coupled.engine import (
    CentredProcess, Chain, ChainState, Denoiser, VPProcess, ddim_step, ddpm_step, output_from_x0, process_from_dict,
    sample, training_target, x0_from_output,
)
from coupled.engine.gaussian import GaussianPrior, linear_gaussian_posterior
from coupled.errors import CoupledError

diffusers = pytest.importorskip("diffusers")


def _eps_network(process, target, perturbations):
    """A stand-in eps network: the eps that points at `target`, perturbed per step (keeps states O(1))."""

    def net(x, t, i):
        a, _, s = (c.reshape(-1, 1, 1, 1) for c in process.coefficients(torch.as_tensor(t).reshape(1)))
        return (0.9 * (x - a * target) / s + 0.1 * perturbations[i]).float()

    return net


@pytest.mark.parametrize("schedule,name", [("cosine", "squaredcos_cap_v2"), ("linear", "linear")])
@pytest.mark.parametrize("kind,eta", [("ddim", 0.0), ("ddim", 0.7), ("ddpm", None)])
def test_parity_with_diffusers(schedule, name, kind, eta):
    T, S = 1000, 10
    process = VPProcess(T, schedule)
    if kind == "ddim":
        sched = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=name, clip_sample=False, set_alpha_to_one=True)
    else:
        sched = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name, clip_sample=False)
    sched.set_timesteps(S)
    torch.testing.assert_close(process.alpha_bar, sched.alphas_cumprod, rtol=0, atol=1e-6)
    grid = process.grid(S, spacing="leading")
    assert grid[:-1].long().tolist() == sched.timesteps.tolist()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=g)
    net = _eps_network(process, torch.randn(3, 2, 4, 4, generator=g).clamp(-1, 1),
                       [torch.randn(3, 2, 4, 4, generator=g) for _ in range(S)])
    ref = x.clone()
    gen_ours, gen_ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    from coupled.engine import ddim_step, ddpm_step

    for i, t in enumerate(sched.timesteps):
        # each step from the same input state: the step formulas must agree to 1e-5
        out = net(ref, t, i)
        denoise = lambda x, tt: x0_from_output("eps", net(x, tt[0], i), x, tt, process)  # noqa: E731
        if kind == "ddim":
            ours, _ = ddim_step(denoise, process, ref, grid[i], grid[i + 1], generator=gen_ours, eta=eta)
            ref = sched.step(out, t, ref, eta=eta, generator=gen_ref).prev_sample
        else:
            ours, _ = ddpm_step(denoise, process, ref, grid[i], grid[i + 1], generator=gen_ours)
            ref = sched.step(out, t, ref, generator=gen_ref).prev_sample
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def _step_errors(kind, spacing, S, clip=None, use_clipped_model_output=False, T=1000):
    """Per step, from the same input state: max |ours - diffusers'| (as docs/engine.md states parity)."""
    process = VPProcess(T, "cosine")
    common = {"num_train_timesteps": T, "beta_schedule": "squaredcos_cap_v2", "clip_sample": clip is not None,
              "timestep_spacing": spacing}
    if kind == "ddim":
        sched = diffusers.DDIMScheduler(**common, set_alpha_to_one=True)
    else:
        sched = diffusers.DDPMScheduler(**common)
    sched.set_timesteps(S)
    grid = process.grid(S, spacing=spacing)
    assert grid[:-1].long().tolist() == sched.timesteps.tolist()  # the same grid times; the steps may differ
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=g)
    net = _eps_network(process, 1.5 * torch.randn(3, 2, 4, 4, generator=g),  # x0 partly outside [-1, 1]
                       [torch.randn(3, 2, 4, 4, generator=g) for _ in range(S)])
    ref, errors = x.clone(), []
    for i, t in enumerate(sched.timesteps):
        denoise = Denoiser(lambda x, tt, i=i: net(x, torch.round(tt[0] * T), i), process, "eps", clip=clip)
        if kind == "ddim":
            ours, _ = ddim_step(denoise, process, ref, grid[i], grid[i + 1])
            nxt = sched.step(net(ref, t, i), t, ref, eta=0.0, use_clipped_model_output=use_clipped_model_output)
        else:
            ours, _ = ddpm_step(denoise, process, ref, grid[i], grid[i + 1], generator=torch.Generator().manual_seed(i))
            nxt = sched.step(net(ref, t, i), t, ref, generator=torch.Generator().manual_seed(i))
        errors.append((ours - nxt.prev_sample).abs().max().item())
        ref = nxt.prev_sample
    return errors


def test_ddim_parity_on_the_trailing_grid_holds_when_the_step_count_divides_T():
    # float32 round-off near t = 999, where x0_hat = (x - sigma eps) / a divides by a ~ 0.003, allows 1e-3
    for S in (10, 8):
        assert max(_step_errors("ddim", "trailing", S)) < 1e-3
    # S = 3 of 1000: grid 999, 666, 332. diffusers' DDIM steps by T // S (666 -> 333), the engine to the next
    # grid time (666 -> 332); the first and last steps agree
    errors = _step_errors("ddim", "trailing", 3)
    assert errors[0] < 1e-3 and errors[2] < 1e-3 and errors[1] > 0.1
    # diffusers' DDPM steps to the next grid time, as the engine does, on any grid
    assert max(_step_errors("ddpm", "trailing", 3)) < 1e-3


def test_clipped_denoiser_matches_diffusers_use_clipped_model_output():
    clip = (-1.0, 1.0)
    for spacing in ("leading", "trailing"):
        assert max(_step_errors("ddim", spacing, 10, clip, use_clipped_model_output=True)) < 1e-5
        # diffusers' default re-uses the network's unclipped eps for the direction; the engine re-derives it
        assert max(_step_errors("ddim", spacing, 10, clip, use_clipped_model_output=False)) > 0.1
    assert max(_step_errors("ddpm", "leading", 10, clip)) < 1e-5  # DDPM's step uses x0_hat alone


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
@pytest.mark.parametrize("process", [VPProcess(100), CentredProcess()], ids=["vp", "centred"])
def test_parameterization_round_trip(prediction, process):
    g = torch.Generator().manual_seed(0)
    x0, noise, center = (torch.randn(5, 3, generator=g) for _ in range(3))
    t = torch.tensor([3.0, 10, 40, 70, 99]) if process.kind == "vp" else torch.tensor([0.05, 0.2, 0.5, 0.8, 1.0])
    x_t = process.add_noise(x0, t, noise, center)
    target = training_target(prediction, x0, noise, t, process)
    torch.testing.assert_close(x0_from_output(prediction, target, x_t, t, process, center), x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(output_from_x0(prediction, x0, x_t, t, process, center), target, atol=1e-4, rtol=1e-4)


def test_denoiser_wrapper_passes_network_time_and_conditioning():
    seen = {}

    class Net(torch.nn.Module):
        def forward(self, x, t, observation=None):
            seen["t"], seen["obs"] = t, observation
            return torch.zeros_like(x)

    process = VPProcess(1000)
    den = Denoiser(Net(), process, "eps", clip=(-1, 1))
    x = torch.full((2, 3), 5.0)
    out = den(x, torch.tensor(500.0), observation="d")
    assert seen["obs"] == "d" and torch.allclose(seen["t"], torch.full((2,), 0.5))
    assert out.max() <= 1  # clipped


def _posterior_setup(n):
    g = torch.Generator().manual_seed(0)
    D = 3
    A = torch.randn(D, D, generator=g)
    prior_cov = A @ A.T / D + 0.3 * torch.eye(D)
    d = 1.5 * torch.randn(1, D, generator=g)
    post = linear_gaussian_posterior(torch.zeros(D), prior_cov, torch.eye(D), 0.5 * torch.eye(D), d)
    return post, GaussianPrior(post.mean.expand(n, D), post.cov), d.expand(n, D)


def _check_moments(x, post):
    mean_err = (x.mean(0) - post.mean[0]).abs().max().item()
    cov_err = ((torch.cov(x.T) - post.cov).abs().max() / post.cov.abs().max()).item()
    assert mean_err < 0.03, f"posterior mean off by {mean_err:.4f}"
    assert cov_err < 0.05, f"posterior covariance off by {cov_err:.1%}"
    # and far from the prior's moments, so the test can tell a sampler that ignores d
    assert (post.mean[0].abs() > 0.1).any()


@pytest.mark.parametrize(
    "sampler,process,steps,opts",
    [
        ("ddpm", VPProcess(200, "cosine"), 200, {}),
        ("ddim", VPProcess(1000, "cosine"), 100, {}),
        ("ddim", VPProcess(1000, "linear"), 500, {"eta": 1.0}),
        ("pc", CentredProcess(), 100, {}),
        ("pc", CentredProcess(t_eps=0.01), 200, {"corrector_steps": 0}),
        ("ddim", CentredProcess(t_eps=0.01), 100, {}),
        ("ddim", CentredProcess(t_eps=0.01), 200, {"eta": 1.0}),
    ],
    ids=["ddpm-vp", "ddim-vp", "ddim-eta1-vp", "pc-centred", "reverse-diffusion-centred", "ddim-centred",
         "ddim-eta1-centred"],
)
def test_gaussian_oracle_reproduces_posterior(sampler, process, steps, opts):
    n = 20000
    post, post_n, center = _posterior_setup(n)
    chain = Chain(process, steps, sampler, **opts)
    g = torch.Generator().manual_seed(1)
    if process.kind == "centred":
        # start from the exact marginal at t = 1, so the test measures the sampler, not SGMSE+'s prior shortcut
        a, b, s = (c.float() for c in process.coefficients(torch.ones(1)))
        chol = torch.linalg.cholesky(a * a * post.cov + s * s * torch.eye(3))
        x = a * post.mean + b * center + torch.randn(n, 3, generator=g) @ chol.T
        state = ChainState(x=x, center=center)
    else:
        state = chain.start((n, 3), g)
    state = chain.run(state, post_n.denoiser(process), g)
    _check_moments(state.x, post)


def test_sample_function_matches_chain_and_calls_back():
    process = VPProcess(1000)
    post, post_n, _ = _posterior_setup(8)
    chain = Chain(process, 7, "ddim", eta=0.3)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    steps = []
    out = sample(post_n.denoiser(process), process, chain.grid, x, sampler="ddim", eta=0.3,
                 generator=torch.Generator().manual_seed(3), callback=lambda i, x, x0: steps.append(i))
    state = chain.run(ChainState(x=x), post_n.denoiser(process), torch.Generator().manual_seed(3))
    assert steps == list(range(7))
    assert torch.equal(out, state.x)


def test_grids_and_configs():
    vp = VPProcess(1000)
    assert vp.grid(4).tolist() == [999, 749, 499, 249, -1]
    assert vp.grid(4, "leading").tolist() == [750, 500, 250, 0, -1]
    c = CentredProcess()
    g = c.grid(5)
    assert g[0] == 1 and abs(float(g[-2]) - c.t_eps) < 1e-6 and g[-1] == 0
    for p in (vp, c):
        assert process_from_dict(p.to_dict()) == p
    chain = Chain(c, 9, "pc", corrector_steps=2)
    assert Chain.from_dict(chain.to_dict()) == chain
    with pytest.raises(CoupledError, match="unknown chain option"):
        Chain.from_dict({**chain.to_dict(), "stepz": 3})
    with pytest.raises(CoupledError, match="exceeds"):
        vp.grid(2000)
    with pytest.raises(CoupledError, match="unknown VP schedule"):
        VPProcess(schedule="quadratic")


def test_engine_imports_torch_and_numpy_only():
    code = (
        "import sys, torch; before = set(sys.modules); import coupled.engine; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - {'coupled'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing coupled.engine also loaded: {out}"


def test_pc_denoise_final_ends_on_the_last_steps_estimate():
    """pc's `denoise_final` (issue 16: at few steps the reverse SDE's last Euler step and its noise dominate the
    state): the trajectory ends on the last step's x0_hat, every earlier step is untouched, and `sample` agrees."""
    process = CentredProcess()
    post, post_n, center = _posterior_setup(64)
    den = post_n.denoiser(process)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(4)) + center
    runs = {}
    for final in (False, True):
        chain = Chain(process, 3, "pc", denoise_final=final)
        seen, state = [], ChainState(x=x, center=center)
        while not chain.done(state):  # the same noise at each step of both runs
            state = chain.step(state, den, torch.Generator().manual_seed(5 + len(seen)))
            seen.append(state)
        runs[final] = seen
    for a, b in zip(runs[False][:-1], runs[True][:-1]):
        assert torch.equal(a.x, b.x)
    last = runs[True][-1]
    assert torch.equal(last.x, last.x0_hat) and not torch.equal(runs[False][-1].x, last.x)
    out = sample(den, process, Chain(process, 3, "pc").grid, x, sampler="pc", center=center, denoise_final=True,
                 generator=torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    with pytest.raises(CoupledError, match="denoise_final must be true or false"):
        Chain(process, 3, "pc", denoise_final="yes")
    with pytest.raises(CoupledError, match="does not take option"):
        Chain(VPProcess(1000), 3, "ddim", denoise_final=True)


def test_centred_ddim_ends_on_the_estimate_and_one_step_is_the_one_step_estimate():
    """DDIM on the centred process (issue 16): deterministic at eta 0, its terminal step returns x0_hat (no injected
    noise at any step count), and a one-step chain is the denoiser's estimate at the prior."""
    process = CentredProcess()
    post, post_n, center = _posterior_setup(64)
    den = post_n.denoiser(process)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(4)) + center
    one = Chain(process, 1, "ddim").run(ChainState(x=x, center=center), den, torch.Generator().manual_seed(5))
    assert torch.equal(one.x, one.x0_hat)
    torch.testing.assert_close(one.x, den(x, torch.ones(64), center=center))
    runs = [Chain(process, 3, "ddim").run(ChainState(x=x, center=center), den, torch.Generator().manual_seed(s))
            for s in (6, 7)]
    assert torch.equal(runs[0].x, runs[1].x)  # deterministic: the generator is never read at eta 0
    assert torch.equal(runs[0].x, runs[0].x0_hat)
    noisy = Chain(process, 3, "ddim", eta=1.0).run(ChainState(x=x, center=center), den, torch.Generator().manual_seed(6))
    assert torch.equal(noisy.x, noisy.x0_hat) and not torch.equal(noisy.x, runs[0].x)
    with pytest.raises(CoupledError, match="does not take option"):
        Chain(process, 3, "ddim", corrector_steps=1)
