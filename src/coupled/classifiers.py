"""The frozen classifier a bundle couples with: the domain's built-in design, or your own, and its fingerprint.

Your own classifier is named in a config by `classifier.factory` ("module.path:function": called with the
section's `net` mapping as keyword arguments, it returns a torch.nn.Module mapping a batch of the domain's
signals to logits [B, K]) and `classifier.weights` (a safetensors file of that module's state_dict, relative to
the working directory). `coupled train` does not train it: it checks it before anything is written (module,
function, weights, output width against the data set's classes; frame logits [B, T, K] where the labels are
answers such as transcripts), then copies it into the bundle
(`classifier.safetensors`, the factory in `classifier.json`), from which `coupled evaluate`, `coupled classify`
and `CoupledPipeline.from_pretrained` rebuild it. Naming a factory imports its module, which runs its code: a
config is code.

The fingerprint: the JSON of every denoiser trained on a classifier's logits records that classifier's
standardised logits on a few seeded inputs of the domain's shape (`classifier_fingerprint`); loading the bundle
with a classifier whose logits differ there warns (`ClassifierMismatchWarning`), since the denoisers learnt
another classifier's logits.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .engine import FrozenClassifier, standardise
from .errors import ClassifierMismatchWarning, CoupledError
from .imports import import_object

FINGERPRINT_ITEMS = 4
FINGERPRINT_SEED = 0
# standardised logits have unit spread per item: two different classifiers differ by about 1 (2.65 between the
# tutorial's MLP and the bundled CNN), while the JSON's rounding (4 decimals) and another device's arithmetic (TF32
# has a relative precision of about 1e-3) move one classifier's far less
FINGERPRINT_TOLERANCE = 0.05


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def is_user_classifier(cfg: dict) -> bool:
    """True when the config couples with a user's classifier (`classifier.factory` is set)."""
    return bool((cfg.get("classifier") or {}).get("factory"))


def resolve_factory(spec: str):
    """The function named by "module.path:function" (imported; one-line errors for a missing module or name)."""
    fn = import_object(spec, f"classifier factory {spec!r}", "function")
    if not callable(fn):
        raise CoupledError(f"{spec!r} is a {type(fn).__name__}, not a function; point classifier.factory at a "
                           "function that returns a torch.nn.Module")
    return fn


def check_classifier_section(section: dict) -> None:
    """Config-time checks of a `classifier` section: factory and weights set together, the factory importable."""
    factory, weights = section.get("factory"), section.get("weights")
    if factory is None:
        if weights is not None:
            raise CoupledError("config key classifier.weights needs classifier.factory (the module.path:function that "
                               "builds the network they fit); set both, or neither to train the built-in classifier")
        return
    if weights is None:
        raise CoupledError(f"config key classifier.factory is {factory!r} but classifier.weights is not set; set it to "
                           "the safetensors file of that classifier's trained weights")
    try:
        resolve_factory(factory)
    except CoupledError as e:
        raise CoupledError(f"config key classifier.factory: {e}") from None


def build_classifier(spec: str, kwargs: dict | None = None) -> nn.Module:
    """A fresh network from the user's factory `spec`, called with `kwargs` (the section's `net`)."""
    fn = resolve_factory(spec)
    kwargs = dict(kwargs or {})
    try:
        net = fn(**kwargs)
    except Exception as e:  # the user's code may raise anything
        raise CoupledError(f"classifier factory {spec!r} failed when called with net={kwargs} ({type(e).__name__}: "
                           f"{_first_line(e)}); fix the factory or classifier.net, its keyword arguments") from None
    if not isinstance(net, nn.Module):
        raise CoupledError(f"classifier factory {spec!r} returned a {type(net).__name__}, not a torch.nn.Module; "
                           "return the network")
    return net


