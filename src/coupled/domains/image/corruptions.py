"""Image corruptions: degrade clean images [N, C, H, W] in [-1, 1] at a given severity.

A corruption is a function `(images, severity, generator) -> Tensor` of the same shape (float32) that draws
all its randomness from `generator`, so it is deterministic for a given generator state. Built-ins:
`pixel_noise` (the paper's), `gaussian_blur`, `gaussian_noise`, and the two that remove information rather
than add noise (issue 20), where the posterior over clean images can be multimodal: `occlusion` (a square box
set to the background; `occlusion_noise` fills it with uniform noise) and `downsample` (area-average to a
coarser grid, then back up by nearest neighbour). Users add their own with `register_corruption` or name one
in a config as "module.path:function".

`corrupt` applies one to a whole data set with one generator per item, seeded from (seed, global index), so
the result does not depend on how the data set was split into batches.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
import torch.nn.functional as F

from ...errors import CoupledError
from ...imports import import_object
from ..registry import Registry, corrupt_items

__all__ = [
    "Corruption",
    "CORRUPTIONS",
    "DEFAULT_SEVERITIES",
    "register_corruption",
    "get_corruption",
    "corruption_from_config",
    "corrupt",
    "pixel_noise",
    "gaussian_blur",
    "gaussian_noise",
    "occlusion",
    "occlusion_noise",
    "downsample",
]

Corruption = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

CORRUPTIONS: dict[str, Corruption] = Registry("image corruption")

# Placeholders: to be re-chosen on validation data (so that "light/medium/heavy" mean comparable accuracy drops).
DEFAULT_SEVERITIES: dict[str, dict[str, float]] = {
    "pixel_noise": {"light": 0.15, "medium": 0.3, "heavy": 0.5},
    "gaussian_noise": {"light": 0.3, "medium": 0.5, "heavy": 0.8},
    "gaussian_blur": {"light": 1.5, "medium": 2.5, "heavy": 3.5},
    # calibrated for the bundled classifier (configs/mnist_occlusion.yaml; occlusion_noise: docs/results.md)
    "occlusion": {"light": 13, "medium": 18, "heavy": 21},
    "occlusion_noise": {"light": 12, "medium": 16, "heavy": 19},
    "downsample": {"light": 4.0, "medium": 5.6, "heavy": 7.0},
}


# ---------------------------------------------------------------------------------------------- validation
def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise CoupledError(f"images must be a torch.Tensor [N, C, H, W], got {type(images).__name__}; convert with torch.as_tensor")
    if images.dim() != 4:
        raise CoupledError(f"images must be 4-D [N, C, H, W], got shape {tuple(images.shape)}; add a batch dimension with images[None]")
    if not images.is_floating_point():
        raise CoupledError(f"images must be a float tensor in [-1, 1], got dtype {images.dtype}; convert with images.float() / 127.5 - 1")
    if torch.isnan(images).any():
        raise CoupledError("images contain NaN values; clean or drop those images before corrupting them")
    if torch.isinf(images).any():
        raise CoupledError("images contain infinite values; clean or drop those images before corrupting them")
    return images.to(torch.float32)


def _check_severity(severity, name: str, upper: float | None = None) -> float:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Real) or not math.isfinite(severity):
        raise CoupledError(f"severity of '{name}' must be a finite number, got {severity!r}; pass e.g. {_example(name)}")
    if severity < 0 or (upper is not None and severity > upper):
        hi = "" if upper is None else f", <= {upper:g}"
        raise CoupledError(f"severity of '{name}' must be >= 0{hi}, got {severity!r}; pass e.g. {_example(name)}")
    return float(severity)


def _example(name: str) -> str:
    return str(DEFAULT_SEVERITIES.get(name, {}).get("medium", 0.5))


# ---------------------------------------------------------------------------------------------- built-ins
def pixel_noise(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each spatial location of `images` [N, C, H, W] (all channels together) with probability `p`
    in [0, 1] by standard Gaussian noise N(0, 1), drawn from `generator`; the rest is left bit-exact.
    Not clamped: the noise is N(0, 1) in the [-1, 1] space, as in the paper."""
    x, p = _check_images(images), _check_severity(p, "pixel_noise", upper=1.0)
    n, c, h, w = x.shape
    # Always draw both tensors (even for p = 0) so the generator advances the same way at every severity.
    mask = torch.rand((n, 1, h, w), generator=generator, device=generator.device).to(x.device) < p
    noise = torch.randn((n, c, h, w), generator=generator, device=generator.device).to(x.device)
    return torch.where(mask, noise, x)


