"""One call for users: load a checkpoint folder and classify (possibly degraded) images with any method.

Inputs are checked before any work: type, shape, finiteness and value range (a 0..255 image passed as if it
were in [-1, 1] is refused with the range seen, not classified confidently wrong); `input_range=` converts
0..255, 0..1 or any (lo, hi) to the [-1, 1] the networks were trained on. Files are checked for size and
shape before they are decoded. Large batches run in chunks of `batch_size` items.

Seeding: each image draws its sampling noise from its own generator, seeded by the call's `seed` and the image
itself (`coupled.seeds.content_seeds("sampling", seed, images)`: a hash of its float32 values after conversion
to [-1, 1]), never by its position. An image gets the same answer whatever else is in the call, in any order
and with any `batch_size`; the same image twice gets the same draws. Pass `item_seeds=[...]` (one per item) to
choose each item's seed instead.

This is not how `coupled evaluate` seeds a split: there item i draws the "sampling" stream of (seed, i), its
index in the split (`coupled.seeds.item_seeds`), which is fixed, so `pipe(split, seed=s)` gives the same
accuracy within sampling noise as `--seeds s` but not item for item. To reproduce an evaluation's draws,
pass `item_seeds=coupled.seeds.item_seeds("sampling", s, 0, len(split))`.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
import torch

from . import seeds as seeding
from .engine import METHODS, check_finite, item_generators, readouts, run_method
from .errors import CoupledError
from .schema import SEED_MAX

MAX_FILE_BYTES = 64 * 2**20  # a file to classify is one small image; anything larger is refused unread
NAMED_RANGES = {"0..255": (0.0, 255.0), "0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0)}
READOUTS = ("classifier", "logits")
POLARITIES = ("auto", "as-is", "invert")


def parse_input_range(spec) -> tuple[float, float] | None:
    """None, '0..255', '0..1', '-1..1', 'LO..HI' or a pair (lo, hi) with lo < hi -> (lo, hi)."""
    if spec is None:
        return None
    pair = spec
    if isinstance(spec, str):
        lo, sep, hi = spec.strip().partition("..")
        try:
            pair = (float(lo), float(hi)) if sep else None
        except ValueError:
            pair = None
    ok = (isinstance(pair, (tuple, list)) and len(pair) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
          and pair[0] < pair[1])
    if not ok:
        raise CoupledError(f"input_range must be one of {', '.join(NAMED_RANGES)} or a pair (lo, hi) with lo < hi, got {spec!r}")
    return float(pair[0]), float(pair[1])


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def to_model_range(x: torch.Tensor, input_range=None, what: str = "images") -> torch.Tensor:
    """Float images in [-1, 1] from `x` in its declared range; CoupledError naming the range seen when the
    values cannot be in the declared one (an item's mean outside it, or an undeclared 0..255 / 0..1 image)."""
    declared = parse_input_range(input_range)
    if x.dtype == torch.bool or x.is_complex():
        raise CoupledError(f"{what} have dtype {x.dtype}; pass real-valued images")
    if not x.is_floating_point() and declared is None:
        raise CoupledError(f"{what} are integers ({x.dtype}); pass input_range='0..255' (or the range they use) to convert them")
    x = x.float()
    check_finite(x, what)
    lo, hi = declared or (-1.0, 1.0)
    seen = f"[{_fmt(float(x.min()))}, {_fmt(float(x.max()))}]"
    want = f"[{_fmt(lo)}, {_fmt(hi)}]"
    margin = 0.05 * (hi - lo)  # degradations (additive noise) spread values outside the range, not their mean
    means = x.flatten(1).mean(1)
    if bool(((means < lo - margin) | (means > hi + margin)).any()):
        hint = "0..255" if float(x.min()) >= 0 and float(x.max()) > 2 else None
        fix = f"pass input_range='{hint}'" if hint else "pass input_range=(lo, hi) with their range"
        raise CoupledError(f"{what} hold values in {seen} but the expected range is {want}; {fix} to convert them")
    if declared is None and float(x.min()) >= 0 and float(x.max()) <= 1:
        raise CoupledError(f"{what} hold values in {seen}, which looks like 0..1, but the expected range is [-1, 1]; "
                           "pass input_range='0..1' to convert them (or input_range='-1..1' if they are in [-1, 1])")
    return x if declared is None else (x - lo) * (2.0 / (hi - lo)) - 1.0


def check_seed(seed, what: str = "seed", maximum: int = SEED_MAX) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= maximum:
        raise CoupledError(f"{what} must be an integer in [0, {maximum}], got {seed!r}")
    return int(seed)


def _device(device) -> torch.device:
    from .bundle import default_device

    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise CoupledError(f"unknown device {device!r} ({str(e).splitlines()[0][:80]}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CoupledError(f"device {device!r} but this machine has no CUDA device; use device='cpu' (or leave it out)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CoupledError(f"device {device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise CoupledError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def _check_bundle_files(folder, sampling) -> None:
    """The settings a bundle's JSON files hold, checked before any network is built (one line per problem)."""
    from .schema import check_sampling
    from .checkpoint import read_json

    folder = Path(folder)
    if not folder.is_dir():
        raise CoupledError(f"no such checkpoint folder: {folder}; pass a folder written by `coupled train`")
    if sampling is not None:
        check_sampling(sampling, "sampling=")
    elif (folder / "pipeline.json").is_file():
        check_sampling(read_json(folder / "pipeline.json").get("sampling"), str(folder / "pipeline.json"))
    for name in ("pipeline", "classifier"):
        path = folder / f"{name}.json"
        scale = read_json(path).get("logit_scale", 0.8) if path.is_file() else 0.8
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale < 100:
            raise CoupledError(f"{path}: logit_scale must be a number in (0, 100), got {scale!r}; re-create it with `coupled train`")


class CoupledPipeline:
    """A frozen classifier with its signal and logit denoisers, ready to run any method.

    `CoupledPipeline.from_pretrained(DIR)` reads weights and configs from a checkpoint folder (no flags to
    retype); `pipe(images, method="parallel")` returns a dict with `predictions` [B], `probabilities`
    [B, K] and `enhanced` images [B, C, H, W] (None for methods without a signal chain). Global torch state
    (grad mode, threads, default dtype) is left as it was.
    """

    def __init__(self, bundle, device=None):
        self.device = _device(device)
        self.bundle = bundle.to(self.device)

    @classmethod
    def from_pretrained(cls, folder, *, classifier: torch.nn.Module | None = None, device=None, sampling: dict | None = None):
        """Load `folder` (written by `coupled train`); pass `classifier` to use your own module instead of ours."""
        from .bundle import load_bundle

        dev = _device(device)  # before the weights are read
        _check_bundle_files(folder, sampling)
        return cls(load_bundle(folder, sampling=sampling, classifier=classifier), dev)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        from .domains.registry import get_domain

        return get_domain(self.bundle.domain).signal_shape(self.bundle.coupling.signal_denoiser.net)

    def _prepare(self, method: str, options: dict):
        # the bundle's method preparation (`prepare` in newer bundles, `for_method` before)
        if hasattr(self.bundle, "prepare"):
            return self.bundle.prepare(method, options)
        coupling, opts = self.bundle.for_method(options)
        return coupling, method, opts

    @torch.no_grad()
    def __call__(self, images, method: str = "parallel", *, seed: int = 0, readout: str | None = None,
                 input_range=None, batch_size: int = 256, item_seeds=None, **options):
        """Classify `images` [B, C, H, W] (or one image [C, H, W]) with `method`.

        Args:
            images: a tensor or numpy array, in [-1, 1] unless `input_range` says otherwise.
            method: one of the engine's methods (parallel, alternating, nested, sequential, logits_only, noisy).
            seed: each image's generator is seeded from `seed` and the image's content (see the module docstring).
            readout: 'classifier' (f of the enhanced signal) or 'logits' (the logit chain's y_hat); default
                'classifier' where a signal chain exists, else 'logits'.
            input_range: '0..255', '0..1', '-1..1' or (lo, hi): the images' range, converted to [-1, 1].
            batch_size: items per chunk (memory grows with it; results do not depend on it).
            item_seeds: one generator seed per item (integers in [0, 2**64 - 1]) instead of the seeds derived
                from `seed` and the images.
            **options: the method's own options (e.g. switch_fraction, rounds).

        Returns a dict: `predictions` [B], `probabilities` [B, K] (under the default readout, what
        `probability_meaning(method)` says: the frozen classifier's softmax on the enhanced input; its average
        over the K trajectories for sequential_ensemble; with readout='logits', the softmax of y_hat),
        `enhanced` [B, C, H, W] or None, and `calls` (network calls per item).
        """
        if method not in METHODS:
            raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        if readout is not None and readout not in READOUTS:
            raise CoupledError(f"unknown readout {readout!r}; choose 'classifier' or 'logits'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise CoupledError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(images, (torch.Tensor, np.ndarray)):
            raise CoupledError(f"images must be a torch.Tensor or numpy array [B, C, H, W], got {type(images).__name__}")
        images = torch.as_tensor(images)
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise CoupledError(
                f"images have shape {tuple(images.shape)} but the checkpoint expects [B, {', '.join(map(str, self.image_shape))}]; resize them first"
            )
        if images.shape[0] == 0:
            raise CoupledError("images is an empty batch; pass at least one image")
        images = to_model_range(images, input_range)
        n = images.shape[0]
        if item_seeds is None:
            seed = check_seed(seed)
            seeds = seeding.content_seeds("sampling", seed, images)
        else:
            seeds = [check_seed(s, "each of item_seeds", seeding.GENERATOR_SEED_MAX) for s in item_seeds]
            if len(seeds) != n:
                raise CoupledError(f"item_seeds has {len(seeds)} seeds for {n} images; pass one per image")
        coupling, engine_method, opts = self._prepare(method, {**self.bundle.sampling.get("methods", {}).get(method, {}), **options})
        preds, probs, enhanced, calls = [], [], [], None
        for start in range(0, n, int(batch_size)):
            chunk = images[start:start + batch_size].to(self.device)
            res = run_method(engine_method, coupling, chunk, item_generators(seeds[start:start + batch_size]), **opts)
            read = readout or ("classifier" if res.x_hat is not None or res.y_hat is None else "logits")
            if read == "logits" and res.y_hat is None:
                raise CoupledError(f"method {method!r} has no logit chain; use readout='classifier'")
            if read == "classifier" and engine_method == "sequential_ensemble":
                p = torch.softmax(res.classifier_logits, dim=-1)  # its logits are log(mean_k softmax f(x_hat_k))
            elif read == "classifier":
                z = res.x_hat if res.x_hat is not None else chunk
                p = torch.softmax(coupling.classifier.raw(z), dim=-1)
            else:
                p = torch.softmax(res.y_hat, dim=-1)
            preds.append(res.prediction(read).cpu())
            probs.append(p.cpu())
            enhanced.append(None if res.x_hat is None else res.x_hat.cpu())
            calls = calls or res.calls
        return {"predictions": torch.cat(preds), "probabilities": torch.cat(probs),
                "enhanced": None if enhanced[0] is None else torch.cat(enhanced), "calls": calls}


def probability_meaning(method: str) -> str:
    """What `pipe(images, method)["probabilities"]` hold under the method's default readout, in words (the `p`
    that `coupled classify` prints)."""
    if method == "sequential_ensemble":
        return "the frozen classifier's softmax probabilities on the K enhanced trajectories, averaged"
    if method == "noisy":
        return "the frozen classifier's softmax probability on the input itself (no enhancement)"
    if "classifier" not in readouts(method):
        return "the softmax of the logit chain's final logits y_hat (standardised logits: a score, not the classifier's probability)"
    return "the frozen classifier's softmax probability on the enhanced input x_hat"


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


def read_image_file(path, shape: tuple[int, int, int], input_range=None) -> torch.Tensor:
    """One PNG/JPEG/.npy file as a [C, H, W] tensor in [-1, 1]; CoupledError naming the file on any problem
    (a .npy batch included: `read_images` reads those)."""
    images = read_images(path, shape, input_range)
    if len(images) != 1:
        raise CoupledError(f"{path}: holds {len(images)} images; read it with read_images, or save one image per file")
    return images[0]


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
                    raise CoupledError(f"{path}: values in [{_fmt(float(arr.min()))}, {_fmt(float(arr.max()))}] but float "
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
            raise CoupledError(f"{path}: values in [{_fmt(float(arr.min()))}, {_fmt(float(arr.max()))}] do not fit the "
                               f"range [{_fmt(lo)}, {_fmt(hi)}]; pass --input-range with their range")
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


def classify_files(files, checkpoint, *, corruption=None, severity=None, method="parallel", seed=0, input_range=None,
                   polarity="auto", out=print, note=None) -> int:
    """Print one line per image (its file, predicted class and `p`, or the file's problem) under a `#` header
    line that says what `p` is (`probability_meaning`: for most methods the frozen classifier's softmax
    probability of the printed class on the enhanced input); returns the number of failures.

    Each image's draws come from `seed` and the image itself (after `polarity`), so an image gets the same line
    whatever the other files and their order; so does `--corruption`, whose noise is the "corruption" stream of
    (seed, the clean image's content). A .npy batch gives one line per item, named `file[i]`. `polarity`: the
    networks read light ink on a dark background (MNIST); "auto" flips a 1-channel image whose border is light
    and says so through `note` (default: stderr), "invert" flips every image, "as-is" none."""
    import sys

    from .domains.image.corruptions import corrupt, corruption_from_config

    if polarity not in POLARITIES:
        raise CoupledError(f"unknown polarity {polarity!r}; choose one of: {', '.join(POLARITIES)}")
    note = note or (lambda text: print(text, file=sys.stderr))
    if (corruption is None) != (severity is None):
        raise CoupledError("pass --corruption and --severity together (or neither)")
    if corruption is not None:  # a registered name or a user's "module.path:function"
        corruption_from_config(corruption)
    check_seed(seed, "--seed")
    parse_input_range(input_range)
    pipe = CoupledPipeline.from_pretrained(checkpoint)
    images, names, failures = [], [], 0
    for f in files:
        try:
            read = read_images(f, pipe.image_shape, input_range)
        except CoupledError as e:
            out(f"{f}\terror: {e}")
            failures += 1
            continue
        for i, image in enumerate(read):
            name = f"{f}[{i}]" if len(read) > 1 else str(f)
            light = light_background(image) if polarity == "auto" else None
            if polarity == "invert" or light is not None:
                image = -image
            if light is not None:
                note(f"{name}: light border (mean {light:.2f} in [-1, 1]): read as dark ink on white and inverted to the "
                     "light-on-dark digits the model knows; pass --polarity as-is to keep it")
            images.append(image)
            names.append(name)
    if images:
        batch = torch.stack(images)
        if corruption is not None:  # keyed by each image's content, like the sampling: the order of files does not matter
            batch = corrupt(batch, corruption, severity, seed, item_seeds=seeding.content_seeds("corruption", seed, batch))
        res = pipe(batch, method, seed=seed, input_range="-1..1")  # read_images converted every file
        out(f"# file\tclass\tp = {probability_meaning(method)}, for the printed class ({method}, seed {seed})")
        for name, pred, probs in zip(names, res["predictions"], res["probabilities"]):
            out(f"{name}\t{int(pred)}\tp={float(probs[pred]):.3f}\t({method})")
    return failures
