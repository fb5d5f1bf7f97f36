"""The `Domain` interface and the registry of domains.

A domain is one folder (or module) that describes its signals to the rest of the library and registers
itself with `register_domain`: its data splits, its corruptions (a `Registry` that refuses duplicates and
names the valid entries), its networks by role (`classifier`, `signal`, `logits`) and architecture name, its
signal metrics, the readout of logits into answers and the task score, example panels for the report and
how a user's input file is read. Training, evaluation, the config and the CLI ask `get_domain(name)` for it
(a config's `domain:` key, default `image`) instead of importing a domain.

The built-in domains (every package under `coupled/domains/` with a `domain.py`, and every other module there but
this one: image, speech, gaussian, gmm, ecg) register themselves when the registry is first asked; a
user's domain registers when its module is imported, which a config may ask for with
`domain: my_pkg.my_domain:DOMAIN` (the module is imported and the object registered under its `name`).

Signals of a domain that uses the generic pipeline are float tensors [N, ...] in [-1, 1] (the signal
denoiser's output is clipped to that range), zero-padded along their last axis with `lengths` when they differ
in length. Labels are class indices and the classifier gives [B, K] logits, unless the domain says otherwise:
its `readout` turns logits (e.g. frame logits [B, T, K]) into answers, `item_scores` scores them and
`classifier_loss` trains the classifier on them.
"""

from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..defaults import DEFAULT_DOMAIN, DEFAULTS, FREE_FORM
from ..errors import CoupledError
from ..imports import import_object
from ..scores import get_metric

__all__ = ["Domain", "Registry", "LabelledSignals", "register_domain", "get_domain", "domain_names", "domain_of",
           "domain_spec",
           "check_num_classes", "corrupt_items", "net_builder"]

# the domains shipped with the library are found on the registry's first use (`_builtin_modules`): a new domain
# folder with a `domain.py` needs no edit here; these are imported first and listed first, in this order
_BUILTIN_ORDER = ("image", "speech", "gaussian", "gmm")
_BUILTIN_PACKAGES: list[str] = []  # the built-in domains' modules or packages, in listing order
_DOMAINS: dict[str, "Domain"] = {}
_SPECS: dict[str, str] = {}  # name -> "module.path:OBJECT" of a domain a config named by module (a plug-in)
_loaded = False


class Registry(dict):
    """name -> entry (a corruption, a network builder, ...); a duplicate name is an error, an unknown one names
    the valid ones. `what` is how the errors call an entry, e.g. "speech degradation"."""

    def __init__(self, what: str = "entry", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.what = what

    def register(self, name: str, fn=None):
        """Add `fn` under `name` (or use as a decorator: `@registry.register("name")`)."""

        def add(f):
            if name in self:
                raise CoupledError(f"a {self.what} named '{name}' is already registered; pick another name")
            self[name] = f
            return f

        return add(fn) if fn is not None else add

    def __getitem__(self, name):
        if name not in self:
            raise CoupledError(f"unknown {self.what} '{name}'; valid: {', '.join(sorted(self))}")
        return super().__getitem__(name)

    def names(self) -> list[str]:
        return sorted(self)


@dataclass(frozen=True)
class LabelledSignals:
    """A labelled split of a domain's signals: `signals` float32 [N, ...], `labels` (int64 [N] class indices,
    or a list of N answers of any kind, e.g. transcripts), the data set's `num_classes` (not only those
    present here) and a short `name` for logs and reports. Signals of different lengths are zero-padded along
    their last axis, with `lengths` [N] their valid extent there; `task` names what the labels are when the
    domain has several tasks (its `task_metric` and `item_scores` read it); `ids` seed each item's corruption
    when they are not its position."""

    signals: "torch.Tensor"  # noqa: F821
    labels: object
    num_classes: int
    name: str
    lengths: "torch.Tensor | None" = None  # noqa: F821
    task: str | None = None
    # each item's index for seeding its corruption (None: its position): a split drawn from a larger list
    # (one task of a mixed corpus) keeps the degraded items of the whole
    ids: "torch.Tensor | None" = None  # noqa: F821

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "LabelledSignals":
        """The items at `indices` (ints) as a new split."""
        import torch

        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices).reshape(-1)
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < -len(self) or idx.max() >= len(self)):
            raise CoupledError(f"subset indices must be integers in [0, {len(self)}) for {self.name}; pass valid indices")
        idx = torch.from_numpy(idx.astype(np.int64))
        labels = self.labels[idx] if torch.is_tensor(self.labels) else [self.labels[int(i)] for i in idx]
        lengths = None if self.lengths is None else self.lengths[idx]
        ids = None if self.ids is None else self.ids[idx]
        return LabelledSignals(self.signals[idx], labels, self.num_classes, self.name, lengths, self.task, ids)