def gaussian_blur(images: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur `images` [N, C, H, W] with a separable Gaussian of std `sigma` pixels (kernel radius
    ceil(3 sigma), normalised to sum 1, reflect padding). `sigma` = 0 returns a copy of the input.
    `generator` is unused (the blur is deterministic) but accepted to fit the corruption signature."""
    x, sigma = _check_images(images), _check_severity(sigma, "gaussian_blur")
    if sigma == 0:
        return x.clone()
    n, c, h, w = x.shape
    if 3 * sigma > min(h, w) - 1:  # checked before ceil: a huge sigma (1e308) makes 3 * sigma infinite
        # Reflect padding cannot pad by more than the image size minus one.
        raise CoupledError(f"gaussian_blur sigma {sigma:g} needs a kernel radius ceil(3 * sigma) of at least "
                           f"{min(h, w)} pixels, more than {h}x{w} images allow; use sigma at most {(min(h, w) - 1) / 3:.2f}")
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(torch.float32)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, `sigma`^2) noise, drawn from `generator`, to every value of `images` [N, C, H, W] (no clamp)."""
    x, sigma = _check_images(images), _check_severity(sigma, "gaussian_noise")
    return x + sigma * torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)


def _pixels(value: float) -> int:
    """`value` rounded half up to whole pixels (monotone, unlike Python's round-half-to-even)."""
    return int(math.floor(value + 0.5))


def _box_side(side, name: str, h: int, w: int) -> int:
    side = _check_severity(side, name)
    if side > min(h, w):
        raise CoupledError(f"severity of '{name}' is the box side in pixels, at most the image side {min(h, w)}, "
                           f"got {side:g}; pass e.g. {_example(name)}")
    return _pixels(side)


