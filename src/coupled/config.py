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

from .defaults import DEFAULT_DOMAIN, DEFAULTS, FREE_FORM
from .domains.registry import get_domain
from .errors import CoupledError
from .home import find, locate
from .schema import check_sampling, section_defaults, validate

def _merge(base: dict, user: dict, where: str, free_form=FREE_FORM) -> dict:
    out = copy.deepcopy(base)
    for key, value in user.items():
        if key not in base:
            raise CoupledError(f"unknown config key '{where}{key}'; valid keys there: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in free_form:
            if not isinstance(value, dict):
                raise CoupledError(f"config key '{where}{key}' must be a mapping, got {type(value).__name__}")
            out[key] = _merge(section_defaults(f"{where}{key}", base[key], value), value, f"{where}{key}.", free_form)
        elif key == "methods" and isinstance(value, dict):  # options per method: a user's entry replaces that method's
            out[key] = {**base[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_config(user: dict | None = None, domain=None) -> dict:
    """Defaults (`domain`'s, a name or Domain; default image) deep-merged with `user`; unknown keys, bad values
    and corruptions that do not resolve (an unknown name, a `module:function` whose module or function is
    missing) are one-line errors. The result names its domain (`domain` key) unless it is the default one."""
    domain = get_domain(domain)
    defaults = domain.config_defaults()
    free = domain.free_form
    cfg = validate(_merge(defaults, user or {}, "", free), defaults, free, data_kinds=domain.data_kinds)
    if isinstance(cfg.get("classifier"), dict) and "factory" in cfg["classifier"]:  # a user's classifier: imported now
        from .classifiers import check_classifier_section

        check_classifier_section(cfg["classifier"])
    for section in ("severities", "train_severity"):  # resolved now, not when a later stage first needs one
        for name in (cfg.get("corruptions") or {}).get(section, ()):
            try:
                domain.corruption(name)
            except CoupledError as e:
                raise CoupledError(f"config key corruptions.{section}.{name}: {e}") from None
    domain.check_config(cfg)
    if domain.name != DEFAULT_DOMAIN:  # image configs keep their shape of before the registry
        cfg["domain"] = domain.name
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
        user = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CoupledError(f"cannot parse {path} as YAML ({str(e).splitlines()[0]}); fix the file's syntax") from None
    if user is None:  # an empty file (or comments only) is more likely the wrong file than a wish for the defaults
        raise CoupledError(f"{path} is empty: it sets no config key; write the keys to change (docs/configs.md), "
                           "or `{}` for every default")
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


# keys (in any section) naming files a command only reads: found from the current directory, else the project home
READ_PATH_KEYS = ("weights", "init", "picks")


def _locate_read_paths(user: dict) -> dict:
    """`user` with each relative path it names for reading (`classifier.weights`, `signal.init`, `demo.picks`, ...)
    taken from the project home when it is not in the current directory (`coupled.home`)."""
    out = dict(user)
    for section, value in user.items():
        if isinstance(value, dict) and any(isinstance(value.get(k), str) for k in READ_PATH_KEYS):
            out[section] = {k: str(locate(v)) if k in READ_PATH_KEYS and isinstance(v, str) else v
                            for k, v in value.items()}
    return out


def load_config(path, overrides=()) -> dict:
    """Read a YAML experiment config, with its `extends:` chain and `overrides` ((dotted key, value) pairs,
    `--set` on the command line) applied before the schema checks. A relative `path` that is not in the current
    directory is read from the project home, as are the files the config names for reading (`coupled.home`);
    its `output` is resolved by the commands that read a checkpoint (`readable_output`)."""
    path = find(path, "config file", "pass a YAML file such as configs/mnist.yaml")
    user = _read_extended(path)
    name = dict(overrides or ()).get("domain", user.get("domain", "image"))  # a --set domain=... counts too
    try:
        domain = get_domain(name)
    except CoupledError as e:
        raise CoupledError(f"{e} (in {path})") from None
    if overrides:  # set against the defaults of the domain the config names
        user = apply_overrides(user, overrides, domain.config_defaults())
    cfg = make_config(_locate_read_paths({k: v for k, v in user.items() if k != "domain"}), domain)
    cfg["config_path"] = str(path)
    return cfg


def readable_output(cfg: dict, checkpoint=None) -> str:
    """The checkpoint folder a reading command (evaluate, tune, calibrate, bench, demo) loads: `checkpoint`, else
    the config's `output`, from the current directory or else the project home; one line naming both if neither
    has it. (`coupled train` writes `output` relative to the current directory, so it does not call this.)"""
    return str(find(checkpoint or cfg["output"], "checkpoint folder",
                    "pass --checkpoint DIR, or train one with `coupled train CONFIG`"))


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

    from .checkpoint import read_json

    path = Path(folder or cfg["output"]) / "pipeline.json"
    if not path.is_file():
        return cfg["sampling"]
    pipeline = read_json(path)
    stored = pipeline.get("sampling") if isinstance(pipeline, dict) else None
    explicit = [(k, v) for k, v in overrides or () if k.split(".")[0] == "sampling"]
    if isinstance(stored, dict):  # the --set values were checked with the config; what fails below is the file's
        stored = apply_overrides({"sampling": stored}, explicit, DEFAULTS)["sampling"]
    check_sampling(stored, str(path))  # every value, method options included, as a config's are
    sampling = make_config({"sampling": stored}, cfg.get("domain"))["sampling"]
    found = _first_difference(cfg["sampling"], sampling)
    if found:
        key, mine, theirs = found
        warn(f"coupled: note: sampling settings come from {path} ({key} is {theirs!r} there, {mine!r} in the "
             f"config); pass --set {key}=VALUE to override", file=sys.stderr)
    return sampling
