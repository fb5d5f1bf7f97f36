"""The methods an evaluation can name beyond the engine's strategies, and the options each may set.

A leaf above the engine: the schema checks `sampling.methods` against `method_settings`, the bundle loads the
networks a method needs (`SIGNAL_NETS`, `METHOD_NETS`), and evaluation lists `REFERENCE_METHODS` beside the
engine's `METHODS`.
"""

from __future__ import annotations

import math
import numbers

from .engine import METHODS, check_method_options, method_options
from .errors import CoupledError

# Networks of the baselines (stages card, finetuned, sequential, predictive), loaded on first use when the folder has them.
SIGNAL_NETS = {"joint": "signal", "pretrained": "signal_pretrained", "sequential": "signal_sequential"}
# Evaluation-level methods that are not strategies of the engine: (the engine method they run, what they swap)
REFERENCE_METHODS = {"finetuned_classifier": "noisy"}
# the network file of the folder a method needs beyond the bundle's own three
METHOD_NETS = {"card": "card", "predictive": "signal_predictive", **dict.fromkeys(REFERENCE_METHODS, "classifier_finetuned")}
# the bundle options a method with its own regression signal net cannot take (it runs no chain and no logits)
PREDICTIVE_REFUSES = ("signal_net", "signal_guidance", "signal_eta", "zero_shot")
# Options the bundle handles before the strategy sees them (which nets and chain settings a method runs with)
BUNDLE_OPTIONS = ("signal_guidance", "signal_net", "signal_eta", "classifier_gradient", "observation_weight",
                  "zero_shot")
# `zero_shot`: run the method's signal chain as a zero-shot posterior sampler around an unconditional prior
# (issue 18): {"sampler": dps | pigdm | ddnm, "prior": a folder holding prior.safetensors + prior.json, and the
# sampler's own options (weight, eta, prior_variance, clip), and for a class-conditional prior (train_prior.py
# --logits) `guidance`, the classifier-free guidance weight on its logit input (1: plain conditioning)}; the
# measurement comes from the corruption's linear operator (`Domain.linear_measurement`)
ZERO_SHOT_KEYS = ("sampler", "prior", "weight", "eta", "prior_variance", "clip", "guidance")
ZERO_SHOT_OWN = ("sampler", "prior", "guidance")  # the keys the bundle applies; the rest are the sampler's options


def zero_shot_sampler_options(spec: dict) -> dict:
    """The sampler's own options of a `zero_shot` spec (weight, eta, prior_variance, clip)."""
    return {k: v for k, v in spec.items() if k not in ZERO_SHOT_OWN}


def method_settings(method: str) -> list[str]:
    """The options `sampling.methods.METHOD` may set: the engine method's own, then BUNDLE_OPTIONS."""
    engine_method = REFERENCE_METHODS.get(method, method)
    if engine_method not in METHODS:
        raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join((*METHODS, *REFERENCE_METHODS))}")
    return [*method_options(engine_method), *BUNDLE_OPTIONS]


def _finite_at_least_0(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise CoupledError(f"{name} must be a finite number >= 0, got {value!r}")


def _signal_net(name, value):
    if value not in SIGNAL_NETS:
        raise CoupledError(f"{name} must be one of {', '.join(SIGNAL_NETS)}, got {value!r}")


def _eta(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
        raise CoupledError(f"{name} must lie in [0, 1], got {value!r}")


def _zero_shot(name, value):
    from .engine import ZERO_SHOT
    from .engine.samplers import check_sampler
    from .engine.processes import VPProcess

    if not isinstance(value, dict):
        raise CoupledError(f"{name} must be a mapping with 'sampler' ({', '.join(ZERO_SHOT)}) and 'prior' (a folder), "
                           f"got {value!r}")
    unknown = sorted(set(value) - set(ZERO_SHOT_KEYS))
    if unknown:
        raise CoupledError(f"unknown key(s) {unknown} in {name}; valid: {', '.join(ZERO_SHOT_KEYS)}")
    if value.get("sampler") not in ZERO_SHOT:
        raise CoupledError(f"{name}.sampler must be one of {', '.join(ZERO_SHOT)}, got {value.get('sampler')!r}")
    if not isinstance(value.get("prior"), str):
        raise CoupledError(f"{name}.prior must be the folder of a prior (prior.safetensors, "
                           "benchmarks/train_prior.py), e.g. checkpoints/mnist_prior")
    if "guidance" in value:
        _finite_at_least_0(f"{name}.guidance", value["guidance"])
    check_sampler(value["sampler"], VPProcess(), zero_shot_sampler_options(value))


def zero_shot_label(method: str, options: dict) -> str:
    """A results label for `method` run with `options`: 'METHOD+SAMPLER' when it runs zero-shot (a clearly named
    variant of the method, so that it sits beside the trained one in one results file)."""
    zs = options.get("zero_shot")
    return f"{method}+{zs['sampler']}" if isinstance(zs, dict) and "sampler" in zs else method


def _weight(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
        raise CoupledError(f"{name} must lie in [0, 1] (the share of the observation added back), got {value!r}")


# the values of BUNDLE_OPTIONS (the bundle applies them: coupled.bundle.Bundle.prepare)
BUNDLE_CHECKS = {"signal_guidance": _finite_at_least_0, "signal_net": _signal_net, "signal_eta": _eta,
                 "classifier_gradient": _finite_at_least_0, "observation_weight": _weight, "zero_shot": _zero_shot}


def check_predictive_options(options: dict, prefix: str = "") -> None:
    """`predictive` runs its own regression net with no chain and no logits: an option that picks another net,
    guides, sets a chain's eta or samples zero-shot is one CoupledError naming it."""
    refused = [k for k in PREDICTIVE_REFUSES if k in options]
    if refused:
        raise CoupledError(f"{prefix}{refused[0]}: method 'predictive' runs its own net ({METHOD_NETS['predictive']}) "
                           f"with no chain or logits; drop {refused[0]} from its options")


def check_method_settings(method: str, options: dict, prefix: str = "") -> None:
    """The options of `sampling.methods.METHOD` (a config's, or those a bundle's pipeline.json stores) checked
    before anything runs: an unknown option or a value out of range is one CoupledError, the option's name
    preceded by `prefix`."""
    method_settings(method)  # an unknown method: one line naming the valid ones
    if method == "predictive":
        check_predictive_options(options, prefix)
    engine_method = REFERENCE_METHODS.get(method, method)
    check_method_options(engine_method, {k: v for k, v in options.items() if k not in BUNDLE_CHECKS}, prefix)
    for name, value in options.items():
        if name in BUNDLE_CHECKS:
            BUNDLE_CHECKS[name](prefix + name, value)


def available_methods(bundle) -> tuple[list[str], dict]:
    """The methods this bundle can run, and {skipped method: why} for those whose nets the folder lacks."""
    from pathlib import Path

    methods, skipped = [], {}
    # a bundle's domain may add reference methods of its own (`Bundle.reference_methods`, `Bundle.method_nets`)
    nets = getattr(bundle, "method_nets", METHOD_NETS)
    for m in (*METHODS, *getattr(bundle, "reference_methods", REFERENCE_METHODS)):
        net = nets.get(m)
        if net and (bundle.folder is None or not (Path(bundle.folder) / f"{net}.safetensors").is_file()):
            skipped[m] = f"{bundle.folder} has no {net}.safetensors"
            continue
        methods.append(m)
    return methods, skipped
