"""The image domain's calibration targets and searches: `coupled calibrate` (coupled/evaluation/calibrate.py, the
generic search) chooses light / medium / heavy severities on the validation split, from the clean-trained
classifier, with these.

Targets (accuracy of the frozen classifier on corrupted validation digits): noise corruptions 70% / 40% /
20%, blur 85% / 70% / 50%; a user's corruption (registered, or "module.path:function" in the config) gets the
noise targets. Accuracy falls monotonically with severity, so each is found by bisection.

Occlusion and downsampling (issue 20) also take the noise targets, so that their levels mean the same accuracy
drops as the noises'. Their severities act in whole pixels (a box side; round(28 / factor) pixels per side),
so the accuracy is a step function of the severity, and for downsampling not even a monotone one (13 uneven
blocks lose more than 12 even ones); bisection would land on a jump. They are searched on the grid of every
distinct severity instead (box sides 0..28: a box of side 28 covers the whole image, which the classifier
reads as one class, chance; factors 28 / m for m = 28..1 pixels per side), each level taking the last
candidate before the accuracy first falls below its target, as bisection's lower end would: its accuracy is
at least the target, and the grid has nothing between it and the next candidate.
"""

from __future__ import annotations

NOISE_TARGETS = {"light": 0.70, "medium": 0.40, "heavy": 0.20}

# corruption -> (accuracy targets, top of the bisection; None: searched on its GRID instead)
TARGETS = {
    "pixel_noise": (NOISE_TARGETS, 1.0),
    "gaussian_noise": (NOISE_TARGETS, 4.0),
    "gaussian_blur": ({"light": 0.85, "medium": 0.70, "heavy": 0.50}, 6.0),
    "occlusion": (NOISE_TARGETS, None),
    "occlusion_noise": (NOISE_TARGETS, None),
    "downsample": (NOISE_TARGETS, None),
}


def _box_sides(h: int, w: int) -> list[int]:
    return list(range(min(h, w) + 1))


def _factors(h: int, w: int) -> list[float]:
    """One factor per coarse size m = min(h, w)..1 (rounded to 3 decimals, which keeps round(side / f) = m)."""
    return [round(min(h, w) / m, 3) for m in range(min(h, w), 0, -1)]


# corruption -> its distinct severities, ascending, for images h x w
GRIDS = {"occlusion": _box_sides, "occlusion_noise": _box_sides, "downsample": _factors}


def _targets_and_top(name: str, cfg: dict, score_at) -> tuple[dict, float]:
    """A corruption's accuracy targets and the top of its severity search. One outside TARGETS (a user's,
    registered or "module.path:function") gets the noise targets and the top of its training range, or,
    without one, 1 doubled until the classifier falls below the heavy target."""
    if name in TARGETS:
        return TARGETS[name]
    targets = NOISE_TARGETS
    train_range = cfg["corruptions"]["train_severity"].get(name)
    if train_range and train_range[1] > 0:
        return targets, float(train_range[1])
    top = 1.0
    while top < 1e6 and score_at(top) > targets["heavy"]:
        top *= 2
    return targets, top


def calibration_search(name: str, cfg: dict, val, score_at) -> dict:
    """`Domain.calibration_search` for images: the grid of every distinct severity of a corruption in GRIDS (for
    the split's image size), else bisection up to its top."""
    targets, top = _targets_and_top(name, cfg, score_at)
    if name in GRIDS:
        return {"targets": targets, "grid": GRIDS[name](*val.signals.shape[-2:])}
    return {"targets": targets, "bisect": top}
