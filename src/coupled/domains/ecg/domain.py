"""The ECG domain as one object, registered as "ecg": single-lead rhythm classification (normal / AF / other) of
10-second traces [N, 1, 2500] at 250 Hz in [-1, 1] (docs/ecg.md).

Data: the synthetic corpus of `synth.py` (patients disjoint across splits), or a user's PhysioNet/CinC 2017 folder
or WFDB records (`loaders.py`). Degradations: `degrade.py` (severity = noise-to-signal RMS ratio). Networks:
`networks.py`. Score: macro-F1 over the three classes (PhysioNet 2017's), accuracy and AF-vs-rest AUROC beside it.
"""

from __future__ import annotations

import copy

import numpy as np

from ...defaults import DEFAULTS
from ..registry import Domain, LabelledSignals, net_builder, register_domain
from .synth import CLASS_NAMES, LENGTH, RATE

ECG_DEFAULTS: dict = {
    **copy.deepcopy(DEFAULTS),
    "data": {"kind": "synthetic", "seed": 0},
    "corruptions": {
        # noise-to-signal RMS ratios; configs/ecg.yaml holds the levels `coupled calibrate` chose on validation
        "severities": {n: {"light": 0.5, "medium": 1.0, "heavy": 2.0}
                       for n in ("baseline_wander", "powerline", "emg", "electrode_motion", "mix")},
        "train_severity": {n: [0.1, 4.0] for n in ("baseline_wander", "powerline", "emg", "electrode_motion", "mix")},
        "calibration": {},
    },
    "classifier": {**DEFAULTS["classifier"], "net": {"num_classes": 3}},
}
# the config's `data` section: kind -> keys (the first kind is the default)
# synthetic `patients`: [train, val, test] patient counts instead of synth.SPLITS' (600, 100, 200), e.g. for tests
DATA_KINDS = {"synthetic": {"kind", "seed", "patients"},
              "cinc2017": {"kind", "seed", "root", "fractions"},
              "wfdb": {"kind", "seed", "root", "labels", "fractions"}}


