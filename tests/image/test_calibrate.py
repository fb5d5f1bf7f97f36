"""Calibration on a grid (issue 20): corruptions whose severity acts in whole pixels."""

from coupled.config import load_config
from coupled.domains.image import calibrate as K
from coupled.evaluation.calibrate import grid_levels
from coupled.domains.image import corruptions as C

import torch


def test_grids_hold_every_distinct_severity_up_to_the_whole_image():
    assert K.GRIDS["occlusion"](28, 28) == list(range(29))  # side 28 covers the whole image
    factors = K.GRIDS["downsample"](28, 28)
    assert factors[0] == 1.0 and factors[-1] == 28.0 and factors == sorted(factors)
    ramp = torch.arange(28.0).expand(1, 1, 28, 28)
    sizes = [C.downsample(ramp, f)[0, 0, 0].unique().numel() for f in factors]
    assert sizes == list(range(28, 0, -1))  # one factor per coarse size, after rounding to 3 decimals


def test_grid_levels_take_the_last_point_before_the_first_drop_below_target():
    grid = [1, 2, 3, 4, 5, 6]
    accuracy = [0.98, 0.75, 0.69, 0.80, 0.40, 0.10]  # not monotone, as downsampling's is
    levels = grid_levels(grid, accuracy, {"light": 0.70, "medium": 0.40, "heavy": 0.20, "none": 0.99})
    assert levels == {"light": 2, "medium": 5, "heavy": 5, "none": 1}
    assert grid_levels(grid, [0.9] * 6, {"heavy": 0.2}) == {"heavy": 6}


def test_occlusion_config_extends_mnist_and_keeps_its_corruptions():
    base, cfg = load_config("configs/mnist.yaml"), load_config("configs/mnist_occlusion.yaml")
    sev = cfg["corruptions"]["severities"]
    assert list(sev) == [*base["corruptions"]["severities"], "occlusion", "downsample"]
    assert all(sev[k] == v for k, v in base["corruptions"]["severities"].items())
    assert cfg["output"] != base["output"]  # training it must not overwrite the bundle
    for name in ("occlusion", "downsample"):
        lo, hi = cfg["corruptions"]["train_severity"][name]
        assert lo <= min(sev[name].values()) and max(sev[name].values()) <= hi


def test_the_generic_search_gives_the_published_image_severities():
    """`coupled calibrate` runs the generic search (coupled/evaluation/calibrate.py) with the image domain's targets
    and bisection: on the bundled classifier it finds configs/mnist.yaml's severities again, here at the two levels
    whose searches meet accuracies exactly at the target (their side of it is the published one)."""
    from coupled.bundle import load_net
    from coupled.domains.registry import get_domain
    from coupled.evaluation.calibrate import bisect_level, score_function

    image = get_domain("image")
    cfg = load_config("configs/mnist.yaml")
    classifier, _ = load_net(cfg["output"], "classifier")
    val = image.load_splits(cfg)["val"]
    for name, level in (("gaussian_noise", "heavy"), ("gaussian_blur", "light")):
        score_at = score_function(image, classifier, val, name)
        search = image.calibration_search(name, cfg, val, score_at)
        assert bisect_level(score_at, search["targets"][level], search["bisect"]) == cfg["corruptions"]["severities"][name][level]
