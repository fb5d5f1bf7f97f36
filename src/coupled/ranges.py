"""The value range of inputs a user passes: declared ('0..255', '0..1', '-1..1', 'LO..HI' or a pair) or checked,
and converted to the [-1, 1] the networks were trained on. Shared by the pipeline and the domains' file readers."""

from __future__ import annotations

import math
import numbers

import torch

from .engine import check_finite
from .errors import CoupledError

NAMED_RANGES = {"0..255": (0.0, 255.0), "0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0)}


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


def fmt(v: float) -> str:
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
    seen = f"[{fmt(float(x.min()))}, {fmt(float(x.max()))}]"
    want = f"[{fmt(lo)}, {fmt(hi)}]"
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