def _box_corners(n: int, h: int, w: int, side: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """Each item's box corner (top, left), uniform so that the `side` box lies fully inside the h x w image:
    the n rows are drawn from `generator` first, then the n columns."""
    top = torch.randint(0, h - side + 1, (n,), generator=generator, device=generator.device).tolist()
    left = torch.randint(0, w - side + 1, (n,), generator=generator, device=generator.device).tolist()
    return list(zip(top, left))


def occlusion(images: torch.Tensor, side: float, generator: torch.Generator) -> torch.Tensor:
    """Set a square box of `side` pixels (rounded half up; 0 <= side <= the image side) of each image of
    `images` [N, C, H, W], in all channels, to the background value -1. The box lies fully inside the image;
    its top-left corner is uniform over the H - side + 1 rows and W - side + 1 columns, drawn from `generator`.
    The rest is left bit-exact. A box of the image's side covers it all."""
    x = _check_images(images)
    n, _, h, w = x.shape
    side = _box_side(side, "occlusion", h, w)
    out = x.clone()
    for i, (r, q) in enumerate(_box_corners(n, h, w, side, generator)):
        out[i, :, r : r + side, q : q + side] = -1.0
    return out


def occlusion_noise(images: torch.Tensor, side: float, generator: torch.Generator) -> torch.Tensor:
    """`occlusion`'s box (the same position for the same generator state) filled with noise uniform in
    [-1, 1], independent per value, drawn from `generator` after the position."""
    x = _check_images(images)
    n, c, h, w = x.shape
    side = _box_side(side, "occlusion_noise", h, w)
    corners = _box_corners(n, h, w, side, generator)
    fill = (torch.rand((n, c, side, side), generator=generator, device=generator.device) * 2 - 1).to(x.device)
    out = x.clone()
    for i, (r, q) in enumerate(corners):
        out[i, :, r : r + side, q : q + side] = fill[i]
    return out


def downsample(images: torch.Tensor, factor: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Average `images` [N, C, H, W] over areas down to round(H / `factor`) x round(W / `factor`) pixels
    (rounded half up; adaptive average pooling, `F.interpolate(mode="area")`), then back up to H x W by nearest
    neighbour ("nearest-exact": each fine pixel takes the coarse pixel its centre falls in). `factor` >= 1, at
    most the image side; 1 returns the input. Nearest rather than bilinear: the result holds the coarse
    measurement exactly, as blocks, and invents nothing between them (bilinear would add a second, smooth
    blur, close to `gaussian_blur`); both keep a constant image constant. Deterministic: `generator` is unused."""
    x = _check_images(images)
    f = _check_severity(factor, "downsample")
    h, w = x.shape[-2:]
    if f < 1 or f > min(h, w):
        raise CoupledError(f"severity of 'downsample' is the factor, >= 1 and at most the image side {min(h, w)}, "
                           f"got {f:g}; pass e.g. {_example('downsample')}")
    small = F.interpolate(x, size=(_pixels(h / f), _pixels(w / f)), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


# ---------------------------------------------------------------------------------------------- registry
def register_corruption(name: str, *, overwrite: bool = False) -> Callable[[Corruption], Corruption]:
    """Decorator adding a corruption `(images, severity, generator) -> Tensor` to `CORRUPTIONS` under `name`.
    Re-using a registered `name` is an error unless `overwrite=True`. Returns the function unchanged."""
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise CoupledError(f"corruption name must be a non-empty string without ':', got {name!r}; ':' is reserved for 'module.path:function' specs")

    def deco(fn: Corruption) -> Corruption:
        if not callable(fn):
            raise CoupledError(f"register_corruption('{name}') decorates a function, got {type(fn).__name__}; put it above a def")
        if name in CORRUPTIONS and not overwrite:
            raise CoupledError(f"corruption '{name}' is already registered; pick another name or pass overwrite=True")
        CORRUPTIONS[name] = fn
        return fn

    return deco


for _fn in (pixel_noise, gaussian_blur, gaussian_noise, occlusion, occlusion_noise, downsample):
    register_corruption(_fn.__name__)(_fn)


def get_corruption(name: str) -> Corruption:
    """The registered corruption called `name`; unknown names raise a CoupledError listing the valid ones."""
    if name not in CORRUPTIONS:
        raise CoupledError(f"unknown corruption {name!r}; choose one of: {', '.join(sorted(CORRUPTIONS))}")
    return CORRUPTIONS[name]


def corruption_from_config(spec: str) -> Corruption:
    """Resolve a config entry `spec`: a registered name (e.g. "pixel_noise") or "module.path:function" naming
    a user's corruption, which is imported with importlib."""
    if not isinstance(spec, str):
        raise CoupledError(f"corruption must be a name or 'module.path:function' string, got {type(spec).__name__}; e.g. corruption: pixel_noise")
    if ":" not in spec:
        if spec not in CORRUPTIONS:
            raise CoupledError(f"unknown corruption {spec!r}; choose one of: {', '.join(sorted(CORRUPTIONS))}, or give 'module.path:function'")
        return CORRUPTIONS[spec]
    fn = import_object(spec, f"corruption {spec!r}", "function")
    if not callable(fn):
        raise CoupledError(f"{spec!r} is a {type(fn).__name__}, not a function; point it at a corruption (images, severity, generator) -> Tensor")
    return fn


# ---------------------------------------------------------------------------------------------- data sets
def corrupt(images: torch.Tensor, name: str, severity: float, seed: int, *, first_index: int = 0,
            item_seeds=None) -> torch.Tensor:
    """Corrupt the data set slice `images` [N, C, H, W] with corruption `name` (registered name or
    "module.path:function") at `severity`. Item i uses its own generator, the "corruption" stream of (`seed`,
    `first_index` + i) of `coupled.seeds`, so corrupting a data set in one call or in batches (passing each
    batch's `first_index`) gives identical results; `item_seeds` (one per item) replaces those seeds.
    Returns float32 of the input's shape."""
    fn = corruption_from_config(name)
    x = _check_images(images)
    _check_severity(severity, name)
    return corrupt_items(fn, x, name, severity, seed, first_index, item_seeds=item_seeds)
