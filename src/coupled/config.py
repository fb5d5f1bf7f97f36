"""Experiment configs: one YAML file trains, evaluates and reproduces an experiment.

A config is the defaults below deep-merged with the user's YAML; an unknown key anywhere is an error that
names the valid keys at that place (no silently ignored typos). Every value is then checked against the schema
the defaults imply (`coupled.schema`: types, ranges, choices) before anything is written or trained. Keys whose
value is a free-form mapping (network configs, corruption severities, method options) get the checks their
shape allows and are checked in full by their own consumers. A file may start from another
(`extends: base.yaml`, relative to the file; deep-merged, the extending file wins), and `--set key.path=value`
on the command line overrides any key before the checks (docs/configs.md).

A config is code: a corruption or a classifier factory may be named "module.path:function", which imports that
module and runs it. Run only configs you trust.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from .errors import CoupledError

FREE_FORM = {"net", "process", "severities", "train_severity", "calibration", "methods", "data"}

DEFAULTS: dict = {
    "name": "experiment",
    "seed": 0,
    "output": "checkpoints/experiment",
    "device": "auto",
    "data": {"kind": "mnist5k", "seed": 0},
    "corruptions": {
        # light / medium / heavy, chosen on the validation split (see `coupled calibrate`)
        "severities": {
            "pixel_noise": {"light": 0.15, "medium": 0.3, "heavy": 0.5},
            "gaussian_noise": {"light": 0.3, "medium": 0.5, "heavy": 0.8},
            "gaussian_blur": {"light": 1.5, "medium": 2.5, "heavy": 3.5},
        },
        # training draws a corruption and a severity uniformly in [lo, hi] per item
        "train_severity": {"pixel_noise": [0.05, 0.6], "gaussian_noise": [0.1, 1.0], "gaussian_blur": [0.5, 4.0]},
        "calibration": {},
    },
    # factory: null trains the domain's built-in classifier (its `net` options); "module.path:function" couples
    # with your own frozen classifier instead: the function, called with `net` as keyword arguments, returns a
    # torch.nn.Module, `weights` (a safetensors file of its state_dict) are loaded into it, and `coupled train`
    # copies both into the bundle instead of training a classifier (docs/tutorial.md). A config is code.
    "classifier": {"net": {}, "steps": 1500, "batch_size": 128, "lr": 1e-3, "logit_scale": 0.8, "factory": None,
                   "weights": None},
    # ema_decay: each stage below saves an exponential moving average of its weights, with the warm-up
    # min(ema_decay, (1 + n) / (10 + n)) at update n (training/ema.py), so a short run saves trained weights;
    # ema_warmup: false is a flat ema_decay from the first step (how the bundled weights were trained)
    "signal": {
        "net": {}, "process": {"kind": "vp", "num_train_steps": 1000, "schedule": "cosine"}, "prediction": "v",
        "steps": 3000, "batch_size": 64, "lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True,
        # init: start from these weights (a .safetensors written by `coupled train`, e.g.
        # checkpoints/mnist/signal_pretrained.safetensors) instead of a random initialisation; the architecture
        # must match this section's `net` (logits and card take `init` too)
        "init": None,
    },
    "logits": {
        "net": {}, "process": {"kind": "centred"}, "prediction": "x0", "steps": 2000, "batch_size": 128,
        "lr": 1e-3, "ema_decay": 0.999, "ema_warmup": True, "init": None,
    },
    "joint": {
        "steps": 1000, "batch_size": 64, "lr": 2e-4, "lambda": 0.1, "null_dropout": 0.2,
        "ema_decay": 0.999, "ema_warmup": True, "cond_lr_scale": 1.0,  # learning-rate multiplier of the signal net's logit conditioning
        # what each item is trained at: one step of one coupled method's plan (engine/conditioning.py) on one
        # [signal_steps, logit_steps] grid; {} / [] take sampling.methods' coupled methods and the sampling steps
        "methods": {}, "grids": [],
    },
    # the baselines' own networks (stages card, finetuned, sequential; issue 7)
    "card": {"net": {}, "process": {"kind": "centred"}, "prediction": "x0", "steps": 3000, "batch_size": 128,
             "lr": 1e-3, "ema_decay": 0.999, "ema_warmup": True, "init": None},
    "finetuned": {"steps": 1500, "batch_size": 128, "lr": 5e-4, "clean_fraction": 0.2},
    "sequential": {"steps": 3000, "batch_size": 64, "lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True},
    "train": {"checkpoint_every": 250, "log_every": 25, "num_threads": 0},
    "sampling": {
        # false: the signal denoiser always gets the null logit token (ablation: logit conditioning off)
        "signal_logits": True,
        # classifier-free guidance weight on the signal net's logit input: 1 plain, 0 = null token, > 1 stronger
        "signal_guidance": 1.0,
        "signal": {"steps": 5, "sampler": "ddim", "eta": 0.0},
        "logits": {"steps": 5, "sampler": "pc", "corrector_steps": 1, "snr": 0.5},
        "methods": {
            "parallel": {"switch_fraction": 0.5},
            "alternating": {"rounds": 2},
            "nested": {"refresh_every": 2, "refresh_window": [0.5, 1.0]},
        },
    },
    "evaluation": {"split": "test", "batch_size": 250, "seeds": [0, 1, 2], "heavy_seeds": 3, "other_seeds": 1,
                   "max_items": None, "bootstrap": 2000},
    # picks: validation picks (benchmarks/fair_comparison.py val) the demo runs; null: the paper's six methods
    "demo": {"items": 200, "seed": 0, "picks": None},
}


def _merge(base: dict, user: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in user.items():
        if key not in base:
            raise CoupledError(f"unknown config key '{where}{key}'; valid keys there: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in FREE_FORM:
            if not isinstance(value, dict):
                raise CoupledError(f"config key '{where}{key}' must be a mapping, got {type(value).__name__}")
            from .schema import section_defaults  # a sampling chain's options are those of its sampler

            out[key] = _merge(section_defaults(f"{where}{key}", base[key], value), value, f"{where}{key}.")
        elif key == "methods" and isinstance(value, dict):  # options per method: a user's entry replaces that method's
            out[key] = {**base[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_config(user: dict | None = None, domain=None) -> dict:
    """Defaults (`domain`'s, a name or Domain; default image) deep-merged with `user`; unknown keys, bad values
    and corruptions that do not resolve (an unknown name, a `module:function` whose module or function is
    missing) are one-line errors."""
    from .domains.registry import get_domain
    from .schema import validate

    domain = get_domain(domain)
    corruption_from_config = domain.corruption
    defaults = domain.config_defaults()
    cfg = validate(_merge(defaults, user or {}, ""), defaults, FREE_FORM, data_kinds=domain.data_kinds)
    if isinstance(cfg.get("classifier"), dict) and "factory" in cfg["classifier"]:  # a user's classifier: imported now
        from .classifiers import check_classifier_section

        check_classifier_section(cfg["classifier"])
    for section in ("severities", "train_severity"):  # resolved now, not when a later stage first needs one
        for name in cfg["corruptions"][section]:
            try:
                corruption_from_config(name)
            except CoupledError as e:
                raise CoupledError(f"config key corruptions.{section}.{name}: {e}") from None
    return cfg


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise CoupledError(f"no such config file: {path}; pass a YAML file such as configs/mnist.yaml")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CoupledError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                           "save it as UTF-8") from None
    try:
        user = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise CoupledError(f"cannot parse {path} as YAML ({str(e).splitlines()[0]}); fix the file's syntax") from None
    if not isinstance(user, dict):
        raise CoupledError(f"{path} must hold a mapping of config keys, got {type(user).__name__}")
    return user


def _deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key, any other value (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_extended(path: Path, chain: tuple = ()) -> dict:
    """A config file with its `extends:` chain resolved: the named file (relative to this one) deep-merged
    under this one, so the extending file wins."""
    chain = (*chain, path.resolve())
    user = _read_yaml(path)
    base = user.pop("extends", None)
    if base is None:
        return user
    if not isinstance(base, str) or not base.strip():
        raise CoupledError(f"'extends' in {path} must be the path of another config file, got {base!r}")
    base_path = path.parent / base
    if base_path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
        raise CoupledError(f"config files extend each other in a cycle ({cycle}); remove one 'extends'")
    return _deep_merge(_read_extended(base_path, chain), user)


def parse_override(text: str) -> tuple[str, object]:
    """`--set key.path=value`: the dotted key and the value parsed as YAML (1e-4 reads as a number, as a
    user means it, though YAML 1.1 would read a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise CoupledError(f"--set takes key=value with a dotted key such as signal.steps=100, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise CoupledError(f"--set {key}: cannot parse {raw!r} as a YAML value ({str(e).splitlines()[0]})") from None
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        value = float(value)
    return key, value


def apply_overrides(user: dict, overrides, defaults: dict) -> dict:
    """`user` with each (dotted key, value) of `overrides` set in it, before the merge with `defaults` checks
    keys and values. A mapping the user's file leaves out starts from its default, so `--set
    corruptions.severities.pixel_noise.heavy=0.7` keeps the other severities."""
    user = copy.deepcopy(user)
    for key, value in overrides or ():
        node, default, parts = user, defaults, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            default = default.get(part) if isinstance(default, dict) else None
            if part not in node:
                if default is not None and not isinstance(default, dict):
                    raise CoupledError(f"--set {key}: config key '{'.'.join(parts[:depth + 1])}' is a value, not a "
                                       "mapping to set a key inside")
                node[part] = copy.deepcopy(default) if isinstance(default, dict) else {}
            elif not isinstance(node[part], dict):
                raise CoupledError(f"--set {key}: config key '{'.'.join(parts[:depth + 1])}' is "
                                   f"{node[part]!r}, not a mapping to set a key inside")
            node = node[part]
        node[parts[-1]] = value
    return user


def load_config(path, overrides=()) -> dict:
    """Read a YAML experiment config, with its `extends:` chain and `overrides` ((dotted key, value) pairs,
    `--set` on the command line) applied before the schema checks."""
    from .domains.registry import get_domain

    path = Path(path)
    user = _read_extended(path)
    name = dict(overrides or ()).get("domain", user.get("domain", "image"))  # a --set domain=... counts too
    try:
        domain = get_domain(name)
    except CoupledError as e:
        raise CoupledError(f"{e} (in {path})") from None
    if overrides:  # set against the defaults of the domain the config names
        user = apply_overrides(user, overrides, domain.config_defaults())
    cfg = domain.make_config({k: v for k, v in user.items() if k != "domain"})
    cfg["config_path"] = str(path)
    return cfg


def _first_difference(a, b, where: str = "sampling"):
    """The first dotted key at which `a` and `b` differ, with both values (None when they agree)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    return None if a == b else (where, a, b)


def checkpoint_sampling(cfg: dict, overrides=(), folder=None, warn=print) -> dict:
    """The sampling settings `coupled evaluate` and `coupled demo` run a checkpoint with: those stored with its
    weights (`pipeline.json`), with the explicit `--set sampling.*` overrides on top. The config's own
    section serves a folder without pipeline.json; where it differs from the stored one, `warn` gets one line."""
    import sys
    from pathlib import Path

    from .schema import check_sampling
    from .checkpoint import read_json

    path = Path(folder or cfg["output"]) / "pipeline.json"
    if not path.is_file():
        return cfg["sampling"]
    pipeline = read_json(path)
    stored = check_sampling(pipeline.get("sampling") if isinstance(pipeline, dict) else None, str(path))
    explicit = [(k, v) for k, v in overrides or () if k.split(".")[0] == "sampling"]
    sampling = make_config(apply_overrides({"sampling": stored}, explicit, DEFAULTS), cfg.get("domain"))["sampling"]
    found = _first_difference(cfg["sampling"], sampling)
    if found:
        key, mine, theirs = found
        warn(f"coupled: note: sampling settings come from {path} ({key} is {theirs!r} there, {mine!r} in the "
             f"config); pass --set {key}=VALUE to override", file=sys.stderr)
    return sampling
