"""Joint training's conditioning, drawn from the strategies' own plans (`engine.plan`) on the sampling grids.

Each item of a joint batch is one step of one planned run: a coupled method, with its options, on one
(signal steps, logit steps) grid of `joint.grids`. The item draws a signal visit of that run; its logit
visit is the one whose y0_hat the signal step is conditioned on (Parallel; Nested's refreshes), else any
logit visit of the run. Both networks are then trained at those visits' grid times, shown what the
strategy shows them there (`engine/conditioning.py` names the sources). Where a source is a sampled state,
training stands in for it, as denoising score matching does:
- a network's own state x_t is the forward marginal of the clean item at the visit's time;
- a signal "estimate" (Parallel's z after the switch) is the signal net's x0_hat, null token, at the time of
  the step it comes from, from the clean item noised to that time;
- a signal "final" (Alternating's and Nested's z) is a whole null-token signal trajectory of the run's grid,
  run with the current weights; a logit "final" (Alternating's later rounds) is a whole logit trajectory
  (the run's `logit_samples` of them, averaged) on it. Nested's refreshes are null-token trajectories here.
A padded batch (`lengths`) runs as the strategies run it: every network told the lengths, estimates and frame
logits zero past each item's end, each item's noise drawn on its valid elements only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine import Coupling, Visit, item_generators, logit_trajectory, plan, randn, signal_trajectory
from ..engine.classifier import eval_mode
from ..engine.processes import MaskedNoise, _bcast, length_mask
from ..engine.strategies import length_conditioning
from ..errors import CoupledError

__all__ = ["PlannedRun", "planned_runs", "JointInputs", "joint_inputs"]


@dataclass(frozen=True)
class PlannedRun:
    """One coupled method on one grid, with the visits its plan lists."""

    method: str
    options: dict
    signal_steps: int
    logit_steps: int
    visits: tuple[Visit, ...]

    def of(self, chain: str) -> list[Visit]:
        return [v for v in self.visits if v.chain == chain]


def planned_runs(coupling: Coupling, methods: dict, grids) -> list[PlannedRun]:
    """Every (method, grid) pair: `methods` maps a coupled method to its options, `grids` lists
    [signal_steps, logit_steps] pairs."""
    runs = []
    for method, options in methods.items():
        for sx, sy in grids:
            opts = {**options, "signal_steps": int(sx), "logit_steps": int(sy)}
            visits = plan(method, coupling.signal_chain, coupling.logit_chain, **opts)
            runs.append(PlannedRun(method, opts, int(sx), int(sy), tuple(visits)))
    if not runs:
        raise CoupledError("joint training has no coupled method to plan; list one under sampling.methods or joint.methods")
    return runs


@dataclass
class JointInputs:
    """What one joint batch shows each network, per item (see the module docstring)."""

    runs: list[int]
    signal_visits: list[Visit]
    logit_visits: list[Visit]
    t_x: torch.Tensor
    t_y: torch.Tensor
    z: torch.Tensor  # the classifier input the logit net sees
    center: torch.Tensor | None  # the logit chain's center (None for a VP logit process)
    final_logits: torch.Tensor  # y_hat for items whose signal visit sees "final" (zeros elsewhere)

    def signal_sees(self, kind: str) -> torch.Tensor:
        return torch.tensor([v.sees == kind for v in self.signal_visits])


def _draw(runs: list[PlannedRun], batch: int, g: torch.Generator):
    which = torch.randint(0, len(runs), (batch,), generator=g).tolist()
    u = torch.rand(batch, 2, generator=g).tolist()
    sv, lv = [], []
    for k, (a, b) in zip(which, u):
        run = runs[k]
        signal, logits = run.of("signal"), run.of("logits")
        v = signal[min(int(a * len(signal)), len(signal) - 1)]
        if v.sees == "estimate":
            w = next(w for w in logits if w.index == v.source)
        else:
            w = logits[min(int(b * len(logits)), len(logits) - 1)]
        sv.append(v)
        lv.append(w)
    return which, sv, lv


def _groups(items, key):
    out = {}
    for i in items:
        out.setdefault(key(i), []).append(i)
    return out.items()


def _seeds(n: int, g: torch.Generator) -> list[int]:
    return torch.randint(0, 2**62, (n,), generator=g).tolist()


@torch.no_grad()
def joint_inputs(coupling: Coupling, runs: list[PlannedRun], s: torch.Tensor, d: torch.Tensor, g: torch.Generator,
                 lengths: torch.Tensor | None = None) -> JointInputs:
    """Draw one visit pair per item and build what the two networks are shown there; `lengths` [B]: the valid
    extents of a zero-padded batch (None for signals of one shape)."""
    batch, device = s.shape[0], s.device
    which, sv, lv = _draw(runs, batch, g)
    t_x = torch.tensor([v.t for v in sv], device=device)
    t_y = torch.tensor([v.t for v in lv], device=device)
    px = coupling.signal_chain.process
    sig_center = (lambda x: x) if px.kind == "centred" else (lambda x: None)
    sub = (lambda idx: None) if lengths is None else (lambda idx: lengths[idx])  # the lengths of some items
    mask = None if lengths is None else length_mask(lengths, s.shape[-1]).view(batch, *[1] * (s.dim() - 2), -1)
    z = d.clone()
    nets = [n for n in (coupling.signal_denoiser, coupling.logit_denoiser) if isinstance(n, torch.nn.Module)]
    with eval_mode(torch.nn.ModuleList(nets)):
        estimate = [i for i in range(batch) if lv[i].sees == "estimate"]
        if estimate:  # the x0_hat of the signal step z comes from, at that step's time
            src = torch.tensor([runs[which[i]].of("signal")[lv[i].source].t for i in estimate], device=device)
            s_e, d_e = s[estimate], d[estimate]
            if mask is None:
                noise = randn(tuple(s_e.shape), g, device=device)
            else:
                noise = randn(tuple(s_e.shape), MaskedNoise(item_generators(_seeds(len(estimate), g)), mask[estimate]),
                              device=device)
            x_src = px.add_noise(s_e, src, noise, sig_center(d_e))
            x0 = coupling.signal_denoiser(x_src, src, center=sig_center(d_e), observation=d_e, logits=None,
                                          **length_conditioning("signal", sub(estimate)))
            z[estimate] = x0 if mask is None else x0 * mask[estimate]
        final = [i for i in range(batch) if lv[i].sees == "final" or sv[i].sees == "final"]
        for steps, idx in _groups(final, lambda i: runs[which[i]].signal_steps):
            z[idx] = signal_trajectory(coupling, d[idx], item_generators(_seeds(len(idx), g)), steps=steps,
                                       lengths=sub(idx))
        c_z, c_d = coupling.classifier(z, lengths), coupling.classifier(d, lengths)
        if lengths is not None and c_z.dim() == 3:  # frame logits: zero past each item's end, as the strategies see them
            frames = length_mask(coupling.classifier.frame_lengths(lengths, c_z.shape[1]), c_z.shape[1])[..., None]
            c_z, c_d = c_z * frames, c_d * frames
        final_logits = torch.zeros_like(c_z)
        for (steps, samples), idx in _groups([i for i in range(batch) if sv[i].sees == "final"],
                                              lambda i: (runs[which[i]].logit_steps, runs[which[i]].options.get("logit_samples", 1))):
            final_logits[idx] = logit_trajectory(coupling, z[idx], item_generators(_seeds(len(idx), g)), evidence=c_z[idx],
                                                 steps=steps, samples=samples, lengths=sub(idx))
    center = None
    if coupling.logit_chain.process.kind == "centred":
        from_d = torch.tensor([v.center == "observation" for v in lv], device=device)
        center = torch.where(_bcast(from_d, c_d, torch.bool), c_d, c_z)  # per item, all its frames
    return JointInputs(which, sv, lv, t_x, t_y, z, center, final_logits)
