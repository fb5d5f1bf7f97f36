"""A toy domain of variable-length signals with frame logits and string answers (issue 15): the generic path a
speech-like domain runs on, small enough for a test.

Signals are [N, 1, T] (the channel axis is in the data, as the networks' 1-D convolutions take it), zero-padded
to the split's longest item, with `lengths` [N] between 12 and 40 samples. An item spells 3 to 10 symbols of
{a, b, c}, no symbol twice in a row, each over 4 samples: `a` a positive level, `b` a negative level, `c` a
level alternating in sign from sample to sample, each at a random amplitude with a little noise. Its label is
the symbols as words ("a c b a"), so the task metric is the word error rate (lower is better; per-item
(edits, words) pairs). Corruptions: additive white noise and sample dropout, over each item's valid extent.

Networks, each told the lengths of a padded batch and padding-exact (a padded item gets what it gets alone):
- classifier: signal [B, 1, T] -> frame logits [B, ceil(T / 2), K] over K = 4 classes (blank + 3 symbols),
  with `output_lengths`; trained with CTC (`classifier_loss`); read out by a greedy CTC decode (`readout`).
- signal denoiser: (x_t, t, observation, logits [B, F, K] or None, logits_mask, lengths) -> [B, 1, T].
- logit denoiser: (y_t [B, F, K], t, evidence, signal [B, 1, T], center, lengths (frames), signal_lengths).
Importing the module registers the domain as "toy1d_varlen"; a config selects it with
`domain: tests.toydomain.varlen:VARLEN`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coupled.domains.speech.metrics import edit_distance  # word-level Levenshtein
from coupled.domains.registry import Domain, LabelledSignals, Registry, register_domain

from tests.toydomain.domain import toy_defaults

SYMBOLS = ("a", "b", "c")
CLASSES = len(SYMBOLS) + 1  # CTC blank first
SEGMENT = 4  # samples per symbol
MIN_SYMBOLS, MAX_SYMBOLS = 3, 10  # 12 to 40 samples
SIZES = {"train": 256, "val": 24, "test": 24}


def make_split(n: int, seed: int, name: str) -> LabelledSignals:
    g = np.random.default_rng(seed)
    items, labels = [], []
    for _ in range(n):
        count = int(g.integers(MIN_SYMBOLS, MAX_SYMBOLS + 1))
        seq = [int(g.integers(len(SYMBOLS)))]
        while len(seq) < count:  # no symbol twice in a row: a greedy CTC decode collapses repeats
            seq.append(int((seq[-1] + g.integers(1, len(SYMBOLS))) % len(SYMBOLS)))
        parts = []
        for k in seq:
            amp = g.uniform(0.5, 0.9)
            shape = {0: np.ones(SEGMENT), 1: -np.ones(SEGMENT), 2: (-1.0) ** np.arange(SEGMENT)}[k]
            parts.append(amp * shape + 0.05 * g.standard_normal(SEGMENT))
        items.append(np.clip(np.concatenate(parts), -1, 1))
        labels.append(" ".join(SYMBOLS[k] for k in seq))
    lengths = torch.tensor([len(x) for x in items])
    signals = torch.zeros(n, 1, int(lengths.max()))
    for i, x in enumerate(items):
        signals[i, 0, : len(x)] = torch.tensor(x, dtype=torch.float32)
    return LabelledSignals(signals, labels, CLASSES, name, lengths)


# ---- corruptions: (one item's valid part [1, 1, n], severity, generator) -> the same shape
CORRUPTIONS = Registry("toy1d_varlen corruption")


@CORRUPTIONS.register("white_noise")
def white_noise(x, sigma, generator):
    return x + sigma * torch.randn(x.shape, generator=generator)


@CORRUPTIONS.register("dropout")
def dropout(x, p, generator):
    return torch.where(torch.rand(x.shape, generator=generator) < p, torch.zeros_like(x), x)


# ---- answers: greedy CTC decode and word errors
def greedy_decode(logits: torch.Tensor, lengths=None) -> list[str]:
    """Frame logits [B, T, K] -> per item the symbols of its first `lengths[i]` frames: argmax per frame,
    repeats collapsed, blanks dropped, joined by spaces."""
    best = logits.argmax(-1).tolist()
    out = []
    for i, row in enumerate(best):
        row = row if lengths is None else row[: int(lengths[i])]
        words, prev = [], 0
        for k in row:
            if k != prev and k != 0:
                words.append(SYMBOLS[k - 1])
            prev = k
        out.append(" ".join(words))
    return out


# ---- networks: each keeps its config as `cfg` (saved beside its weights)
@dataclass
class VarlenConfig:
    num_classes: int = CLASSES
    width: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


def _mask(lengths, size: int, like: torch.Tensor):
    """[B, 1, size] float mask of the first lengths[i] positions (None without lengths)."""
    if lengths is None:
        return None
    return (torch.arange(size, device=like.device)[None] < lengths.to(like.device)[:, None]).to(like.dtype)[:, None]


def _apply(h, mask):
    return h if mask is None else h * mask


def _frames(lengths):
    return (lengths + 1) // 2  # a 3-tap convolution of stride 2 and padding 1


def _time(t, like):
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1).expand(like.shape[0])[:, None]


class VarlenClassifier(nn.Module):
    """forward(x [B, 1, T], lengths [B] or None) -> frame logits [B, (T + 1) // 2, K]."""

    def __init__(self, cfg: VarlenConfig):
        super().__init__()
        self.cfg, w = cfg, cfg.width
        self.inp = nn.Conv1d(1, w, 5, padding=2)
        self.down = nn.Conv1d(w, w, 3, stride=2, padding=1)
        self.mid = nn.Conv1d(w, w, 3, padding=1)
        self.out = nn.Conv1d(w, cfg.num_classes, 1)

    def output_lengths(self, lengths):
        return _frames(lengths)

    def forward(self, x, lengths=None):
        m = _mask(lengths, x.shape[-1], x)
        h = _apply(F.silu(self.inp(_apply(x, m))), m)
        h = F.silu(self.down(h))
        fm = None if lengths is None else _mask(_frames(lengths), h.shape[-1], h)
        h = _apply(F.silu(self.mid(_apply(h, fm))), fm)
        return self.out(h).transpose(1, 2)


class VarlenSignalNet(nn.Module):
    """forward(x_t [B, 1, T], t [B], observation [B, 1, T], logits [B, F, K] or None, logits_mask [B] or None,
    lengths [B] or None) -> [B, 1, T]; each frame's logits condition the two samples it covers."""

    def __init__(self, cfg: VarlenConfig):
        super().__init__()
        self.cfg, w = cfg, cfg.width
        self.logit_mlp = nn.Conv1d(cfg.num_classes, w, 1)
        self.null_logits = nn.Parameter(torch.zeros(w))
        self.time = nn.Linear(1, w)
        self.inp = nn.Conv1d(2, w, 5, padding=2)
        self.mid = nn.Conv1d(w, w, 5, padding=2)
        self.out = nn.Conv1d(w, 1, 3, padding=1)

    def forward(self, x_t, t, observation, logits=None, logits_mask=None, lengths=None):
        B, _, T = x_t.shape
        null = self.null_logits[None, :, None].expand(B, -1, T)
        if logits is None:
            cond = null
        else:
            cond = self.logit_mlp(logits.to(x_t.dtype).transpose(1, 2)).repeat_interleave(2, dim=-1)[..., :T]
            if logits_mask is not None:
                cond = torch.where(logits_mask[:, None, None], cond, null)
        m = _mask(lengths, T, x_t)
        h = self.inp(_apply(torch.cat([x_t, observation], 1), m)) + cond + self.time(_time(t, x_t))[..., None]
        h = _apply(F.silu(h), m)
        h = _apply(F.silu(self.mid(h)), m)
        return self.out(h)


class VarlenLogitNet(nn.Module):
    """forward(y_t [B, F, K], t [B], evidence [B, F, K], signal [B, 1, T] or None, center [B, F, K] or None,
    lengths [B] (frames) or None, signal_lengths [B] or None) -> [B, F, K]."""

    def __init__(self, cfg: VarlenConfig):
        super().__init__()
        self.cfg, w, k = cfg, cfg.width, cfg.num_classes
        self.signal = nn.Conv1d(1, w, 3, stride=2, padding=1)  # the signal at the classifier's frame rate
        self.time = nn.Linear(1, w)
        self.inp = nn.Conv1d(3 * k, w, 3, padding=1)
        self.mid = nn.Conv1d(w, w, 3, padding=1)
        self.out = nn.Conv1d(w, k, 1)

    def forward(self, y_t, t, evidence, signal=None, center=None, lengths=None, signal_lengths=None):
        B, T, _ = y_t.shape
        center = torch.zeros_like(y_t) if center is None else center
        h = self.inp(torch.cat([y_t, evidence, center], -1).transpose(1, 2)) + self.time(_time(t, y_t))[..., None]
        if signal is not None:
            s = _apply(signal.to(y_t.dtype), _mask(signal_lengths, signal.shape[-1], y_t))
            h = h + self.signal(s)[..., :T]
        m = _mask(lengths, T, y_t)
        h = _apply(F.silu(_apply(h, m)), m)
        h = _apply(F.silu(self.mid(h)), m)
        return self.out(h).transpose(1, 2)


def _builder(cls):
    def build(config: dict):
        return cls(VarlenConfig(**{"num_classes": CLASSES, **config}))

    return build


def user_classifier(**net):
    """A classifier factory, as a user's `classifier.factory` names one."""
    return VarlenClassifier(VarlenConfig(**{"num_classes": CLASSES, **net}))


class VarlenDomain(Domain):
    name = "toy1d_varlen"
    commands = ("train", "evaluate", "reproduce")

    def config_defaults(self) -> dict:
        return toy_defaults("toy_symbols")

    def load_splits(self, cfg):
        seed = cfg["data"].get("seed", 0)
        return {name: make_split(n, 1000 * seed + i, f"toy_symbols/{name}") for i, (name, n) in enumerate(SIZES.items())}

    @property
    def corruptions(self):
        return CORRUPTIONS

    @property
    def networks(self):
        return {"classifier": {"conv": _builder(VarlenClassifier)}, "signal": {"conv": _builder(VarlenSignalNet)},
                "logits": {"conv": _builder(VarlenLogitNet)}}

    @property
    def signal_metrics(self):
        return {"mse": lambda x, ref: ((x.double() - ref.double()) ** 2).flatten(1).mean(dim=1)}

    def readout(self, logits, lengths=None):
        return greedy_decode(logits, lengths)

    def task_metric(self, task=None) -> str:
        return "wer"

    def item_scores(self, task, refs, hyps) -> np.ndarray:
        """Per item (edits, reference words): their column sums' ratio is the corpus WER."""
        return np.array([[edit_distance(r.split(), h.split()), len(r.split())] for r, h in zip(refs, hyps)],
                        dtype=np.float64).reshape(-1, 2)

    def classifier_loss(self, logits, labels, lengths=None, frame_lengths=None):
        """CTC of the frame logits [B, T, K] (blank 0) against the labels' symbols, over each item's valid frames."""
        targets = [torch.tensor([SYMBOLS.index(w) + 1 for w in label.split()]) for label in labels]
        frames = torch.full((logits.shape[0],), logits.shape[1]) if frame_lengths is None else frame_lengths
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, K]
        loss = F.ctc_loss(log_probs, torch.cat(targets).to(logits.device), frames.cpu(),
                          torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
        hyps = greedy_decode(logits.detach(), frames)
        exact = np.mean([h == r for h, r in zip(hyps, labels)])
        return loss, {"exact": torch.tensor(float(exact))}

    def example_panel(self, signal):
        a = np.asarray(signal.detach().cpu(), dtype=np.float32).reshape(-1)
        return np.repeat(a[None, :], 4, axis=0)


VARLEN = register_domain(VarlenDomain())
