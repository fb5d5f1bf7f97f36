"""The Bayes-limit domain ("gmm"): class-conditional Gaussian mixtures with exact denoisers (issue 18, item 4).

Signals are points of R^D drawn from `make_mixture` (the config's `data` section: dim, classes, geometry,
separation, seed, split sizes); the corruption is additive white Gaussian noise of standard deviation equal to
the severity. Nothing is trained: `coupled train` writes the bundle of closed forms (the Bayes classifier, the
exact observation-conditioned signal denoiser for the config's noise levels, the CARD-like Gaussian logit
denoiser), which `coupled evaluate` then runs like any other bundle. The closed forms are in `mixture.py`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ...atomic import atomic_write_json
from ...checkpoint import record_in_manifest, save_weights
from ...defaults import DEFAULTS
from ...engine import process_from_dict
from ...errors import CoupledError
from ...seeds import stream_seed
from ..registry import Domain, LabelledSignals, Registry, register_domain
from .mixture import make_mixture
from .networks import NETWORKS, MixtureNetConfig

MIXTURE_KEYS = ("dim", "classes", "geometry", "separation", "seed")
DATA_KEYS = {"kind", *MIXTURE_KEYS, "sizes"}
SIZES = {"train": 2000, "val": 1000, "test": 2000}

GMM_DEFAULTS = copy.deepcopy(DEFAULTS)
GMM_DEFAULTS["output"] = "checkpoints/bayes_limit"
GMM_DEFAULTS["data"] = {"kind": "gmm", "dim": 8, "classes": 4, "geometry": "means", "separation": 2.0, "seed": 0,
                        "sizes": dict(SIZES)}
GMM_DEFAULTS["corruptions"] = {"severities": {"gaussian_noise": {"light": 0.5, "medium": 1.0, "heavy": 2.0}},
                               "train_severity": {"gaussian_noise": [0.5, 2.0]}, "calibration": {}}
GMM_DEFAULTS["signal"]["process"] = {"kind": "vp", "num_train_steps": 1000, "schedule": "cosine"}
GMM_DEFAULTS["signal"]["prediction"] = "x0"
GMM_DEFAULTS["logits"]["process"] = {"kind": "vp", "num_train_steps": 1000, "schedule": "cosine"}
GMM_DEFAULTS["sampling"]["logits"] = {"steps": 5, "sampler": "ddim", "eta": 0.0}

CORRUPTIONS = Registry("gmm corruption")


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x, sigma, generator):
    """d = s + sigma n, n ~ N(0, I)."""
    return x + float(sigma) * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def mixture_config(cfg: dict) -> dict:
    """The mixture keys of a config's data section (with the defaults')."""
    data = {**GMM_DEFAULTS["data"], **cfg.get("data", {})}
    return {k: data[k] for k in MIXTURE_KEYS}


class GMMDomain(Domain):
    """Class-conditional Gaussian mixtures with closed-form denoisers and Bayes limit."""

    name = "gmm"
    commands = ("train", "evaluate")
    data_kinds = {"gmm": DATA_KEYS}
    signal_range = None  # points of R^D: estimates are not clipped

    def config_defaults(self) -> dict:
        return GMM_DEFAULTS

    def check_config(self, cfg: dict) -> None:
        mix = mixture_config(cfg)
        make_mixture(**mix)  # one line for a bad geometry or size
        k = cfg["classifier"]["net"].get("num_classes", mix["classes"])
        if k != mix["classes"]:
            raise CoupledError(f"classifier.net.num_classes={k} but data.classes={mix['classes']}; make them equal")

    def load_splits(self, cfg: dict) -> dict:
        mix = mixture_config(cfg)
        m = make_mixture(**mix)
        sizes = {**SIZES, **cfg.get("data", {}).get("sizes", {})}
        out = {}
        for i, split in enumerate(("train", "val", "test")):
            g = torch.Generator().manual_seed(stream_seed("data", int(mix["seed"]), 100 + i))
            x, y, _ = m.sample(int(sizes[split]), g)
            out[split] = LabelledSignals(x.float(), y, m.num_classes, f"{self.dataset_name(cfg)}/{split}")
        return out

    def dataset_name(self, cfg: dict) -> str:
        mix = mixture_config(cfg)
        return f"gmm-{mix['geometry']}-d{mix['dim']}-k{mix['classes']}-sep{mix['separation']:g}"

    @property
    def corruptions(self) -> Registry:
        return CORRUPTIONS

    @property
    def networks(self) -> dict:
        return NETWORKS

    @property
    def signal_metrics(self) -> dict:
        return {"mse": lambda x, ref: ((x.double() - ref.double()) ** 2).mean(dim=1)}

    # ---- `coupled train`: the closed forms written as a bundle (nothing to learn)
    def net_configs(self, cfg: dict) -> dict:
        """{role: network config} of the exact bundle of `cfg`: the data section's mixture; the signal net knows
        every noise level of the config's gaussian_noise severities; `signal.net` and `logits.net` may set
        logit_weight, error, error_seed (signal) and tau (logits)."""
        mix = mixture_config(cfg)
        levels = sorted({float(v) for v in cfg["corruptions"]["severities"].get("gaussian_noise", {}).values()})
        base = {**mix, "num_classes": mix["classes"]}
        out = {"classifier": MixtureNetConfig.from_dict({**base, **cfg["classifier"]["net"]}).to_dict()}
        for role, section in (("signal", "signal"), ("logits", "logits")):
            proc = process_from_dict(cfg[section]["process"]).to_dict()
            if proc["kind"] != "vp":
                raise CoupledError(f"the gmm domain's {section} chain runs a VP process; set {section}.process.kind: vp")
            own = dict(cfg[section]["net"])
            out[role] = MixtureNetConfig.from_dict({**base, "noise_levels": levels or [1.0], "process": proc, **own}).to_dict()
        return out

    def run_train(self, cfg: dict, *, stages=None, progress=True, **ignored) -> list:
        """Write the exact bundle into `cfg['output']`: classifier, signal and logits (safetensors + JSON) and
        pipeline.json, sealed by the manifest."""
        if stages and set(stages) - {"classifier"}:
            raise CoupledError("the gmm domain has nothing to train: `coupled train CONFIG` writes its closed forms")
        output = Path(cfg["output"])
        output.mkdir(parents=True, exist_ok=True)
        written = []
        for role, net_cfg in self.net_configs(cfg).items():
            net = self.build_network(role, None, net_cfg)
            meta = {"kind": role, "domain": self.name, "arch": next(iter(NETWORKS[role])), "net": net_cfg,
                    "stage": "closed_form"}
            if role == "classifier":
                meta.update(logit_scale=cfg["classifier"]["logit_scale"], num_classes=net_cfg["classes"])
            else:
                meta.update(process=net_cfg["process"], prediction="x0")
            if role == "signal":
                meta["clip"] = None
            name = role
            save_weights(output, name, net.state_dict(), meta)
            written.append(name)
        atomic_write_json(output / "pipeline.json", {"sampling": cfg["sampling"], "logit_scale": cfg["classifier"]["logit_scale"],
                                                     "name": cfg["name"], "severities": cfg["corruptions"]["severities"]})
        record_in_manifest(output / "pipeline.json")
        return [{"stage": "closed_form", "output": str(output), "networks": written}]


GMM = register_domain(GMMDomain())
