"""The image domain as one object, registered as "image": MNIST-style digits [N, C, H, W] in [-1, 1]."""

from __future__ import annotations

from ..registry import Domain, register_domain


def _builder(net_cls, cfg_cls):
    def build(config: dict):
        return net_cls(cfg_cls.from_dict(config))

    build.net_class = net_cls
    return build


class ImageDomain(Domain):
    """Data (mnist5k and the loaders of `data.load_dataset`), the image corruptions, the digit classifier, the
    signal U-Net and the logit net, PSNR/SSIM, argmax readout and accuracy, PNG/JPEG/.npy input."""

    name = "image"
    commands = ("train", "evaluate", "reproduce", "calibrate", "demo", "classify", "bench")
    default_arch = {"classifier": "digit_cnn", "signal": "signal_unet", "logits": "logit_net"}
    shape_keys = ("in_channels", "image_size")

    @property
    def data_kinds(self) -> dict:
        from ...schema import DATA_KINDS

        return DATA_KINDS

    # ---- data
    def load_splits(self, cfg: dict) -> dict:
        """train / val / test ImageSets of the config's data section."""
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

    def corrupt_set(self, signals, name, severity, seed, *, first_index=0):
        from .corruptions import corrupt

        return corrupt(signals, name, severity, seed, first_index=first_index)

    # ---- networks
    @property
    def networks(self) -> dict:
        from .networks import ClassifierConfig, DigitClassifier, LogitNet, LogitNetConfig, SignalUNet, SignalUNetConfig

        return {"classifier": {"digit_cnn": _builder(DigitClassifier, ClassifierConfig)},
                "signal": {"signal_unet": _builder(SignalUNet, SignalUNetConfig)},
                "logits": {"logit_net": _builder(LogitNet, LogitNetConfig)}}

    def signal_shape(self, net) -> tuple[int, int, int] | None:
        cfg = getattr(net, "cfg", None)
        return None if cfg is None else (cfg.in_channels, cfg.image_size, cfg.image_size)

    def arch_of(self, role: str, net) -> str:
        for arch, build in self.networks.get(role, {}).items():
            if isinstance(net, build.net_class):
                return arch
        return self.default_arch[role]

    # ---- metrics
    @property
    def signal_metrics(self) -> dict:
        from ...evaluation.metrics import psnr, ssim

        return {"psnr": psnr, "ssim": ssim}

    # ---- report and input
    def example_panel(self, signal):
        return signal[0].detach().cpu().numpy()  # the first channel

    def read_input(self, path, shape=(1, 28, 28), input_range=None):
        """A PNG/JPEG or .npy file as [N, C, H, W] in [-1, 1]."""
        from ...pipeline import read_images

        return read_images(path, shape, input_range)

    # ---- commands of its own
    def run_calibrate(self, cfg: dict, *, progress=True) -> str:
        from .calibrate import calibrate

        return str(calibrate(cfg))

    def run_classify(self, files, checkpoint, **options) -> int:
        from ...pipeline import classify_files

        return classify_files(files, checkpoint, **options)


IMAGE = register_domain(ImageDomain())
