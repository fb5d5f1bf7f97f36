"""A user's image files for `coupled classify` and the pipeline: PNG/JPEG, or .npy of one image or a batch, as
[N, C, H, W] in [-1, 1], with every problem a one-line CoupledError naming the file; and the polarity MNIST-style
networks expect (light ink on a dark background)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import CoupledError
from ...ranges import fmt, parse_input_range

MAX_FILE_BYTES = 64 * 2**20  # a file to classify is one small image; anything larger is refused unread
POLARITIES = ("auto", "as-is", "invert")


def _npy_header(path: Path):
    """(shape, dtype) from a .npy header, read without loading the data."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    return shape, dtype


def _fits(shape, expected) -> bool:
    c, h, w = expected
    return tuple(shape) in {(c, h, w), (h, w, c)} or (c == 1 and tuple(shape) in {(h, w), (1, h, w)})


def _pixels(im, channels: int) -> np.ndarray:
    """A decoded PIL image as [H, W] (1 channel) or [H, W, 3] floats in [-1, 1]. Transparency is composited onto
    black, the digits' background; a 1-channel read of an image whose visible pixels share one colour (ink
    drawn in the alpha channel only, as drawing apps save it) takes the alpha as the ink."""
    if not (im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)):
        return np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 127.5 - 1
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255
    alpha = rgba[..., 3]
    if channels == 3:
        return rgba[..., :3] * alpha[..., None] * 2 - 1
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2 luma, as PIL's "L"
    visible = grey[alpha > 0]
    ink = alpha if visible.size and float(visible.max() - visible.min()) < 0.1 else grey * alpha
    return ink * 2 - 1


def _layout(arr: np.ndarray, path: Path, shape) -> np.ndarray:
    """One image as [C, H, W]: [H, W] gains its channel axis, [H, W, C] is transposed."""
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    if tuple(arr.shape) != tuple(shape):
        raise CoupledError(f"{path}: shape {tuple(arr.shape)} but the checkpoint expects {tuple(shape)} (C, H, W); resize it")
    return arr


def read_images(path, shape: tuple[int, int, int], input_range=None) -> torch.Tensor:
    """A PNG/JPEG file, or a .npy file of one image or a batch [N, ...] of them, as an [N, C, H, W] tensor in
    [-1, 1]; CoupledError naming the file on any problem.

    Size and shape are checked before decoding. `.npy` ranges: uint8 is 0..255; floats are 0..1 (all values
    >= 0) or -1..1 unless `input_range` ('0..255', '0..1', '-1..1', 'LO..HI') says otherwise. A PNG with
    transparency is composited onto black (`_pixels`)."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CoupledError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} a single file may have; pass images of shape {shape}")
    declared = parse_input_range(input_range)
    if path.suffix.lower() == ".npy":
        try:
            header_shape, dtype = _npy_header(path)
        except (ValueError, OSError, SyntaxError, EOFError) as e:
            raise CoupledError(f"{path}: not a readable .npy array ({str(e).splitlines()[0][:80] if str(e) else type(e).__name__})") from None
        batch = not _fits(header_shape, shape) and len(header_shape) >= 3 and header_shape[0] >= 1 and _fits(header_shape[1:], shape)
        if not _fits(header_shape, shape) and not batch:
            raise CoupledError(f"{path}: shape {tuple(header_shape)} but the checkpoint expects {tuple(shape)} (C, H, W), or a "
                               f"batch (N, {', '.join(map(str, shape))}); resize it")
        if dtype.hasobject or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise CoupledError(f"{path}: unsupported dtype {dtype}; save uint8 0..255 or floats in [0, 1]")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise CoupledError(f"{path}: not a readable .npy array ({str(e).splitlines()[0][:80]})") from None
        if declared is None:
            if arr.dtype == np.uint8:
                declared = (0.0, 255.0)
            elif not np.issubdtype(arr.dtype, np.floating):
                raise CoupledError(f"{path}: integer dtype {arr.dtype}; pass --input-range (e.g. 0..255) to say its range")
            elif arr.size and float(arr.min()) >= 0:
                if float(arr.max()) > 1:
                    raise CoupledError(f"{path}: values in [{fmt(float(arr.min()))}, {fmt(float(arr.max()))}] but float "
                                       ".npy files must be in 0..1 or -1..1; pass --input-range 0..255 (or the range they use)")
                declared = (0.0, 1.0)
            else:
                declared = (-1.0, 1.0)
        if not np.isfinite(arr.astype(np.float64)).all():
            raise CoupledError(f"{path}: contains NaN or infinite values")
        arr = arr.astype(np.float32)
        lo, hi = declared
        mean = float(arr.mean())
        if not lo - 0.05 * (hi - lo) <= mean <= hi + 0.05 * (hi - lo):
            raise CoupledError(f"{path}: values in [{fmt(float(arr.min()))}, {fmt(float(arr.max()))}] do not fit the "
                               f"range [{fmt(lo)}, {fmt(hi)}]; pass --input-range with their range")
        arr = (arr - lo) * (2.0 / (hi - lo)) - 1.0
        items = list(arr) if batch else [arr]
    else:
        from PIL import Image, UnidentifiedImageError

        want = f"{shape[2]}x{shape[1]}"
        try:
            with Image.open(path) as im:  # reads the header only
                size = im.size
                if size == (shape[2], shape[1]):  # only then decode: a huge image is never decompressed
                    items = [_pixels(im, shape[0])]
        except Image.DecompressionBombError:
            raise CoupledError(f"{path}: its header declares more pixels than Pillow decodes safely (a decompression "
                               f"bomb); the checkpoint expects {want} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise CoupledError(f"{path}: not a readable image ({type(e).__name__})") from None
        if size != (shape[2], shape[1]):
            raise CoupledError(f"{path}: {size[0]}x{size[1]} pixels but the checkpoint expects {tuple(shape)} (C, H, W); resize it")
    arr = np.stack([_layout(a, path, shape) for a in items])
    if not np.isfinite(arr).all():
        raise CoupledError(f"{path}: contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr))


def light_background(image: torch.Tensor) -> float | None:
    """The mean of a 1-channel image's two-pixel border in [-1, 1] when it is light (> 0: dark ink on a light
    background, the reverse of MNIST's light digits on black), else None."""
    if image.shape[0] != 1 or min(image.shape[1:]) <= 4:
        return None
    ring = torch.ones(image.shape[1:], dtype=torch.bool)
    ring[2:-2, 2:-2] = False
    mean = float(image[0][ring].mean())
    return mean if mean > 0 else None


def read_for_classify(path, shape, input_range=None, polarity: str = "auto", note=print) -> torch.Tensor:
    """`read_images`, then the polarity: the networks read light ink on a dark background (MNIST); "auto" flips a
    1-channel image whose border is light and says so through `note`, "invert" flips every image, "as-is" none."""
    if polarity not in POLARITIES:
        raise CoupledError(f"unknown polarity {polarity!r}; choose one of: {', '.join(POLARITIES)}")
    images = read_images(path, shape, input_range)
    out = []
    for i, image in enumerate(images):
        light = light_background(image) if polarity == "auto" else None
        if polarity == "invert" or light is not None:
            image = -image
        if light is not None:
            name = f"{path}[{i}]" if len(images) > 1 else str(path)
            note(f"{name}: light border (mean {light:.2f} in [-1, 1]): read as dark ink on white and inverted to the "
                 "light-on-dark digits the model knows; pass --polarity as-is to keep it")
        out.append(image)
    return torch.stack(out)
