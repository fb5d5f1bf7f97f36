"""Choose light / medium / heavy severities on the validation split, from the clean-trained classifier.

Targets (accuracy of the frozen classifier on corrupted validation digits): noise corruptions 70% / 40% /
20%, blur 85% / 70% / 50%; a user's corruption (registered, or "module.path:function" in the config) gets the
noise targets. Accuracy falls monotonically with severity, so each is found by bisection.
"""

from __future__ import annotations

import torch

from .corruptions import corrupt

TARGETS = {
    "pixel_noise": ({"light": 0.70, "medium": 0.40, "heavy": 0.20}, 1.0),
    "gaussian_noise": ({"light": 0.70, "medium": 0.40, "heavy": 0.20}, 4.0),
    "gaussian_blur": ({"light": 0.85, "medium": 0.70, "heavy": 0.50}, 6.0),
}


@torch.no_grad()
def accuracy_at(classifier, data, name: str, severity: float, seed: int) -> float:
    d = corrupt(data.signals, name, severity, seed)
    return (classifier(d).argmax(-1) == data.labels).float().mean().item()


def _targets_and_top(name: str, cfg: dict, classifier, val, seed: int) -> tuple[dict, float]:
    """A corruption's accuracy targets and the top of its severity search. One outside TARGETS (a user's,
    registered or "module.path:function") gets the noise targets and the top of its training range, or,
    without one, 1 doubled until the classifier falls below the heavy target."""
    if name in TARGETS:
        return TARGETS[name]
    targets = TARGETS["pixel_noise"][0]
    train_range = cfg["corruptions"]["train_severity"].get(name)
    if train_range and train_range[1] > 0:
        return targets, float(train_range[1])
    top = 1.0
    while top < 1e6 and accuracy_at(classifier, val, name, top, seed) > targets["heavy"]:
        top *= 2
    return targets, top


def calibrate(cfg: dict, domain, iterations: int = 14, seed: int = 777) -> dict:
    """{corruption: {level: severity}} for every corruption the config names (in `severities` or
    `train_severity`), and the validation accuracy measured at each, by bisection. `domain`: the image domain
    (its validation split and the classifier it builds)."""
    from ...bundle import load_net

    classifier, _ = load_net(cfg["output"], "classifier", "classifier", domain.name)
    val = domain.load_splits(cfg)["val"]
    names = list(dict.fromkeys([*cfg["corruptions"]["severities"], *cfg["corruptions"]["train_severity"]]))
    severities, measured, all_targets = {}, {}, {}
    for name in names:
        targets, top = _targets_and_top(name, cfg, classifier, val, seed)
        all_targets[name] = targets
        severities[name], measured[name] = {}, {}
        for level, target in targets.items():
            lo, hi = 0.0, top
            for _ in range(iterations):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if accuracy_at(classifier, val, name, mid, seed) > target else (lo, mid)
            sev = round((lo + hi) / 2, 3)
            severities[name][level] = sev
            measured[name][level] = round(accuracy_at(classifier, val, name, sev, seed), 3)
    return {"severities": severities, "val_accuracy": measured, "targets": all_targets}
