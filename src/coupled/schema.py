"""Config validation: a schema derived from the typed defaults, checked before anything is written or trained.

Each leaf's type comes from its default (an int default takes integers only, a float default any finite
number, a bool a bool, a string a string, a list a list); RANGES and CHOICES add bounds by key name, wherever
the key appears (`steps` is an integer >= 1 in every section). Free-form sections (network configs,
severities, method options, data) get the checks their shape allows; their consumers check the rest. The
first problem is a CoupledError naming the dotted key, what it must be, and what it was.
"""

from __future__ import annotations

import math
import numbers

from .errors import CoupledError

SEED_MAX = 2**32 - 1  # every seed: numpy's SeedSequence and torch.Generator take it

# key name -> (low, high, low inclusive, high inclusive), for numbers wherever the key appears
RANGES: dict[str, tuple] = {
    "steps": (1, 10**9, True, True), "batch_size": (1, 10**6, True, True), "lr": (0, 10, False, True),
    "ema_decay": (0, 1, True, False), "seed": (0, SEED_MAX, True, True), "corruption_seed": (0, SEED_MAX, True, True),
    "checkpoint_every": (1, 10**9, True, True),
    "log_every": (1, 10**9, True, True), "num_threads": (0, 4096, True, True), "logit_scale": (0, 100, False, True),
    "lambda": (0, 1, True, True), "switch_fraction": (0, 1, True, True), "null_dropout": (0, 1, True, False),
    "cond_lr_scale": (0, 1e6, False, True), "clean_fraction": (0, 1, True, True),
    "signal_guidance": (0, 1e3, True, True), "eta": (0, 1, True, True), "corrector_steps": (0, 1000, True, True),
    "snr": (0, 100, False, True), "heavy_seeds": (1, 1000, True, True), "other_seeds": (1, 1000, True, True),
    "max_items": (1, 10**9, True, True), "crop": (0, 10**12, True, True), "bootstrap": (1, 10**7, True, True), "items": (1, 10**9, True, True),
}
CHOICES: dict[str, tuple] = {
    "device": ("auto", "cpu", "cuda", "mps"), "prediction": ("eps", "x0", "v"), "sampler": ("ddim", "ddpm", "pc"),
    "split": ("train", "val", "test"), "grid": ("full", "compact"),
}
# keys whose default is null and whose value, when set, is a string: a file path, or "module.path:function"
NULLABLE_STRINGS = {"factory": "a 'module.path:function' string", "weights": "the path of a .safetensors file",
                    "init": "the path of a .safetensors file"}



def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _fail(key: str, want: str, value) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise CoupledError(f"config key {key} must {want}, got {shown}; fix it in the config file")


def _check_range(key: str, name: str, value, integer: bool) -> None:
    if name not in RANGES:
        return
    lo, hi, lo_in, hi_in = RANGES[name]
    ok = (value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)
    if not ok:
        kind = " (an integer)" if integer else ""
        _fail(key, f"lie in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}{kind}", value)


