"""The methods an evaluation can name beyond the engine's strategies, and the options each may set.

A leaf above the engine: the schema checks `sampling.methods` against `method_settings`, the bundle loads the
networks a method needs (`SIGNAL_NETS`, `METHOD_NETS`), and evaluation lists `REFERENCE_METHODS` beside the
engine's `METHODS`.
"""

from __future__ import annotations

from .engine import METHODS, method_options
from .errors import CoupledError

# Networks of the baselines (stages card, finetuned, sequential), loaded on first use when the folder has them.
SIGNAL_NETS = {"joint": "signal", "pretrained": "signal_pretrained", "sequential": "signal_sequential"}
# Evaluation-level methods that are not strategies of the engine: (the engine method they run, what they swap)
REFERENCE_METHODS = {"finetuned_classifier": "noisy"}
# the network file of the folder a method needs beyond the bundle's own three
METHOD_NETS = {"card": "card", **dict.fromkeys(REFERENCE_METHODS, "classifier_finetuned")}
# Options the bundle handles before the strategy sees them (which nets and chain settings a method runs with)
BUNDLE_OPTIONS = ("signal_guidance", "signal_net", "signal_eta", "classifier_gradient")


def method_settings(method: str) -> list[str]:
    """The options `sampling.methods.METHOD` may set: the engine method's own, then BUNDLE_OPTIONS."""
    engine_method = REFERENCE_METHODS.get(method, method)
    if engine_method not in METHODS:
        raise CoupledError(f"unknown method {method!r}; choose one of: {', '.join((*METHODS, *REFERENCE_METHODS))}")
    return [*method_options(engine_method), *BUNDLE_OPTIONS]
