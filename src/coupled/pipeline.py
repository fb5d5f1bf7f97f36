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

import numbers
from pathlib import Path

import numpy as np
import torch

from . import seeds as seeding
from .engine import METHODS, item_generators, readouts, run_method
from .errors import CoupledError
from .ranges import parse_input_range, to_model_range
from .schema import SEED_MAX

READOUTS = ("classifier", "logits")


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
        """Load `folder` (written by `coupled train`; a relative one not in the current directory is read from the
        project home, `coupled.home`, as the commands do); pass `classifier` to use your own module instead of ours."""
        from .bundle import load_bundle
        from .home import find

        dev = _device(device)  # before the weights are read
        folder = find(folder, "checkpoint folder", "pass a folder written by `coupled train`")
        _check_bundle_files(folder, sampling)
        return cls(load_bundle(folder, sampling=sampling, classifier=classifier), dev)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        from .domains.registry import get_domain

        return get_domain(self.bundle.domain).signal_shape(self.bundle.coupling.signal_denoiser.net)

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
        coupling, engine_method, opts = self.bundle.prepare(method, {**self.bundle.sampling.get("methods", {}).get(method, {}), **options})
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


def classify_files(files, checkpoint, *, corruption=None, severity=None, method="parallel", seed=0, input_range=None,
                   polarity="auto", out=print, note=None, device=None, readout=None, options=None) -> int:
    """Print one line per input item (its file, predicted class and `p`, or the file's problem) under a `#` header
    line that says what `p` is (`probability_meaning`: for most methods the frozen classifier's softmax
    probability of the printed class on the enhanced input); returns the number of failures.

    Files are read by the bundle's domain (`Domain.read_input`: for images a PNG/JPEG, or a .npy batch giving one
    line per item, named `file[i]`, and the `polarity` the networks expect; notes go to `note`, default stderr).
    Each item's draws come from `seed` and the item itself, so an item gets the same line whatever the other
    files and their order; so does `--corruption`, whose noise is the "corruption" stream of (seed, the clean
    item's content). `device`: where the networks run ('cpu', 'cuda', 'cuda:N', 'mps'; None or 'auto': CUDA
    when present). `readout` and `options`: a picks file's choice for the method (`coupled classify --picks`)."""
    import sys

    from .bundle import checkpoint_domain

    domain = checkpoint_domain(checkpoint)
    note = note or (lambda text: print(text, file=sys.stderr))
    if (corruption is None) != (severity is None):
        raise CoupledError("pass --corruption and --severity together (or neither)")
    if corruption is not None:  # a registered name or a user's "module.path:function"
        domain.corruption(corruption)
    check_seed(seed, "--seed")
    parse_input_range(input_range)
    pipe = CoupledPipeline.from_pretrained(checkpoint, device=None if device in (None, "auto") else device)
    items, names, failures = [], [], 0
    for f in files:
        try:
            read = domain.read_input(f, pipe.image_shape, input_range, polarity=polarity, note=note)
        except CoupledError as e:
            out(f"{f}\terror: {e}")
            failures += 1
            continue
        items.extend(read)
        names.extend(f"{f}[{i}]" if len(read) > 1 else str(f) for i in range(len(read)))
    if items:
        batch = torch.stack(items)
        if corruption is not None:  # keyed by each item's content, like the sampling: the order of files does not matter
            batch = domain.corrupt_set(batch, corruption, severity, seed,
                                       item_seeds=seeding.content_seeds("corruption", seed, batch))
        # the domain's reader converted every file; a picks file's readout and options ride along
        res = pipe(batch, method, seed=seed, input_range="-1..1", readout=readout, **(options or {}))
        out(f"# file\tclass\tp = {probability_meaning(method)}, for the printed class ({method}, seed {seed})")
        for name, pred, probs in zip(names, res["predictions"], res["probabilities"]):
            out(f"{name}\t{int(pred)}\tp={float(probs[pred]):.3f}\t({method})")
    return failures