def read_weights_file(path, what: str = "classifier weights file") -> dict[str, torch.Tensor]:
    """The tensors of a user's safetensors file, with one-line errors (naming it `what`) for a missing, unreadable
    or non-finite file."""
    from safetensors.torch import load

    path = Path(path)
    fix = "save it with safetensors.torch.save_file(model.state_dict(), PATH)"
    if not path.is_file():
        raise CoupledError(f"{what} {path} does not exist (paths are relative to the working directory); set "
                           f"classifier.weights to your classifier's weights, {fix}")
    try:
        tensors = load(path.read_bytes())
    except Exception as e:  # safetensors raises its own error types, and OSError
        raise CoupledError(f"{what} {path} is not a readable safetensors file ({_first_line(e)}); {fix}") from None
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CoupledError(f"{what} {path} holds NaN or infinite values in {k!r}; pass trained weights")
    return tensors


def load_into(net: nn.Module, tensors: dict, path, spec: str) -> None:
    """Load `tensors` into the network `spec` built; a one-line error names what does not fit."""
    own = net.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    bad = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in own
           if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or bad:
        raise CoupledError(f"classifier weights {path} do not fit the network {spec!r} builds (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}, wrong shape {bad[:3]}); save the state_dict of the network this "
                           "factory builds with this classifier.net")
    net.load_state_dict(tensors)


@dataclass
class UserClassifier:
    """A user's classifier, checked: the network with its weights, and what the bundle records about it."""

    factory: str
    kwargs: dict
    weights: Path
    net: nn.Module
    num_classes: int
    sha256: str


def prepare_user_classifier(cfg: dict, data) -> UserClassifier:
    """Build the config's user classifier, load its weights and check its output on a few items of `data` (a
    labelled split, run with its `lengths` when it is zero-padded): [B, K] logits with K the data set's class
    count, or frame logits [B, T, K] where the labels are answers rather than class indices (transcripts,
    read out by the domain's `readout`). Nothing is written."""
    section = cfg["classifier"]
    spec, kwargs, path = section["factory"], dict(section.get("net") or {}), Path(section["weights"])
    net = build_classifier(spec, kwargs)
    tensors = read_weights_file(path)
    load_into(net, tensors, path, spec)
    x, lengths = data.signals[:FINGERPRINT_ITEMS], None
    if getattr(data, "lengths", None) is not None:
        lengths = data.lengths[:FINGERPRINT_ITEMS]
        x = x[..., : int(lengths.max())]
    try:
        out = FrozenClassifier(net).raw(x, lengths)
    except CoupledError as e:
        raise CoupledError(f"classifier {spec!r}: {e}") from None
    except Exception as e:  # the user's forward may raise anything
        raise CoupledError(f"classifier {spec!r} failed on {len(x)} items of shape {tuple(x.shape[1:])} of data set "
                           f"{data.name} ({type(e).__name__}: {_first_line(e)}); it must take the data set's signals") from None
    sequences = not torch.is_tensor(data.labels)  # answers such as transcripts: frame logits may encode them
    if out.dim() != 2 and not (sequences and out.dim() == 3):
        want = "logits [B, K] or frame logits [B, T, K]" if sequences else (
            f"logits [B, K] for the class-index labels of data set {data.name}")
        raise CoupledError(f"classifier {spec!r} returns logits of shape {tuple(out.shape)} for {len(x)} items; "
                           f"coupled train needs {want}")
    if out.shape[-1] != data.num_classes:
        raise CoupledError(f"classifier {spec!r} returns {out.shape[-1]} logits per {'frame' if out.dim() == 3 else 'item'} but data set {data.name} has "
                           f"{data.num_classes} classes; build it with {data.num_classes} outputs")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return UserClassifier(spec, kwargs, path, net.eval().requires_grad_(False), int(out.shape[-1]), sha)


def install_user_classifier(user: UserClassifier, cfg: dict, output: Path, domain: str, spec: str | None = None) -> bool:
    """Copy the user's classifier into the bundle `output` (classifier.safetensors, classifier.json naming its
    factory and the `domain` name); returns False when the folder already holds this very classifier (nothing
    rewritten)."""
    from .checkpoint import save_weights, verify_outputs

    meta = {"kind": "classifier", "domain": domain, **({"domain_spec": spec} if spec and spec != domain else {}),
            "factory": user.factory, "net": user.kwargs,
            "num_classes": user.num_classes, "logit_scale": cfg["classifier"]["logit_scale"], "frozen": True,
            "weights_source": str(user.weights), "weights_source_sha256": user.sha256}
    json_path = output / "classifier.json"
    if json_path.is_file() and verify_outputs(output, ["classifier"]) is None:
        import json

        if json.loads(json_path.read_text()) == meta:
            return False
    save_weights(output, "classifier", user.net.state_dict(), meta)
    return True