class ECGDomain(Domain):
    """Synthetic (or loaded) single-lead ECG, five field degradations, a 1-D CNN rhythm classifier, a 1-D U-Net and
    a logit MLP; macro-F1 as the task score."""

    name = "ecg"
    commands = ("train", "evaluate", "reproduce", "calibrate", "tune", "demo")
    demo_config = "configs/ecg.yaml"  # `coupled demo --domain ecg`
    default_arch = {"classifier": "ecg_cnn", "signal": "ecg_unet", "logits": "ecg_logit_net"}
    # DACL (Zewail, arXiv 2509.20048; dacl.py): a robust encoder retrained on the training patients, run on the degraded
    # trace in place of the frozen classifier: a retrained reference that breaks the frozen-classifier premise.
    # `dacl_degraded` (not the paper's recipe): the same, trained on each clean trace and one degraded copy of it
    reference_methods = {"dacl": ("noisy", "dacl", "python benchmarks/ecg_dacl.py --out FOLDER"),
                         "dacl_degraded": ("noisy", "dacl_degraded", "python benchmarks/ecg_dacl.py --degraded-copies 1 "
                                           "--name dacl_degraded --out FOLDER")}
    shape_keys = ("length",)
    samples_per_second = float(RATE)
    data_kinds = DATA_KINDS
    # `coupled calibrate`: macro-F1 of the clean-trained classifier on validation at each level
    calibration_targets = {"light": 0.8, "medium": 0.6, "heavy": 0.4}

    def config_defaults(self) -> dict:
        return ECG_DEFAULTS

    # ---- data
    def load_splits(self, cfg: dict) -> dict:
        """train / val / test of the config's data section: the synthetic corpus (generated on the fly, ~3 s), or a
        CinC 2017 / WFDB folder split by record (`loaders.py`)."""
        import torch

        data = dict(cfg["data"])
        kind = data.get("kind", "synthetic")
        if kind != "synthetic":
            from .loaders import load_folder_splits

            return load_folder_splits(data)
        from ...errors import CoupledError
        from .synth import cached_split

        counts = data.get("patients") or [None] * 3
        if len(counts) != 3 or any(c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 3) for c in counts):
            raise CoupledError(f"data.patients must be three patient counts >= 3 (train, val, test), got {counts!r}")
        out = {}
        for split, n in zip(self.splits, counts):
            x, y, pid, _ = cached_split(split, int(data.get("seed", 0)), n)
            out[split] = LabelledSignals(torch.tensor(x), torch.tensor(y), len(CLASS_NAMES),
                                         f"ecg_synthetic/{split}")
        return out

    def dataset_name(self, cfg: dict) -> str:
        return f"ecg_{cfg['data'].get('kind', 'synthetic')}"

    # ---- corruptions
    @property
    def corruptions(self):
        from .degrade import CORRUPTIONS

        return CORRUPTIONS

    # ---- networks
    @property
    def networks(self) -> dict:
        from .networks import (LogitNet1d, LogitNetConfig, RhythmCNN, RhythmCNNConfig, SignalUNet1d,
                               SignalUNetConfig)

        from .dacl import DACLConfig, DACLNet

        return {"classifier": {"ecg_cnn": net_builder(RhythmCNN, RhythmCNNConfig), "ecg_dacl": net_builder(DACLNet, DACLConfig)},
                "signal": {"ecg_unet": net_builder(SignalUNet1d, SignalUNetConfig)},
                "logits": {"ecg_logit_net": net_builder(LogitNet1d, LogitNetConfig)}}

    def signal_shape(self, net):
        cfg = getattr(net, "cfg", None)
        return None if cfg is None else (1, cfg.length)

    # ---- metrics and score
    @property
    def signal_metrics(self) -> dict:
        from .metrics import snr_db

        return {"snr_db": snr_db}

    def task_metric(self, task=None) -> str:
        return "macro_f1"

    def item_scores(self, task, refs, hyps) -> np.ndarray:
        """Per item and class (tp, fp, fn) indicators [N, 3K] (`coupled.scores.macro_f1_counts`)."""
        from ...scores import macro_f1_counts

        refs = np.asarray(refs.cpu() if hasattr(refs, "cpu") else refs)
        hyps = np.asarray(hyps.cpu() if hasattr(hyps, "cpu") else hyps)
        return macro_f1_counts(refs, hyps, len(CLASS_NAMES))

    # ---- report and input
    def example_panel(self, signal, height: int = 120, seconds: float = 2.5):
        """The trace's first `seconds` drawn as a dark line on white ([height, ceil(125 * seconds)] in [-1, 1], what the
        report's grey panels show; every second sample, amplitude -1.5 .. 1.5 bottom to top, clipped, consecutive
        samples joined, the line 3 pixels thick): the report's grid draws panels at equal aspect, so a whole 10-s
        trace would be a hairline strip."""
        a = np.asarray(signal.detach().cpu() if hasattr(signal, "detach") else signal, dtype=np.float32).reshape(-1)
        a = a[: int(seconds * RATE):2]
        rows = np.round((1.0 - (np.clip(a, -1.5, 1.5) + 1.5) / 3.0) * (height - 1)).astype(int)
        img = np.ones((height, len(rows)), dtype=np.float32)
        for j, r in enumerate(rows):
            lo, hi = sorted((r, rows[j - 1] if j else r))
            img[max(lo - 1, 0):hi + 2, j] = -1.0
        return img

    def read_input(self, path):
        """A .npy trace at 250 Hz, or a WFDB record (path without extension) / CinC 2017 .mat, as [N, 1, 2500]."""
        from .loaders import read_record_segments

        return read_record_segments(path)


ECG = register_domain(ECGDomain())
