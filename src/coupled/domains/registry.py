"""The `Domain` interface and the registry of domains.

A domain is one folder (or module) that describes its signals to the rest of the library and registers
itself with `register_domain`: its data splits, its corruptions (a `Registry` that refuses duplicates and
names the valid entries), its networks by role (`classifier`, `signal`, `logits`) and architecture name, its
signal metrics, the readout of logits into answers and the task score, example panels for the report and
how a user's input file is read. Training, evaluation, the config and the CLI ask `get_domain(name)` for it
(a config's `domain:` key, default `image`) instead of importing a domain.

The built-in domains (image, speech, gaussian) register themselves when the registry is first asked; a
user's domain registers when its module is imported, which a config may ask for with
`domain: my_pkg.my_domain:DOMAIN` (the module is imported and the object registered under its `name`).

Signals of a domain that uses the generic pipeline are float tensors [N, ...] in [-1, 1] (the signal
denoiser's output is clipped to that range), labels are class indices and the classifier gives [B, K] logits.
"""

from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import CoupledError

__all__ = ["Domain", "Registry", "LabelledSignals", "register_domain", "get_domain", "domain_names", "domain_of",
           "check_num_classes", "import_object", "corrupt_items", "DEFAULT_DOMAIN"]

DEFAULT_DOMAIN = "image"
# the domains shipped with the library, imported (and so registered) on the registry's first use, in this order
_BUILTIN = ("coupled.domains.image.domain", "coupled.domains.speech.domain", "coupled.domains.gaussian")
_BUILTIN_NAMES = ("image", "speech", "gaussian")  # listed first, in this order, whichever was imported first
_DOMAINS: dict[str, "Domain"] = {}
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
    """A labelled split of a domain's signals: `signals` float32 [N, ...], `labels` int64 [N], the data set's
    `num_classes` (not only those present here) and a short `name` for logs and reports."""

    signals: "torch.Tensor"  # noqa: F821
    labels: "torch.Tensor"  # noqa: F821
    num_classes: int
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices) -> "LabelledSignals":
        """The items at `indices` (ints) as a new split."""
        import torch

        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
        return LabelledSignals(self.signals[idx], self.labels[idx], self.num_classes, self.name)


def check_num_classes(data, num_classes: int) -> None:
    """Raise CoupledError unless a classifier with `num_classes` outputs can score every label of `data` (a split
    with `labels`, `num_classes` and `name`)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise CoupledError(f"num_classes must be a positive integer, got {num_classes!r}; pass the classifier's output count")
    needed = max(data.num_classes, int(data.labels.max()) + 1 if len(data) else 0)
    if needed > num_classes:
        raise CoupledError(f"data set {data.name} has {needed} classes but the classifier outputs {num_classes}; "
                           f"pass a classifier with {needed} outputs or the matching data set")


def import_object(spec: str, what: str, hint: str):
    """The object named by "module.path:attr" (attr may be dotted: "module:Class.method"), imported with
    importlib; `what` names it in errors ("corruption 'x:y'"), `hint` says what it should be."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise CoupledError(f"{what} is not of the form 'module.path:{hint}'; e.g. my_pkg.module:{hint}")
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # an import can fail with anything raised by the user's module body
        raise CoupledError(f"cannot import module {mod_name!r} for {what} ({type(e).__name__}: {e}); check the module is on PYTHONPATH and imports cleanly") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CoupledError(f"module {mod_name!r} has no attribute {attr!r} for {what}; check the {hint} name after ':'")
        obj = getattr(obj, part)
    return obj


