"""One call for users: load a checkpoint folder and classify (possibly degraded) images with any method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .engine import METHODS, check_finite, item_generators, run_method
from .errors import CoupledError


class CoupledPipeline:
    """A frozen classifier with its signal and logit denoisers, ready to run any method.

    `CoupledPipeline.from_pretrained(DIR)` reads weights and configs from a checkpoint folder (no flags to
    retype); `pipe(images, method="parallel")` returns a dict with `predictions` [B], `probabilities`
    [B, K] and `enhanced` images [B, C, H, W] (None for methods without a signal chain).
    """

    def __init__(self, bundle, device=None):
        from .domains.image.models import default_device

        self.device = torch.device(device) if device is not None else default_device()
        self.bundle = bundle.to(self.device)

    @classmethod
    def from_pretrained(cls, folder, *, classifier: torch.nn.Module | None = None, device=None, sampling: dict | None = None):
        """Load `folder` (written by `coupled train`); pass `classifier` to use your own module instead of ours."""
        from .domains.image.models import load_bundle

        return cls(load_bundle(folder, sampling=sampling, classifier=classifier), device)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.bundle.coupling.signal_denoiser.net.cfg
        return (cfg.in_channels, cfg.image_size, cfg.image_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, method: str = "parallel", *, seed: int = 0, readout: str | None = None, **options):
        """Classify `images` [B, C, H, W] in [-1, 1] with `method`; `readout` 'logits' or 'classifier'
        (default: 'classifier' where a signal chain exists, else 'logits')."""
        if method not in METHODS:
            raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        images = torch.as_tensor(images)
        if images.dim() == 3:
            images = images[None]
        if tuple(images.shape[1:]) != self.image_shape:
            raise CoupledError(
                f"images have shape {tuple(images.shape[1:])} but the checkpoint expects {self.image_shape}; resize them first"
            )
        check_finite(images.float(), "images")
        coupling, opts = self.bundle.for_method({**self.bundle.sampling.get("methods", {}).get(method, {}), **options})
        res = run_method(method, coupling, images.float().to(self.device),
                         item_generators([seed * 1_000_003 + i for i in range(len(images))]), **opts)
        readout = readout or ("classifier" if res.x_hat is not None or res.y_hat is None else "logits")
        if readout == "classifier":
            z = res.x_hat if res.x_hat is not None else images.float().to(self.device)
            probs = torch.softmax(coupling.classifier.raw(z), dim=-1)
        else:
            probs = torch.softmax(res.y_hat, dim=-1)
        return {"predictions": res.prediction(readout).cpu(), "probabilities": probs.cpu(),
                "enhanced": None if res.x_hat is None else res.x_hat.cpu(), "calls": res.calls}


def read_image_file(path, shape: tuple[int, int, int]) -> torch.Tensor:
    """One PNG/JPEG/.npy file as a [C, H, W] tensor in [-1, 1]; CoupledError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise CoupledError(f"{path}: not a readable .npy array ({str(e).splitlines()[0][:80]})") from None
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 127.5 - 1
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
            arr = arr * 2 - 1 if arr.min() >= 0 else arr  # floats in [0, 1] unless they have negatives ([-1, 1])
        else:
            raise CoupledError(f"{path}: unsupported dtype {arr.dtype}; save uint8 0..255 or floats in [0, 1]")
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("L" if shape[0] == 1 else "RGB")
                arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
        except (UnidentifiedImageError, OSError) as e:
            raise CoupledError(f"{path}: not a readable image ({type(e).__name__})") from None
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    if tuple(arr.shape) != tuple(shape):
        raise CoupledError(f"{path}: shape {tuple(arr.shape)} but the checkpoint expects {tuple(shape)} (C, H, W); resize it")
    if not np.isfinite(arr).all():
        raise CoupledError(f"{path}: contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr))


def classify_files(files, checkpoint, *, corruption=None, severity=None, method="parallel", seed=0, out=print) -> int:
    """Print one line per file (prediction and confidence, or the file's problem); returns the number of failures."""
    from .domains.image.corruptions import corrupt, get_corruption

    if (corruption is None) != (severity is None):
        raise CoupledError("pass --corruption and --severity together (or neither)")
    if corruption is not None:
        get_corruption(corruption)
    pipe = CoupledPipeline.from_pretrained(checkpoint)
    images, names, failures = [], [], 0
    for f in files:
        try:
            images.append(read_image_file(f, pipe.image_shape))
            names.append(f)
        except CoupledError as e:
            out(f"{f}\terror: {e}")
            failures += 1
    if images:
        batch = torch.stack(images)
        if corruption is not None:
            batch = corrupt(batch, corruption, severity, seed)
        res = pipe(batch, method, seed=seed)
        for name, pred, probs in zip(names, res["predictions"], res["probabilities"]):
            out(f"{name}\t{int(pred)}\tp={float(probs[pred]):.3f}\t({method})")
    return failures