def net_builder(net_cls, cfg_cls) -> Callable:
    """A `Domain.networks` entry for a net built from a frozen config dataclass: config dict ->
    `net_cls(cfg_cls.from_dict(config))`, with `net_class` kept for `Domain.arch_of`'s isinstance checks."""

    def build(config: dict):
        return net_cls(cfg_cls.from_dict(config))

    build.net_class = net_cls
    return build


def check_num_classes(data, num_classes: int) -> None:
    """Raise CoupledError unless a classifier with `num_classes` outputs can score every label of `data` (a split
    with `labels`, `num_classes` and `name`)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise CoupledError(f"num_classes must be a positive integer, got {num_classes!r}; pass the classifier's output count")
    import torch

    if not torch.is_tensor(data.labels):  # answers that are not class indices (transcripts): nothing to check
        return
    needed = max(data.num_classes, int(data.labels.max()) + 1 if len(data) else 0)
    if needed > num_classes:
        raise CoupledError(f"data set {data.name} has {needed} classes but the classifier outputs {num_classes}; "
                           f"pass a classifier with {needed} outputs or the matching data set")


def corrupt_items(fn: Callable, x, name: str, severity: float, seed: int, first_index: int = 0, lengths=None,
                  indices=None, *, item_seeds=None):
    """Apply corruption `fn` (signals, severity, generator) -> Tensor to each item of `x` [N, ...] with its own
    generator, `coupled.seeds.item_generator("corruption", seed, first_index + i)` (index `indices[i]` when given;
    or seeded by `item_seeds[i]`, e.g. `seeds.content_seeds("corruption", seed, x)`): the result does not depend
    on batching. With `lengths` [N] (a zero-padded split), each item is corrupted over its valid extent only and
    padded again. Float32 out."""
    import torch

    from ..seeds import item_generator

    for label, v in (("seed", seed), ("first_index", first_index)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise CoupledError(f"{label} must be a non-negative integer, got {v!r}; pass e.g. {label}=0")
    if item_seeds is not None and len(item_seeds) != x.shape[0]:
        raise CoupledError(f"item_seeds has {len(item_seeds)} seeds for {x.shape[0]} items; pass one per item")
    out = []
    for i in range(x.shape[0]):
        item = x[i : i + 1] if lengths is None else x[i : i + 1, ..., : int(lengths[i])]
        index = int(first_index) + i if indices is None else int(indices[i])
        g = (item_generator("corruption", int(seed), index, x.device) if item_seeds is None
             else torch.Generator(device=x.device).manual_seed(int(item_seeds[i])))
        y = fn(item, severity, g)
        if not isinstance(y, torch.Tensor) or y.shape != item.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise CoupledError(f"corruption {name!r} returned {got} for input shape {tuple(item.shape)}; return a tensor of the input's shape")
        y = y.to(torch.float32)
        if lengths is not None:
            y = torch.nn.functional.pad(y, (0, x.shape[-1] - y.shape[-1]))
        out.append(y)
    return torch.cat(out) if out else x.clone()


class Domain:
    """What the library needs to know about one kind of signal. Subclass it, set `name`, fill in what your
    domain has, and `register_domain(YourDomain())`.

    The generic pipeline (`coupled train / evaluate / reproduce` over classifier, signal and logit networks)
    needs: `load_splits`, `corruptions` (and `corruption` for "module:function" specs), `networks`,
    `signal_metrics` and `example_panel`; the rest has defaults. A domain with its own commands (speech)
    overrides `run_train`, `run_evaluate`, ... and lists what it serves in `commands`.
    """

    name: str = ""
    splits: tuple = ("train", "val", "test")
    # the `coupled` commands this domain serves (`run_<command>`); the generic pipeline's by default
    commands: tuple = ("train", "evaluate", "reproduce", "tune", "calibrate")
    # the config `coupled demo --domain NAME` reads when given none (a domain that serves "demo")
    demo_config: str | None = None
    # the config's `data` section: kind -> its allowed keys (None: the domain's `load_splits` checks it)
    data_kinds: dict | None = None
    # role -> architecture used when a checkpoint's JSON names none (checkpoints written before `arch` was saved)
    default_arch: dict = {}
    # the domain's own retrained references beside the library's (`methods.REFERENCE_METHODS`): name -> (the engine
    # method it runs, the network file of the bundle it runs with in place of the frozen classifier, the command that
    # trains that file), e.g. {"robust": ("noisy", "robust", "python train_robust.py --out FOLDER")};
    # `coupled evaluate --methods NAME` runs one when the bundle holds its file (`Bundle.reference_methods`)
    reference_methods: dict = {}
    # the network-config keys that fix the shape of a signal: every network of a bundle must agree on them
    shape_keys: tuple = ()
    # the range signals lie in: a signal denoiser's estimate is clipped to it (None: unbounded, e.g. a
    # spectrogram); recorded in the signal network's JSON by training
    signal_range: tuple | None = (-1.0, 1.0)
    # samples per second along a signal's last axis (None: not a time signal): costs are also reported per
    # second of signal
    samples_per_second: float | None = None
    # `coupled bench`'s settings, {"quick": {...}, "full": {...}} (None: `coupled.evaluation.bench.PROFILES`, the
    # image bundle's); the keys that bench's PROFILES document
    bench_profiles: dict | None = None

    # ---- config
    # config sections taken whole from the user (not merged key by key), checked by `check_config` or their consumers
    free_form: frozenset = frozenset(FREE_FORM)

    def config_defaults(self) -> dict:
        """The defaults a user's YAML is merged with (the generic pipeline's, `coupled.defaults.DEFAULTS`, with
        the domain's data and corruptions filled in)."""
        return DEFAULTS

    def check_config(self, cfg: dict) -> None:
        """The domain's own checks of a merged config, after the schema's (raise CoupledError in one line)."""

    # ---- data
    def load_splits(self, cfg: dict) -> dict:
        """{split name: labelled split} of a config (splits have `signals`, `labels`, `num_classes`, `name`,
        `subset(indices)` and `len`)."""
        raise CoupledError(f"the {self.name} domain has no data splits for the generic pipeline")

    def dataset_name(self, cfg: dict) -> str:
        """The data set's name in results.json."""
        return str(cfg.get("data", {}).get("kind", self.name))

    # ---- corruptions
    @property
    def corruptions(self) -> Registry:
        """name -> corruption (signals [N, ...], severity, generator) -> Tensor of the same shape."""
        return Registry(f"{self.name} corruption")

    def corruption(self, spec: str) -> Callable:
        """Resolve a config's corruption entry: a registered name or "module.path:function"."""
        if not isinstance(spec, str):
            raise CoupledError(f"corruption must be a name or 'module.path:function' string, got {type(spec).__name__}")
        if ":" in spec:
            fn = import_object(spec, f"corruption {spec!r}", "function")
            if not callable(fn):
                raise CoupledError(f"{spec!r} is a {type(fn).__name__}, not a function; point it at a corruption (signals, severity, generator) -> Tensor")
            return fn
        return self.corruptions[spec]

    def training_corruption(self, name: str, cfg: dict) -> Callable:
        """The corruption training draws for `name` of `corruptions.train_severity`, given the whole config (a
        domain whose corruptions need data, e.g. other recordings for babble, overrides this); default
        `corruption(name)`."""
        return self.corruption(name)

    def corrupt_set(self, signals, name: str, severity, seed: int, *, first_index: int = 0, lengths=None, indices=None,
                    item_seeds=None):
        """A whole split corrupted with `name` at `severity`, one generator per item from (seed, index) (the
        split's `ids` as `indices` when it has them, or `item_seeds`); with `lengths`, each item over its valid
        extent."""
        return corrupt_items(self.corruption(name), signals, name, severity, seed, first_index, lengths, indices,
                             item_seeds=item_seeds)

    def linear_measurement(self, name: str, severity, seed: int, data):
        """The corruption `name` at `severity` as a linear-Gaussian measurement of the split `data`, for the
        zero-shot posterior samplers: (an `engine.LinearOperator` over the split's items, with `.batch(i, j)`,
        and the noise std), such that a degraded item d is its measurement y = A x + n as the chains see it.
        `seed`: the corruption seed (an operator drawn per item, such as an occlusion box, is the one
        `corrupt_set` drew). A domain without one raises."""
        raise CoupledError(f"the {self.name} domain has no linear operator for corruption {name!r}; "
                           "zero-shot samplers need a linear-Gaussian degradation")

    def conditions(self, cfg: dict, split: str) -> dict:
        """What an evaluation sweeps: {corruption: {level label: severity}}; the config's severities (a
        severity is a number, or anything `corrupt_set` takes: a domain may sweep labelled conditions)."""
        return cfg["corruptions"]["severities"]

    def severity_value(self, severity) -> float:
        """The number a results row stores as `severity` (its plots' x axis)."""
        return float(severity)

    def condition_fields(self, severity) -> dict:
        """Extra fields of a results row that say what the condition was (speech: snr_db, rt60)."""
        return {}

    # ---- networks
    @property
    def networks(self) -> dict:
        """role ('classifier', 'signal', 'logits') -> {architecture name -> builder(config dict) -> nn.Module}.
        A built network keeps its config as `net.cfg` with `to_dict()`, saved beside its weights."""
        return {}

    def build_network(self, role: str, arch: str | None = None, config: dict | None = None):
        """A fresh network of `role` and architecture `arch` (default: the role's first) from its config."""
        nets = self.networks
        if role not in nets:
            raise CoupledError(f"the {self.name} domain has no network role '{role}'; valid: {', '.join(nets)}")
        arch = arch or self.default_arch.get(role) or next(iter(nets[role]))
        if arch not in nets[role]:
            raise CoupledError(f"unknown {self.name} {role} architecture '{arch}'; valid: {', '.join(nets[role])}")
        return nets[role][arch](dict(config or {}))

    # ---- what the chains run on (identity by default: the split's items themselves)
    def signal_meta(self, cfg: dict) -> dict:
        """What training records in the signal and logit networks' JSON about the signal the chains run on (e.g.
        speech's `representation`), from a merged config; {} by default. `represent` and `wrap_classifier` read
        it back from the bundle's signal.json, so a bundle carries its representation."""
        return {}

    def represent(self, signals, lengths, meta: dict | None):
        """(signals, lengths) the chains run on for raw items `signals` [N, ...] (zero-padded, valid extents
        `lengths` [N] or None) of a bundle whose signal net's JSON is `meta` (None or {}: no denoisers). Applied
        by training after its corruption and by the evaluator after `corrupt_set`, to the degraded and the clean
        items alike. Each item's result must depend on that item alone. Identity by default (the same objects)."""
        return signals, lengths

    def wrap_classifier(self, net, meta: dict | None):
        """The frozen classifier as the chains call it: `net` (trained on raw items) adapted to what `represent`
        returns, for a bundle whose signal net's JSON is `meta`; `net` itself by default."""
        return net

    def estimate_metrics(self, meta: dict | None = None) -> dict:
        """name -> fn(estimate, reference) on what the chains run on (`represent`'s output for a bundle whose signal
        net's JSON is `meta`): the evaluator's per-item quality of x_hat. The `signal_metrics` by default (the
        chains run on the items themselves)."""
        return self.signal_metrics

    def signal_shape(self, net) -> tuple | None:
        """The shape of one signal (without the batch axis) a built network takes, from its `cfg`; None when the
        domain does not say."""
        return None

    def arch_of(self, role: str, net) -> str:
        """The architecture name of a built network (recorded in its checkpoint JSON)."""
        for arch, builder in self.networks.get(role, {}).items():
            cls = builder if isinstance(builder, type) else getattr(builder, "net_class", None)  # `net_builder`'s
            if cls is not None and isinstance(net, cls):
                return arch
        return self.default_arch.get(role) or next(iter(self.networks.get(role, {"": None})))

    # ---- metrics, readout, task score
    @property
    def signal_metrics(self) -> dict:
        """name -> fn(estimate [N, ...], reference [N, ...]) -> per-item Tensor [N], reported at the heaviest
        severity (higher is better unless the domain says otherwise)."""
        return {}

    def readout(self, logits, lengths=None):
        """The answers of classifier logits: argmax over classes of [B, K] (`lengths`: the valid frames of
        [B, T, K] frame logits, for a domain whose answers are sequences)."""
        return logits.argmax(dim=-1)

    def classifier_loss(self, logits, labels, lengths=None, frame_lengths=None):
        """The loss the `classifier` and `finetuned` training stages minimise on a batch: `logits` of the classifier
        being trained ([B, K], or frame logits [B, T, K]), `labels` as the split holds them (class indices, or a
        list of answers), `lengths` [B] the signals' valid extents and `frame_lengths` [B] the logits' valid
        frames (None for signals of one shape). Returns (loss, {name: value} logged beside it). The default is
        cross-entropy on [B, K] logits with class-index labels; a domain whose answers are sequences overrides
        it (e.g. CTC on its frame logits)."""
        import torch
        import torch.nn.functional as F

        if logits.dim() != 2 or not torch.is_tensor(labels):
            got = "labels that are not class indices" if not torch.is_tensor(labels) else f"logits {tuple(logits.shape)}"
            raise CoupledError(f"the {self.name} domain's classifier training got {got}; the default classifier_loss "
                               "takes logits [B, K] with class-index labels: override Domain.classifier_loss (e.g. CTC)")
        return F.cross_entropy(logits, labels), {"acc": (logits.argmax(1) == labels).float().mean()}

    def task_metric(self, task: str | None = None) -> str:
        """The name of the metric (`coupled.evaluation.stats.METRICS`) that scores answers of `task`."""
        return "accuracy"

    def item_scores(self, task: str | None, refs, hyps) -> np.ndarray:
        """Per-item scores of answers `hyps` against `refs` under `task_metric(task)`: [N] (1.0 right, 0.0
        wrong, for accuracy) or [N, 2] (numerator, denominator) for a ratio metric such as corpus WER."""
        refs = np.asarray(refs.cpu() if hasattr(refs, "cpu") else refs)
        hyps = np.asarray(hyps.cpu() if hasattr(hyps, "cpu") else hyps)
        return (refs == hyps).astype(np.float64)

    def secondary_scores(self, task: str | None = None) -> dict:
        """{metric name (`coupled.scores.METRICS`): fn(refs, hyps) -> per-item scores}: other scores of the same
        answers, reported beside the task metric without another sampling run (results rows' `secondary`); none
        by default."""
        return {}

    def length_groups(self, data) -> dict | None:
        """{label: item indices} of a labelled split grouped by how long its items are, shortest first, for
        `coupled bench`'s cost against length (e.g. speech: digit strings by their number of words); None: the
        items have one size."""
        return None

    def task_score(self, task: str | None, refs, hyps) -> float:
        """The score of answers `hyps` against `refs` (accuracy unless the domain says otherwise)."""
        metric = get_metric(self.task_metric(task))
        scores = self.item_scores(task, refs, hyps)
        return metric.value(scores) if len(scores) else 0.0

    def clean_score(self, classifier, data, batch: int = 500) -> float:
        """A classifier's score on a clean labelled split (its `task_metric`: accuracy, or e.g. WER): its
        logits read out by `readout`, scored by `item_scores`; a padded split runs with its lengths."""
        import torch

        classifier.eval()
        scores = []
        with torch.no_grad():
            for i in range(0, len(data), batch):
                x, lens = data.signals[i:i + batch], None
                if data.lengths is not None:
                    lens = data.lengths[i:i + batch]
                    x = x[..., : int(lens.max())]
                logits = classifier(x) if lens is None else classifier(x, lens)
                frames = None
                if lens is not None and logits.dim() == 3:
                    fn = getattr(classifier, "output_lengths", None)
                    frames = fn(lens) if fn is not None else lens
                scores.append(self.item_scores(data.task, data.labels[i:i + batch], self.readout(logits, frames)))
        return get_metric(self.task_metric(data.task)).value(np.concatenate(scores))

    # ---- calibration (`coupled calibrate`, coupled/evaluation/calibrate.py)
    # {level: target of the task metric} the noisy classifier should score on validation items at each level,
    # e.g. {"light": 0.7, "medium": 0.4, "heavy": 0.2} for accuracy; None: the domain does not calibrate
    calibration_targets: dict | None = None
    calibration_grid_points: int = 33

    def calibration_search(self, name: str, cfg: dict, val, score_at) -> dict | None:
        """How `coupled calibrate` finds corruption `name`'s levels: {"targets": {level: target}, "grid": [ascending
        severities]} (each level: the last grid point before the metric first falls short of its target), or
        {"targets": ..., "bisect": top} (bisection in [0, top]); None: no targets. `val` is the validation split,
        `score_at(severity)` the noisy classifier's task metric on it. By default: `calibration_targets` on a grid
        of `calibration_grid_points` severities from 0 to the top of the corruption's training range
        (`corruptions.train_severity`), else to twice its heaviest configured severity."""
        if self.calibration_targets is None:
            return None
        def number(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0

        corruptions = cfg.get("corruptions", {})
        train_range = corruptions.get("train_severity", {}).get(name) or ()
        levels = list((corruptions.get("severities", {}).get(name) or {}).values())
        if len(train_range) == 2 and number(train_range[1]):
            top = float(train_range[1])
        elif levels and all(number(v) for v in levels):
            top = 2.0 * max(levels)
        else:
            raise CoupledError(f"corruption {name!r} of the {self.name} domain has no numeric severities to calibrate "
                               "over; give it a numeric `corruptions.train_severity` range [lo, hi]")
        n = self.calibration_grid_points
        return {"targets": dict(self.calibration_targets), "grid": [round(top * i / (n - 1), 6) for i in range(n)]}

    # ---- report
    def example_panel(self, signal) -> np.ndarray:
        """One item's signal as a picture for the report's example grid: [H, W] or [H, W, 3] in [-1, 1]."""
        a = np.asarray(signal.detach().cpu() if hasattr(signal, "detach") else signal, dtype=np.float32)
        if a.ndim == 1:  # a 1-D signal: a strip, so the grid shows it
            return np.repeat(a[None, :], max(1, len(a) // 8), axis=0)
        return a[0] if a.ndim == 3 else a

    def example_files(self, rows: list, folder, meta: dict | None = None) -> list:
        """Files a person can open for the report's examples (`rows` as `report.plot_examples` takes them, each
        with its `signals`: (caption, signal) pairs), written under `folder`; `meta` is the bundle's signal net JSON.
        None by default (the pictures say it all); speech writes WAVs."""
        return []

    # ---- user input
    def read_input(self, path):
        raise CoupledError(f"the {self.name} domain cannot read input files")

    # ---- commands: train, evaluate, demo and classify run the generic pipeline's (coupled/commands.py) unless a
    # domain defines its own run_train, run_evaluate, run_demo or run_classify; the rest are here
    def check_command(self, command: str) -> None:
        if command not in self.commands:
            raise CoupledError(f"the {self.name} domain has no `coupled {command}`; its commands: {', '.join(self.commands)}")

    def run_data(self, *, config, root=None, workers=2, progress=True) -> str:
        self.check_command("data")
        return ""


# ------------------------------------------------------------------------------------------------ registry
def _builtin_modules() -> list[str]:
    """The module of each built-in domain: `coupled.domains.NAME.domain` for a package with a `domain.py`,
    `coupled.domains.NAME` for a module (but this registry), the names of `_BUILTIN_ORDER` first, then by name."""
    import pkgutil
    from pathlib import Path

    here = Path(__file__).parent
    found = {}
    for info in pkgutil.iter_modules([str(here)]):
        if info.ispkg and (here / info.name / "domain.py").is_file():
            found[info.name] = f"{__package__}.{info.name}.domain"
        elif not info.ispkg and info.name != "registry":
            found[info.name] = f"{__package__}.{info.name}"
    order = [n for n in _BUILTIN_ORDER if n in found] + sorted(n for n in found if n not in _BUILTIN_ORDER)
    return [found[n] for n in order]


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        modules = _builtin_modules()
        _BUILTIN_PACKAGES.extend(m.rsplit(".", 1)[0] if m.endswith(".domain") else m for m in modules)
        for module in modules:
            importlib.import_module(module)


def _builtin_names() -> list[str]:
    """The built-in domains' names in `_BUILTIN_PACKAGES`' order, whichever was imported first (a test or a user
    may import the speech domain before the registry is asked): a domain is built in when its object's class lives
    under one of those packages."""
    def package_of(d):
        module = type(d).__module__
        return next((i for i, p in enumerate(_BUILTIN_PACKAGES) if module == p or module.startswith(p + ".")), None)

    owned = {n: package_of(d) for n, d in _DOMAINS.items()}
    return sorted((n for n, i in owned.items() if i is not None), key=lambda n: owned[n])


def register_domain(domain: Domain) -> Domain:
    """Add `domain` under `domain.name`; a second domain of the same name is an error. Returns `domain`."""
    _load_builtins()  # the built-in names are taken first, whatever registers before the registry's first use
    if not isinstance(domain, Domain):
        raise CoupledError(f"register_domain takes a coupled.domains.registry.Domain, got {type(domain).__name__}")
    if not isinstance(domain.name, str) or not domain.name.strip() or ":" in domain.name:
        raise CoupledError(f"a domain's name must be a non-empty string without ':', got {domain.name!r}")
    if domain.name in _DOMAINS:
        raise CoupledError(f"a domain named '{domain.name}' is already registered; pick another name")
    _DOMAINS[domain.name] = domain
    return domain


def domain_names(command: str | None = None) -> list[str]:
    """The registered domains' names, the built-in ones first, then in registration order (those serving
    `command` when given)."""
    _load_builtins()
    builtin = _builtin_names()
    names = builtin + [n for n in _DOMAINS if n not in builtin]
    return [n for n in names if command is None or command in _DOMAINS[n].commands]


def get_domain(name: str | None = None) -> Domain:
    """The domain registered as `name` (default: image), or "module.path:attr" naming a `Domain` object, which
    is imported and registered. An unknown name is a one-line error listing the registered ones."""
    _load_builtins()
    name = DEFAULT_DOMAIN if name is None else name
    if isinstance(name, Domain):
        return name
    if not isinstance(name, str):
        raise CoupledError(f"a domain is named by a string, got {type(name).__name__}; valid: {', '.join(domain_names())}")
    if ":" in name:
        obj = import_object(name, f"domain {name!r}", "DOMAIN")
        if not isinstance(obj, Domain):
            raise CoupledError(f"{name!r} is a {type(obj).__name__}, not a coupled Domain")
        found = _DOMAINS.get(obj.name) if _DOMAINS.get(obj.name) is obj else register_domain(obj)
        _SPECS.setdefault(obj.name, name)
        return found
    if name not in _DOMAINS:
        raise CoupledError(f"unknown domain '{name}'; valid: {', '.join(domain_names())}")
    return _DOMAINS[name]


def domain_spec(name: str) -> str:
    """How to find domain `name` in a fresh process: its "module.path:OBJECT" when a config named it by module
    (a plug-in, recorded in checkpoint JSONs so that a bundle finds its domain), else the name itself."""
    return _SPECS.get(name, name)


def domain_of(cfg: dict | None) -> Domain:
    """The domain a config names (its `domain` key; image without one)."""
    return get_domain((cfg or {}).get("domain") or DEFAULT_DOMAIN)
