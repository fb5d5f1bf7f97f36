"""Build the image domain's networks from configs, and load a checkpoint folder into a `Coupling`.

A checkpoint folder holds `classifier`, `signal` and `logits` (each `.safetensors` + `.json`) and
`pipeline.json` (the sampling settings validated as best). Nothing is pickled; no flags are retyped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ...engine import Chain, Coupling, Denoiser, FrozenClassifier, process_from_dict
from ...errors import CoupledError
from ...training.checkpoint import load_state, load_weights, read_json
from .networks import ClassifierConfig, DigitClassifier, LogitNet, LogitNetConfig, SignalUNet, SignalUNetConfig


def build_net(kind: str, net_cfg: dict):
    """A fresh network of `kind` ('classifier', 'signal' or 'logits') from its config dict."""
    if kind == "classifier":
        return DigitClassifier(ClassifierConfig.from_dict(net_cfg))
    if kind == "signal":
        return SignalUNet(SignalUNetConfig.from_dict(net_cfg))
    if kind == "logits":
        return LogitNet(LogitNetConfig.from_dict(net_cfg))
    raise CoupledError(f"unknown network kind {kind!r}; choose classifier, signal or logits")


def wrap_denoiser(kind: str, net, meta: dict) -> Denoiser:
    """The x0_hat denoiser of a trained network, from the JSON metadata saved beside its weights."""
    process = process_from_dict(meta["process"])
    if kind == "signal":
        return Denoiser(net, process, meta["prediction"], clip=(-1.0, 1.0))
    return Denoiser(net, process, meta["prediction"], pass_center=process.kind == "centred")


def load_net(folder, name: str, kind: str | None = None):
    """Load `<folder>/<name>` into a fresh network; returns (net in eval mode, its JSON metadata)."""
    tensors, meta = load_weights(folder, name)
    kind = kind or meta.get("kind", name)
    if "net" not in meta:
        raise CoupledError(f"{Path(folder) / (name + '.json')} has no 'net' config; re-create it with `coupled train`")
    net = build_net(kind, meta["net"])
    load_state(net, tensors, str(Path(folder) / f"{name}.safetensors"))
    return net.eval().requires_grad_(False), meta


@dataclass
class Bundle:
    """A loaded checkpoint folder: what strategies need, plus the sampling settings saved with it."""

    coupling: Coupling
    sampling: dict
    meta: dict
    signal_net: torch.nn.Module | None = None  # the unguided signal network inside coupling.signal_denoiser

    def to(self, device):
        for part in (self.coupling.classifier, self.coupling.signal_denoiser, self.coupling.logit_denoiser):
            if part is not None:
                part.to(device)
        return self

    def for_method(self, options: dict) -> tuple[Coupling, dict]:
        """The coupling one method runs with, and its options for the strategy: a method's own
        `signal_guidance` (in `sampling.methods.NAME`) overrides the global weight for that method (not the
        ablation `signal_logits: false`, which holds for every method)."""
        options = dict(options)
        if "signal_guidance" not in options:
            return self.coupling, options
        w = signal_guidance({**self.sampling, "signal_guidance": options.pop("signal_guidance")})
        return replace(self.coupling, signal_denoiser=guided_signal_denoiser(self.signal_net, w, self.meta["signal"])), options


class GuidedLogits(torch.nn.Module):
    """Classifier-free guidance on the signal net's logit input: `null + w * (cond - null)` of the raw outputs.

    `w = 1` is the plain conditional net, `w = 0` the null token always (the ablation
    `sampling.signal_logits: false`: coupling then acts only through the logit chain), `w > 1` steers the
    signal harder towards what the logits say. The net learned the null token by logit dropout in joint
    fine-tuning (`joint.null_dropout`). With 0 < w != 1 each call runs the conditional and the null pass
    in one batch of twice the size (same call count, about twice the compute).
    """

    def __init__(self, net, scale: float):
        super().__init__()
        self.net, self.scale = net, float(scale)
        self.cfg = getattr(net, "cfg", None)

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


def signal_guidance(sampling: dict) -> float:
    """The guidance weight of a `sampling` section (`signal_logits: false` means 0)."""
    w = sampling.get("signal_guidance", 1.0)
    if not isinstance(w, (int, float)) or isinstance(w, bool) or w != w or w < 0:
        raise CoupledError(f"sampling.signal_guidance must be a number >= 0 (1 = plain conditioning), got {w!r}")
    return 0.0 if not sampling.get("signal_logits", True) else float(w)


def guided_signal_denoiser(net, guidance: float, meta: dict) -> Denoiser:
    """The x0_hat denoiser of signal network `net` sampled with guidance weight `guidance` (1: the net as is)."""
    return wrap_denoiser("signal", net if guidance == 1.0 else GuidedLogits(net, guidance), meta)


def chains_from_sampling(signal_process, logit_process, sampling: dict) -> tuple[Chain, Chain]:
    """The two chain recipes of a `sampling` config section."""

    def chain(process, opts):
        opts = dict(opts)
        return Chain(process, opts.pop("steps"), opts.pop("sampler"), **opts)

    return chain(signal_process, sampling["signal"]), chain(logit_process, sampling["logits"])


def load_bundle(folder, sampling: dict | None = None, classifier=None, num_classes: int | None = None) -> Bundle:
    """Load classifier, signal and logit denoisers from `folder` (the user may pass their own classifier module)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CoupledError(f"no such checkpoint folder: {folder}; pass a folder written by `coupled train`")
    pipeline = read_json(folder / "pipeline.json") if (folder / "pipeline.json").is_file() else {}
    sampling = sampling or pipeline.get("sampling")
    if sampling is None:
        raise CoupledError(f"{folder} has no pipeline.json with sampling settings; run `coupled train` to completion")
    if classifier is None:
        classifier, cmeta = load_net(folder, "classifier", "classifier")
        scale = cmeta.get("logit_scale", 0.8)
        num_classes = cmeta["net"].get("num_classes", num_classes)
    else:
        scale = pipeline.get("logit_scale", 0.8)
    sig_net, smeta = load_net(folder, "signal", "signal")
    log_net, lmeta = load_net(folder, "logits", "logits")
    if num_classes is not None and lmeta["net"].get("num_classes") not in (None, num_classes):
        raise CoupledError(
            f"the logit denoiser in {folder} was trained for {lmeta['net']['num_classes']} classes but the classifier "
            f"has {num_classes}; use the checkpoint trained with this classifier"
        )
    signal = guided_signal_denoiser(sig_net, signal_guidance(sampling), smeta)
    logits = wrap_denoiser("logits", log_net, lmeta)
    sc, lc = chains_from_sampling(signal.process, logits.process, sampling)
    coupling = Coupling(FrozenClassifier(classifier, num_classes, scale), signal, logits, sc, lc)
    return Bundle(coupling, sampling, {"pipeline": pipeline, "signal": smeta, "logits": lmeta}, sig_net)


def default_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
