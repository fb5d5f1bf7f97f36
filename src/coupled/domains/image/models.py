"""The image domain's networks from configs, and (re-exported from `coupled.bundle`, their domain-neutral home)
the checkpoint loading into a `Coupling`: this module's old import path keeps working."""

from __future__ import annotations

from ...bundle import (  # noqa: F401
    BUNDLE_OPTIONS, REFERENCE_METHODS, SIGNAL_NETS, Bundle, GuidedLogits, chains_from_sampling, default_device,
    guided_signal_denoiser, load_bundle, load_net, method_settings, signal_guidance, wrap_denoiser,
)
from ...bundle import build_net as _build_net


def build_net(kind: str, net_cfg: dict):
    """A fresh image network of `kind` ('classifier', 'signal' or 'logits') from its config dict."""
    return _build_net(kind, net_cfg, "image")