def check_value(key: str, default, value) -> None:
    """Check one leaf against its default's type and the key's range or choices."""
    name = key.rsplit(".", 1)[-1]
    if name == "max_items" and value is None:
        return
    if name == "timesteps":  # a chain's explicit grid; the Chain checks it against its process and steps
        if value is not None and (not isinstance(value, list) or len(value) < 2
                                  or not all(_is_number(t) and math.isfinite(t) for t in value)):
            _fail(key, "be null or a list of grid times, noisiest first, ending with the terminal time (-1 for VP)", value)
        return
    if default is None and name in NULLABLE_STRINGS:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            _fail(key, f"be null or {NULLABLE_STRINGS[name]}", value)
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            _fail(key, "be true or false", value)
    elif _is_int(default) or name in ("max_items",):
        if not _is_int(value):
            _fail(key, "be an integer" + (" >= 1" if name in ("steps", "batch_size") else ""), value)
        _check_range(key, name, value, True)
    elif isinstance(default, float):
        if not _is_number(value) or not math.isfinite(value):
            _fail(key, "be a finite number", value)
        _check_range(key, name, value, False)
    elif isinstance(default, str):
        if not isinstance(value, str) or not value.strip():
            _fail(key, "be a non-empty string", value)
        if name in CHOICES:
            ok = value in CHOICES[name] or (name == "device" and value.startswith("cuda:") and value[5:].isdigit())
            if not ok:
                _fail(key, "be one of " + ", ".join(CHOICES[name]) + (" or cuda:N" if name == "device" else ""), value)
            if name == "device" and value.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise CoupledError(f"config key {key} is {value!r} but this machine has no CUDA device; "
                                       "use auto or cpu")
    elif isinstance(default, list):
        if not isinstance(value, list):
            _fail(key, "be a list", value)
        if name == "grids" and not all(isinstance(p, list) and len(p) == 2 and all(_is_int(n) and 1 <= n <= 10**6 for n in p)
                                       for p in value):
            _fail(key, "be a list of [signal_steps, logit_steps] pairs of integers >= 1", value)
        if name == "observation_weights" and not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a <= 1 for a in value):
            _fail(key, "be a list of weights in [0, 1] (the share of the observation added back; 0: none)", value)
        if name == "seeds":
            if not value or not all(_is_int(s) and 0 <= s <= SEED_MAX for s in value):
                _fail(key, f"be a non-empty list of integer seeds in [0, {SEED_MAX}]", value)


def _check_free_form(key: str, name: str, value, data_kinds=None) -> None:
    if name == "data":
        if not isinstance(value, dict):
            _fail(key, "be a mapping with a 'kind'", value)
        if data_kinds is None:  # the domain checks its own data section (Domain.data_kinds is None)
            return
        kind = value.get("kind", next(iter(data_kinds), None))  # a domain's first kind is its default
        if kind not in data_kinds:
            _fail(f"{key}.kind", "be one of " + ", ".join(data_kinds), kind)
        extra = sorted(set(value) - data_kinds[kind])
        if extra:
            raise CoupledError(f"unknown config key '{key}.{extra[0]}' for data kind {kind!r}; valid keys there: "
                               f"{', '.join(sorted(data_kinds[kind]))}")
        if "seed" in value:
            check_value(f"{key}.seed", 0, value["seed"])
    elif name in ("net", "process", "calibration", "methods"):
        if not isinstance(value, dict):
            _fail(key, "be a mapping", value)
        if name == "methods":
            from .methods import REFERENCE_METHODS, check_method_settings, method_settings
            from .engine import METHODS

            for method, opts in value.items():
                if method not in METHODS and method not in REFERENCE_METHODS:
                    raise CoupledError(f"unknown config key '{key}.{method}': no such method; choose one of: "
                                       f"{', '.join((*METHODS, *REFERENCE_METHODS))}")
                if not isinstance(opts, dict):
                    _fail(f"{key}.{method}", "be a mapping of method options", opts)
                valid = method_settings(method)
                unknown = sorted(set(opts) - set(valid))
                if unknown:
                    raise CoupledError(f"unknown config key '{key}.{method}.{unknown[0]}' (an option method {method!r} "
                                       f"does not take); valid keys there: {', '.join(valid)}")
                try:  # the values too, as the method would check them when it runs
                    check_method_settings(method, opts, prefix=f"config key {key}.{method}.")
                except CoupledError as e:
                    raise CoupledError(f"{e}; fix it in the config file") from None
    elif name == "severities":
        if not isinstance(value, dict) or not value:
            _fail(key, "be a mapping corruption -> {light, medium, heavy}", value)
        for corruption, levels in value.items():
            if not isinstance(levels, dict) or not levels:
                _fail(f"{key}.{corruption}", "be a mapping of levels (light, medium, heavy) to severities", levels)
            for level, sev in levels.items():
                if not _is_number(sev) or not math.isfinite(sev) or sev < 0:
                    _fail(f"{key}.{corruption}.{level}", "be a finite number >= 0", sev)
    elif name == "train_severity":
        if not isinstance(value, dict) or not value:
            _fail(key, "be a mapping corruption -> [low, high]", value)
        for corruption, pair in value.items():
            if (not isinstance(pair, list) or len(pair) != 2 or not all(_is_number(v) and math.isfinite(v) for v in pair)
                    or not 0 <= pair[0] <= pair[1]):
                _fail(f"{key}.{corruption}", "be [low, high] with 0 <= low <= high", pair)


