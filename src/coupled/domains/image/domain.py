"""The image domain as one object, registered as "image": MNIST-style digits [N, C, H, W] in [-1, 1]."""

from __future__ import annotations

import copy

from ...defaults import DEFAULTS
from ..registry import Domain, net_builder, register_domain

# the generic defaults with the image experiment's data and corruptions (configs/mnist.yaml starts from these)
IMAGE_DEFAULTS: dict = {
    **copy.deepcopy(DEFAULTS),
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
}


class ImageDomain(Domain):
    """Data (mnist5k and the loaders of `data.load_dataset`), the image corruptions, the digit classifier, the
    signal U-Net and the logit net, PSNR/SSIM, argmax readout and accuracy, PNG/JPEG/.npy input."""

    name = "image"
    commands = ("train", "evaluate", "reproduce", "calibrate", "demo", "classify", "bench", "tune")
    demo_config = "configs/mnist.yaml"
    default_arch = {"classifier": "digit_cnn", "signal": "signal_unet", "logits": "logit_net"}
    shape_keys = ("in_channels", "image_size")

    def config_defaults(self) -> dict:
        return IMAGE_DEFAULTS

    @property
    def data_kinds(self) -> dict:
        from .data import DATA_KINDS

        return DATA_KINDS

    # ---- data
    def load_splits(self, cfg: dict) -> dict:
        """train / val / test splits (LabelledSignals) of the config's data section."""
        from .data import load_dataset, load_mnist5k, stratified_split

        data = dict(cfg["data"])
        kind = data.pop("kind", "mnist5k")
        if kind == "mnist5k":
            return load_mnist5k(**data)
        full = load_dataset(kind, **{k: v for k, v in data.items() if k != "seed"})
        parts = stratified_split(full.labels, (0.7, 0.1, 0.2), data.get("seed", 0))
        return {name: full.subset(idx) for name, idx in zip(("train", "val", "test"), parts)}

    def dataset_name(self, cfg: dict) -> str:
        return cfg["data"].get("kind", "mnist5k")

    # ---- corruptions
    @property
    def corruptions(self):
        from .corruptions import CORRUPTIONS

        return CORRUPTIONS

    def corruption(self, spec: str):
        from .corruptions import corruption_from_config

        return corruption_from_config(spec)

    def corrupt_set(self, signals, name, severity, seed, *, first_index=0, lengths=None, indices=None, item_seeds=None):
        """`corruptions.corrupt` (its image shape and severity checks), one generator per item."""
        if lengths is not None or indices is not None:  # a padded split, or seeds by index: the generic way
            return super().corrupt_set(signals, name, severity, seed, first_index=first_index, lengths=lengths,
                                       indices=indices, item_seeds=item_seeds)
        from .corruptions import corrupt

        return corrupt(signals, name, severity, seed, first_index=first_index, item_seeds=item_seeds)

    def linear_measurement(self, name, severity, seed, data):
        """occlusion / occlusion_noise: an inpainting mask per item (the box `corrupt_set` drew for that item);
        downsample: area pooling and nearest upsampling as one separable operator; gaussian_blur: the
        reflect-padded separable blur; gaussian_noise: the identity with noise std = severity (`operators.py`)."""
        from .operators import linear_measurement

        return linear_measurement(self, name, severity, seed, data)

    # ---- networks
    @property
    def networks(self) -> dict:
        from .networks import ClassifierConfig, DigitClassifier, LogitNet, LogitNetConfig, SignalUNet, SignalUNetConfig

        return {"classifier": {"digit_cnn": net_builder(DigitClassifier, ClassifierConfig)},
                "signal": {"signal_unet": net_builder(SignalUNet, SignalUNetConfig)},
                "logits": {"logit_net": net_builder(LogitNet, LogitNetConfig)}}

    def signal_shape(self, net) -> tuple[int, int, int] | None:
        cfg = getattr(net, "cfg", None)
        return None if cfg is None else (cfg.in_channels, cfg.image_size, cfg.image_size)

    # ---- metrics
    @property
    def signal_metrics(self) -> dict:
        from .metrics import psnr, ssim

        return {"psnr": psnr, "ssim": ssim}

    # ---- report and input
    def example_panel(self, signal):
        return signal[0].detach().cpu().numpy()  # the first channel

    def read_input(self, path, shape=(1, 28, 28), input_range=None, polarity="auto", note=print):
        """A PNG/JPEG or .npy file as [N, C, H, W] in [-1, 1], in the polarity the networks read (`files.py`)."""
        from .files import read_for_classify

        return read_for_classify(path, shape, input_range, polarity, note)

    # ---- commands of its own
    def calibration_search(self, name: str, cfg: dict, val, score_at) -> dict:
        """The image targets and search of corruption `name` (domains/image/calibrate.py): accuracy 70/40/20% for
        the noises (85/70/50% for blur), by bisection, or on the grid of a corruption acting in whole pixels."""
        from .calibrate import calibration_search

        return calibration_search(name, cfg, val, score_at)


IMAGE = register_domain(ImageDomain())
