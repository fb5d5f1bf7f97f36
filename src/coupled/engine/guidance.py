"""Classifier-free guidance on a conditional denoiser's logit input (a denoiser-level idea, beside `Denoiser`)."""

from __future__ import annotations

import torch

__all__ = ["GuidedLogits"]


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