CHAIN_SECTIONS = ("sampling.signal", "sampling.logits")


def section_defaults(key: str, default: dict, user) -> dict:
    """The defaults config section `key` merges with and is checked against: `default`, except for a sampling
    chain, whose options are those of the sampler it names (a `pc` chain takes corrector_steps and snr, a
    `ddim` chain eta, `ddpm` none). An option of another sampler is a CoupledError naming the valid ones."""
    if key not in CHAIN_SECTIONS or not isinstance(user, dict):
        return default
    from .engine.samplers import SAMPLER_OPTIONS

    sampler = user.get("sampler", default["sampler"])
    if not isinstance(sampler, str) or sampler not in SAMPLER_OPTIONS:
        return default  # the choices check names the valid samplers
    every = {name for options in SAMPLER_OPTIONS.values() for name in options}
    if sampler != default["sampler"]:
        kept = {k: v for k, v in default.items() if k not in every}
        default = {**kept, "sampler": sampler, **SAMPLER_OPTIONS[sampler]}
    else:  # an option of this sampler that the defaults leave out (e.g. pc's denoise_final) may be set
        default = {**default, **{k: SAMPLER_OPTIONS[sampler][k] for k in user
                                 if k in SAMPLER_OPTIONS[sampler] and k not in default}}
    if "timesteps" in user:  # an explicit grid (engine Chain.timesteps), unset by default
        default = {**default, "timesteps": None}
    wrong = sorted(set(user) & (every - set(SAMPLER_OPTIONS[sampler])))
    if wrong:
        raise CoupledError(f"config key {key}.{wrong[0]} is not an option of sampler {sampler!r}; its options: "
                           f"{', '.join(SAMPLER_OPTIONS[sampler]) or 'none'}; remove it from the config file")
    return default


def validate(cfg: dict, defaults: dict, free_form: set, where: str = "", data_kinds=None) -> dict:
    """Check every key of `cfg` (already merged with `defaults`, unknown keys refused) against the schema the
    defaults imply; returns `cfg`. `data_kinds`: the `data` section's kinds and their keys (a domain's
    `data_kinds`, the first kind the default; None leaves the section to its domain)."""
    for key, default in defaults.items():
        if key not in cfg:
            continue
        value, dotted = cfg[key], f"{where}{key}"
        if key in free_form:
            _check_free_form(dotted, key, value, data_kinds)
        elif isinstance(default, dict):
            validate(value, section_defaults(dotted, default, value), free_form, dotted + ".", data_kinds)
        else:
            check_value(dotted, default, value)
    return cfg


def check_sampling(sampling, where: str) -> dict:
    """A `sampling` section as saved in pipeline.json (or passed by a user): a mapping whose chains are complete
    and whose values fit the schema; CoupledError naming `where` otherwise."""
    from .defaults import DEFAULTS, FREE_FORM

    if not isinstance(sampling, dict):
        raise CoupledError(f"{where}: 'sampling' must be a mapping, got {type(sampling).__name__}; re-create it with `coupled train`")
    for chain in ("signal", "logits"):
        section = sampling.get(chain)
        if not isinstance(section, dict) or "steps" not in section or "sampler" not in section:
            raise CoupledError(f"{where}: sampling.{chain} must be a mapping with steps and sampler, got {section!r}; "
                               "re-create it with `coupled train`")
    try:
        validate(sampling, DEFAULTS["sampling"], FREE_FORM, "sampling.")
    except CoupledError as e:  # a stored file, not the user's config: say how to replace the value
        message = str(e).removesuffix("; fix it in the config file").replace("config key sampling.", "sampling.")
        raise CoupledError(f"{where}: {message}; re-create it with `coupled train`, or override the value with "
                           "--set KEY=VALUE (sampling= in Python)") from None
    return sampling
