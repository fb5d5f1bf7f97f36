"""Guidance, a denoiser-level idea beside `Denoiser`: classifier-free guidance on a conditional denoiser's
logit input (`GuidedLogits`), and gradient guidance through the frozen classifier (`ClassifierGradient`)."""

from __future__ import annotations

import torch

from .classifier import eval_mode

__all__ = ["GuidedLogits", "ClassifierGradient"]


class GuidedLogits(torch.nn.Module):
    """`null + w * (cond - null)` of a network's raw outputs, where `cond` sees the logits and `null` the null token.

    `w = 1` is the plain conditional net, `w = 0` the null token always (the ablation
    `sampling.signal_logits: false`: coupling then acts only through the logit chain), `w > 1` steers the
    signal harder towards what the logits say. The net must accept `logits=` and `logits_mask=` (False rows
    get the null token), as one trained with logit dropout does. With 0 < w != 1 each call runs the
    conditional and the null pass in one batch of twice the size: `passes` says so, and the strategies
    count it, since such a call costs about two unguided ones.
    """

    def __init__(self, net, scale: float):
        super().__init__()
        self.net, self.scale = net, float(scale)
        self.cfg = getattr(net, "cfg", None)

    def passes(self, logits=None) -> int:
        """Network passes one call runs with these logits (2 when it guides, else 1)."""
        return 2 if logits is not None and self.scale not in (0.0, 1.0) else 1

    def forward(self, x_t, t, *args, logits=None, **conditioning):
        if self.scale == 0.0 or logits is None:
            return self.net(x_t, t, *args, **conditioning)
        if self.scale == 1.0:
            return self.net(x_t, t, *args, logits=logits, **conditioning)
        two = lambda v: torch.cat([v, v]) if torch.is_tensor(v) and v.dim() > 0 else v  # noqa: E731
        mask = torch.arange(2 * len(x_t), device=x_t.device) < len(x_t)
        out = self.net(two(x_t), two(t), *map(two, args), logits=two(logits), logits_mask=mask,
                       **{k: two(v) for k, v in conditioning.items()})
        cond, null = out.chunk(2)
        return null + self.scale * (cond - null)


class ClassifierGradient(torch.nn.Module):
    """Gradient guidance through the frozen classifier (beyond the paper: issue 7, part 2).

    Wraps a signal denoiser (one that returns x0_hat, as `Denoiser` does): when a call is conditioned on
    logits l (the logit chain's current estimate), x0_hat moves `scale` RMS units along
    grad_x log softmax(f(x))_c at x = x0_hat, c = argmax l (a hard target: the standardised logits the chains
    carry have a near-flat softmax, whose gradient pulls towards every class at once), then is clipped to
    `clip`. The
    classifier stays frozen (eval mode, its weights untouched): the gradient is taken with respect to its
    input only. A call without logits (the null token) is the denoiser's own. Each guided call adds one
    classifier forward and backward pass, which the measured seconds include and `passes` does not.
    """

    def __init__(self, denoiser, classifier, scale: float, clip: tuple[float, float] | None = (-1.0, 1.0)):
        super().__init__()
        self.denoiser, self.classifier, self.scale, self.clip = denoiser, classifier, float(scale), clip
        self.cfg = getattr(denoiser, "cfg", None)

    def passes(self, **conditioning) -> int:
        inner = getattr(self.denoiser, "passes", None)
        return inner(**conditioning) if inner is not None else 1

    def forward(self, x_t, t, *args, logits=None, **conditioning):
        x0 = self.denoiser(x_t, t, *args, logits=logits, **conditioning)
        if logits is None or self.scale == 0.0:
            return x0
        module = getattr(self.classifier, "module", self.classifier)
        with eval_mode(module), torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            log_p = torch.log_softmax(module(x).float(), dim=-1)
            target = logits.argmax(dim=-1, keepdim=True)  # the logits' class (their softmax is near flat)
            (grad,) = torch.autograd.grad(log_p.gather(-1, target).sum(), x)
        rms = grad.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
        out = x0 + self.scale * (grad / rms).to(x0.dtype)
        return out if self.clip is None else out.clamp(*self.clip)
