"""The domain-agnostic engine: processes, samplers, chains, strategies and the frozen-classifier wrapper.

Knows tensors and callables only; imports nothing from domains, training or the CLI (torch alone).
"""

from .chains import Chain, ChainState
from .classifier import FrozenClassifier, check_finite, standardise
from .guidance import GuidedLogits
from .parameterization import PREDICTIONS, Denoiser, output_from_x0, training_target, x0_from_output
from .operators import (AreaDownsample, CirculantBlur, Identity, LinearOperator, Mask, Measurement, Separable,
                        Zero)
from .processes import CentredProcess, VPProcess, process_from_dict, randn
from .samplers import (SAMPLER_OPTIONS, SAMPLERS, ZERO_SHOT, ddim_step, ddnm_step, ddpm_step, dps_step, pc_step,
                       pigdm_step, sample, sampler_options)
from .strategies import (
    BASELINES,
    COUPLED,
    METHODS,
    NOISELESS,
    PAPER_METHODS,
    SIGNAL_METHODS,
    Coupling,
    StepEvent,
    StrategyResult,
    alternating,
    check_method_options,
    expected_calls,
    logit_trajectory,
    logits_only,
    method_options,
    nested,
    noisy,
    one_step,
    parallel,
    parallel_schedule,
    predictive,
    predictive_input,
    purification,
    readouts,
    refresh_steps,
    run_method,
    sequential,
    sequential_ensemble,
    signal_trajectory,
    switch_step,
)
from .conditioning import Visit, plan  # noqa: E402  (reads the strategies' rules)


def item_generators(seeds, device="cpu"):
    """One seeded `torch.Generator` per item, so results do not depend on batch size or order."""
    import torch

    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


__all__ = [
    "Chain", "ChainState", "FrozenClassifier", "GuidedLogits", "standardise", "check_finite", "PREDICTIONS", "Denoiser",
    "output_from_x0", "training_target", "x0_from_output", "CentredProcess", "VPProcess", "process_from_dict",
    "randn", "SAMPLERS", "ddim_step", "ddpm_step", "pc_step", "sample", "METHODS", "Coupling", "StrategyResult",
    "alternating", "check_method_options", "expected_calls", "logits_only", "method_options", "nested", "noisy", "parallel",
    "refresh_steps", "run_method", "sequential", "switch_step", "item_generators", "BASELINES", "COUPLED",
    "PAPER_METHODS", "SIGNAL_METHODS", "NOISELESS", "one_step", "predictive", "predictive_input", "parallel_schedule", "purification", "readouts", "sequential_ensemble", "SAMPLER_OPTIONS",
    "sampler_options", "StepEvent", "signal_trajectory", "logit_trajectory",
    "Visit", "plan", "ZERO_SHOT", "dps_step", "pigdm_step", "ddnm_step", "LinearOperator", "Identity", "Zero", "Mask",
    "CirculantBlur", "AreaDownsample", "Separable", "Measurement",
]
