"""One place for the network-output conversions: eps, x0, v or score  <->  x0_hat.

With x_t = a x0 + b center + sigma eps and x' = x_t - b center:
  eps:   x0 = (x' - sigma eps) / a
  v:     v = a eps - sigma x0, so x0 = (a x' - sigma v) / (a^2 + sigma^2)
  score: score = -eps / sigma, so x0 = (x' + sigma^2 score) / a
Samplers and strategies only ever see x0_hat; training losses are taken in the network's own space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CoupledError
from .processes import _bcast

__all__ = ["PREDICTIONS", "x0_from_output", "output_from_x0", "training_target", "Denoiser"]

PREDICTIONS = ("eps", "x0", "v", "score")


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise CoupledError(f"unknown prediction type {prediction!r}; choose one of: {', '.join(PREDICTIONS)}")


def _coeffs(process, t, like, center):
    # float64 arithmetic: dividing by a small a(t) would otherwise amplify float32 round-off
    a, b, s = (_bcast(c, like, torch.float64) for c in process.coefficients(t.to(like.device)))
    shifted = like.double() if center is None else like.double() - b * center.double()
    return a, s, shifted


def x0_from_output(prediction: str, out, x_t, t, process, center=None) -> torch.Tensor:
    """Convert a network output of type `prediction` at state `x_t`, time `t` [B] into x0_hat."""
    _check(prediction)
    a, s, xs = _coeffs(process, t, x_t, center)
    if prediction == "x0":
        return out
    out64 = out.double()
    if prediction == "eps":
        x0 = (xs - s * out64) / a
    elif prediction == "v":
        x0 = (a * xs - s * out64) / (a * a + s * s)
    else:
        x0 = (xs + s * s * out64) / a
    return x0.to(x_t.dtype)


def output_from_x0(prediction: str, x0, x_t, t, process, center=None) -> torch.Tensor:
    """The inverse of `x0_from_output`: what a `prediction` network would output for this x0 (sigma > 0)."""
    _check(prediction)
    a, s, xs = _coeffs(process, t, x_t, center)
    if prediction == "x0":
        return x0
    eps = (xs - a * x0.double()) / s
    if prediction == "eps":
        out = eps
    elif prediction == "v":
        out = a * eps - s * x0.double()
    else:
        out = -eps / s
    return out.to(x_t.dtype)


def training_target(prediction: str, x0, noise, t, process) -> torch.Tensor:
    """The regression target of denoising score matching for a `prediction` network."""
    _check(prediction)
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return noise
    a, _, s = (_bcast(c, x0) for c in process.coefficients(t.to(x0.device)))
    if prediction == "v":
        return a * noise - s * x0
    return -noise / s


def _check_real(x: torch.Tensor) -> None:
    if x.is_complex():  # the conversions run in float64, which would silently drop the imaginary part
        raise CoupledError(f"the diffusion state is complex ({x.dtype}); give the engine real tensors, e.g. the real "
                           "and imaginary parts of a spectrogram as two channels")


class Denoiser(nn.Module):
    """Wraps a network `net(x_t, network_time, **conditioning)` of any prediction type into an x0_hat denoiser.

    Calling it as `denoiser(x_t, t, center=None, **conditioning)` returns x0_hat; `clip=(lo, hi)` clamps
    x0_hat to the data range (images in [-1, 1]), as diffusers' `clip_sample`. With `pass_center` the
    chain's center is also given to the network (`center=`), for a centred process whose center is not
    otherwise among the network's inputs.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "eps", clip: tuple[float, float] | None = None,
                 pass_center: bool = False):
        super().__init__()
        _check(prediction)
        self.net, self.process, self.prediction, self.clip = net, process, prediction, clip
        self.pass_center = pass_center

    @property
    def num_classes(self):
        """The network's class count when it declares one (lets strategies check logit widths)."""
        return getattr(getattr(self.net, "cfg", None), "num_classes", None)

    def passes(self, **conditioning) -> int:
        """Network passes one call with this conditioning runs (a guided net may run two)."""
        passes = getattr(self.net, "passes", None)
        return passes(logits=conditioning.get("logits")) if passes is not None else 1

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, center: torch.Tensor | None = None, **conditioning):
        _check_real(x_t)
        t = torch.as_tensor(t, device=x_t.device).float().expand(x_t.shape[0])
        if self.pass_center:
            conditioning["center"] = center
        out = self.net(x_t, self.process.network_time(t), **conditioning)
        x0 = x0_from_output(self.prediction, out, x_t, t, self.process, center)
        return x0 if self.clip is None else x0.clamp(*self.clip)

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, center: torch.Tensor | None = None,
             mask: torch.Tensor | None = None, **conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoising score matching at times `t` [B], the training side of `forward`: x_t is the forward
        marginal of `x0` with `noise`, the loss the MSE in the network's own output space; returns (loss,
        x0_hat), x0_hat detached and clipped as `forward` returns it.

        `mask` (bool, broadcastable to `x0`; a zero-padded batch of items of different lengths) keeps the
        valid elements: the loss is the mean squared error over them alone (the MSE of the items' valid
        parts, whatever padding the batch carries) and x0_hat is zero elsewhere, as the strategies zero it.
        Without it, the plain MSE over every element."""
        _check_real(x0)
        t = torch.as_tensor(t, device=x0.device).float().expand(x0.shape[0])
        x_t = self.process.add_noise(x0, t, noise, center)
        if self.pass_center:
            conditioning["center"] = center
        out = self.net(x_t, self.process.network_time(t), **conditioning)
        target = training_target(self.prediction, x0, noise, t, self.process)
        if mask is None:
            loss = F.mse_loss(out, target)
        else:
            keep = mask.to(out.device).bool().expand(out.shape)
            loss = (out - target)[keep].square().mean()
        x0_hat = x0_from_output(self.prediction, out.detach(), x_t, t, self.process, center)
        x0_hat = x0_hat if self.clip is None else x0_hat.clamp(*self.clip)
        return loss, (x0_hat if mask is None else x0_hat * keep)
