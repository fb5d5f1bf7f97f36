"""The frozen classifier: any `nn.Module` mapping a batch of signals to logits, never trained here."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import CoupledError

__all__ = ["FrozenClassifier", "standardise", "check_finite", "eval_mode", "frame_lengths"]


@contextmanager
def eval_mode(module: nn.Module):
    """Run `module` in eval mode, then give every submodule back its own training flag (the user's)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


def standardise(logits: torch.Tensor, scale: float = 0.8, eps: float = 1e-5) -> torch.Tensor:
    """norm(l) = scale * (l - mean(l)) / (std(l) + eps) over the class (last) axis; per frame for [B, T, K]."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True, unbiased=False)
    return scale * (logits - mean) / (std + eps)


def check_finite(x: torch.Tensor, what: str) -> None:
    """One-line error when `x` holds NaN or infinity."""
    if not torch.is_tensor(x):
        raise CoupledError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "infinite values"
        raise CoupledError(f"{what} contains {bad}; clean or drop those items before classifying")


class FrozenClassifier(nn.Module):
    """Wraps a classifier so that it is frozen and checked.

    Args:
        module: maps a batch [B, ...] to logits [B, K] (classification) or [B, T, K] (frame-wise).
        num_classes: K; the logits' last axis must match it (None: take whatever the module returns).
        logit_scale: sigma_l of the standardisation (0.8 in the reference for images).
    The module is put in eval mode with gradients disabled when wrapped. Every call runs it in eval mode
    (dropout off, batch-norm statistics fixed) even if the caller has put it back in training mode since,
    and then gives each submodule back the training flag it had, so the caller's mode survives the call.
    Calling the wrapper returns standardised logits under `torch.no_grad()`; `raw` returns the module's own
    logits.
    """

    def __init__(self, module: nn.Module, num_classes: int | None = None, logit_scale: float = 0.8, eps: float = 1e-5):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise CoupledError(f"the classifier must be a torch.nn.Module, got {type(module).__name__}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise CoupledError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.module = module.eval().requires_grad_(False)
        self.num_classes, self.logit_scale, self.eps = num_classes, logit_scale, eps

    def train(self, mode: bool = True):
        """Stays in eval mode whatever a parent module asks: the classifier is frozen (the wrapped module's
        own flag is left alone; each call runs it in eval mode)."""
        self.training = False
        return self

    @torch.no_grad()
    def raw(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The module's logits on `x`, with shape and value checks. `lengths` [B] (a zero-padded batch of
        signals of different lengths) is passed on as `module(x, lengths)`; None calls `module(x)`."""
        check_finite(x, "classifier input")
        if x.dim() < 2:
            raise CoupledError(f"classifier input must be a batch [B, ...], got shape {tuple(x.shape)}")
        try:
            with eval_mode(self.module):
                out = self.module(x) if lengths is None else self.module(x, lengths)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CoupledError(
                f"the classifier failed on input of shape {tuple(x.shape)} ({first}); pass signals of the shape it was built for"
            ) from None
        if not torch.is_tensor(out) or out.dim() not in (2, 3) or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise CoupledError(
                f"the classifier returned {shape} for a batch of {x.shape[0]}; it must return logits [B, K] or [B, T, K]"
            )
        if self.num_classes is not None and out.shape[-1] != self.num_classes:
            raise CoupledError(
                f"the classifier returned {out.shape[-1]} classes but num_classes={self.num_classes}; "
                "pass the classifier trained for this data set or fix num_classes"
            )
        if out.is_floating_point() and not torch.isfinite(out).all():
            raise CoupledError("the classifier returned NaN or infinite logits on finite inputs; its weights are "
                               "probably damaged (check them, or re-create the checkpoint)")
        return out

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised logits norm(f(x)) (per frame for [B, T, K]); `lengths` as in `raw`."""
        return standardise(self.raw(x, lengths), self.logit_scale, self.eps)

    def frame_lengths(self, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """The valid frames of the [B, T, K] logits of signals with `lengths` (see `frame_lengths`)."""
        return frame_lengths(self.module, lengths, frames)


def frame_lengths(module: nn.Module, lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """The valid frames of classifier `module`'s [B, T, K] logits of signals with `lengths`: the module's own
    `output_lengths(lengths)` when it has one, else `lengths` themselves when the logits have as many frames
    as the signal has samples (`frames`: T of the padded batch's logits). Training calls it on the classifier
    it trains, sampling through `FrozenClassifier.frame_lengths`."""
    fn = getattr(module, "output_lengths", None)
    if fn is not None:
        out = torch.as_tensor(fn(lengths), device=lengths.device).long()
    elif int(lengths.max()) == frames:
        out = lengths
    else:
        raise CoupledError(
            f"the classifier gives {frames} frames for signals of up to {int(lengths.max())} samples; give it an "
            "output_lengths(lengths) method returning each item's valid frames"
        )
    if tuple(out.shape) != tuple(lengths.shape) or int(out.min()) < 1 or int(out.max()) > frames:
        raise CoupledError(f"the classifier's output_lengths gave {out.tolist()} for {frames} frames; each must lie in [1, {frames}]")
    return out