def corrupt_items(fn: Callable, x, name: str, severity: float, seed: int, first_index: int = 0, *, item_seeds=None):
    """Apply corruption `fn` (signals, severity, generator) -> Tensor to each item of `x` [N, ...] with its own
    generator, `coupled.seeds.item_generator("corruption", seed, first_index + i)` (or seeded by `item_seeds[i]`
    when given, e.g. `seeds.content_seeds("corruption", seed, x)`): the result does not depend on batching.
    Float32 out."""
    import torch

    from ..seeds import item_generator

    for label, v in (("seed", seed), ("first_index", first_index)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise CoupledError(f"{label} must be a non-negative integer, got {v!r}; pass e.g. {label}=0")
    if item_seeds is not None and len(item_seeds) != x.shape[0]:
        raise CoupledError(f"item_seeds has {len(item_seeds)} seeds for {x.shape[0]} items; pass one per item")
    out = []
    for i in range(x.shape[0]):
        g = (item_generator("corruption", int(seed), int(first_index) + i, x.device) if item_seeds is None
             else torch.Generator(device=x.device).manual_seed(int(item_seeds[i])))
        y = fn(x[i : i + 1], severity, g)
        if not isinstance(y, torch.Tensor) or y.shape != x[i : i + 1].shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise CoupledError(f"corruption {name!r} returned {got} for input shape {tuple(x[i : i + 1].shape)}; return a tensor of the input's shape")
        out.append(y.to(torch.float32))
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
    commands: tuple = ("train", "evaluate", "reproduce")
    # the config's `data` section: kind -> its allowed keys (None: the domain's `load_splits` checks it)
    data_kinds: dict | None = None
    # role -> architecture used when a checkpoint's JSON names none (checkpoints written before `arch` was saved)
    default_arch: dict = {}
    # the network-config keys that fix the shape of a signal: every network of a bundle must agree on them
    shape_keys: tuple = ()

    # ---- config
    def config_defaults(self) -> dict:
        """The defaults a user's YAML is merged with (the generic pipeline's, `coupled.config.DEFAULTS`)."""
        from ..config import DEFAULTS

        return DEFAULTS

    def make_config(self, user: dict) -> dict:
        """Defaults merged with `user` (its `domain` key removed), checked; the result names this domain."""
        from ..config import make_config

        cfg = make_config(user, domain=self)
        if self.name != DEFAULT_DOMAIN:  # image configs keep their shape of before the registry
            cfg["domain"] = self.name
        return cfg

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

    def corrupt_set(self, signals, name: str, severity: float, seed: int, *, first_index: int = 0):
        """A whole split corrupted with `name` at `severity`, one generator per item from (seed, index)."""
        return corrupt_items(self.corruption(name), signals, name, severity, seed, first_index)

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

    def signal_shape(self, net) -> tuple | None:
        """The shape of one signal (without the batch axis) a built network takes, from its `cfg`; None when the
        domain does not say."""
        return None

    def arch_of(self, role: str, net) -> str:
        """The architecture name of a built network (recorded in its checkpoint JSON)."""
        for arch, builder in self.networks.get(role, {}).items():
            if isinstance(builder, type) and isinstance(net, builder):
                return arch
        return self.default_arch.get(role) or next(iter(self.networks.get(role, {"": None})))

    # ---- metrics, readout, task score
    @property
    def signal_metrics(self) -> dict:
        """name -> fn(estimate [N, ...], reference [N, ...]) -> per-item Tensor [N], reported at the heaviest
        severity (higher is better unless the domain says otherwise)."""
        return {}

    def readout(self, logits, lengths=None):
        """The answers of classifier logits: argmax over classes of [B, K]."""
        return logits.argmax(dim=-1)

    def task_score(self, task: str, refs, hyps) -> float:
        """Accuracy of answers `hyps` against `refs`."""
        refs, hyps = np.asarray(refs), np.asarray(hyps)
        return float((refs == hyps).mean()) if len(refs) else 0.0

    def task_metric(self, task: str) -> str:
        return "accuracy"

    # ---- report
    def example_panel(self, signal) -> np.ndarray:
        """One item's signal as a picture for the report's example grid: [H, W] or [H, W, 3] in [-1, 1]."""
        a = np.asarray(signal.detach().cpu() if hasattr(signal, "detach") else signal, dtype=np.float32)
        if a.ndim == 1:  # a 1-D signal: a strip, so the grid shows it
            return np.repeat(a[None, :], max(1, len(a) // 8), axis=0)
        return a[0] if a.ndim == 3 else a

    # ---- user input
    def read_input(self, path):
        raise CoupledError(f"the {self.name} domain cannot read input files")

    # ---- commands: train, evaluate and demo run the generic pipeline's (coupled/commands.py) unless a domain
    # defines its own run_train, run_evaluate or run_demo; the rest are here
    def check_command(self, command: str) -> None:
        if command not in self.commands:
            raise CoupledError(f"the {self.name} domain has no `coupled {command}`; its commands: {', '.join(self.commands)}")

    def run_calibrate(self, cfg: dict, *, progress=True) -> str:
        self.check_command("calibrate")
        return ""

    def run_data(self, *, config, root=None, workers=2, progress=True) -> str:
        self.check_command("data")
        return ""

    def run_classify(self, files, checkpoint, **options) -> int:
        """Print one line per file; returns the number of files that failed."""
        self.check_command("classify")
        return len(files)


# ------------------------------------------------------------------------------------------------ registry
def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(module)


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


def unregister_domain(name: str) -> None:
    """Remove a registered domain (tests register toy domains and remove them)."""
    _DOMAINS.pop(name, None)


def domain_names(command: str | None = None) -> list[str]:
    """The registered domains' names, the built-in ones first, then in registration order (those serving
    `command` when given)."""
    _load_builtins()
    names = [n for n in _BUILTIN_NAMES if n in _DOMAINS] + [n for n in _DOMAINS if n not in _BUILTIN_NAMES]
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
        return _DOMAINS.get(obj.name) if _DOMAINS.get(obj.name) is obj else register_domain(obj)
    if name not in _DOMAINS:
        raise CoupledError(f"unknown domain '{name}'; valid: {', '.join(domain_names())}")
    return _DOMAINS[name]


def domain_of(cfg: dict | None) -> Domain:
    """The domain a config names (its `domain` key; image without one)."""
    return get_domain((cfg or {}).get("domain") or DEFAULT_DOMAIN)