# ------------------------------------------------------------------------------------------------ fingerprint


def fingerprint_inputs(shape, items: int = FINGERPRINT_ITEMS, seed: int = FINGERPRINT_SEED) -> torch.Tensor:
    """The fixed inputs of a fingerprint: `items` signals of `shape`, uniform in [-1, 1], from a seeded generator."""
    return torch.rand((items, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _standardised_logits(classifier, x: torch.Tensor) -> torch.Tensor:
    module = classifier.module if isinstance(classifier, FrozenClassifier) else classifier
    frozen = classifier if isinstance(classifier, FrozenClassifier) else FrozenClassifier(module)
    param = next(iter(module.parameters()), None)
    out = frozen.raw(x.to(param.device if param is not None else "cpu")).float().cpu()
    return standardise(out, 1.0)  # [B, K], or [B, T, K] standardised per frame


def classifier_fingerprint(classifier, shape) -> dict:
    """What a denoiser's JSON records of the classifier it was trained on: its standardised logits (scale 1, so
    logits shifted per item, as log-softmax shifts them, fingerprint alike) on the fixed inputs of `shape`."""
    x = fingerprint_inputs(tuple(shape))
    logits = _standardised_logits(classifier, x)
    return {"inputs": f"uniform in [-1, 1] from torch.Generator().manual_seed({FINGERPRINT_SEED})",
            "seed": FINGERPRINT_SEED, "shape": list(x.shape), "tolerance": FINGERPRINT_TOLERANCE,
            "logits": [[round(float(v), 4) for v in row] for row in logits.reshape(len(x), -1)]}


def fingerprint_gap(stored: dict, classifier) -> tuple[float, int]:
    """(the largest difference between the stored standardised logits and `classifier`'s on the same inputs,
    inf when their shapes differ; the classifier's class count)."""
    try:
        shape, seed = [int(v) for v in stored["shape"]], int(stored.get("seed", FINGERPRINT_SEED))
        ref = torch.tensor(stored["logits"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise CoupledError(f"corrupt classifier_fingerprint ({type(e).__name__}: {_first_line(e)}); re-create the "
                           "checkpoint with `coupled train`") from None
    x = fingerprint_inputs(shape[1:], shape[0], seed)
    now = _standardised_logits(classifier, x)
    flat = now.reshape(len(x), -1)
    gap = float((flat - ref).abs().max()) if flat.shape == ref.shape else math.inf
    return gap, int(now.shape[-1])


def check_fingerprint(stored, classifier, folder) -> int | None:
    """Warn (ClassifierMismatchWarning) when `classifier` is not the one whose fingerprint the denoisers in `folder`
    recorded; no check when they recorded none (trained before fingerprints). Returns the logits' width (None
    unchecked)."""
    if stored is None:
        return None
    if not isinstance(stored, dict):
        raise CoupledError(f"corrupt classifier_fingerprint in {folder}; re-create the checkpoint with `coupled train`")
    gap, width = fingerprint_gap(stored, classifier)
    tolerance = float(stored.get("tolerance", FINGERPRINT_TOLERANCE))
    if gap > tolerance:
        differ = "have another shape" if math.isinf(gap) else f"differ by up to {gap:.3g}, tolerance {tolerance:g}"
        warnings.warn(
            f"the denoisers in {folder} were trained on another classifier's logits (this classifier's standardised "
            f"logits on the fingerprint inputs {differ}); coupling may not help it; retrain the denoisers with it: "
            "`coupled train CONFIG` with classifier.factory and classifier.weights naming it (docs/tutorial.md)",
            ClassifierMismatchWarning, stacklevel=4)
    return width
