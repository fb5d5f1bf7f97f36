"""The frozen word-level CTC recogniser: waveform -> frame-wise logits [B, T, K], and its greedy readout.

Front end: per-utterance RMS normalisation (so the recogniser is scale-invariant, spec 7.8), log-mel from
`torch.stft` with an energy floor, 4x subsampling by two strided convolutions, then dilated residual
convolution blocks. Frames beyond an utterance's length are zeroed before every convolution (after each
block's LayerNorm too), so the frames an utterance can read are the ones it reads alone, where the
convolutions pad with zeros: its logits do not depend on what it is batched with. Token 0 is the CTC
blank; token i + 1 is WORDS[i].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import CoupledError
from .audio import SAMPLE_RATE
from .corpus import WORDS, JSONConfig
from .frontend import frame_count, log_mel, mel_filterbank, valid_mask

BLANK = 0
LOGIT_SCALE = 0.8  # sigma_l of the per-frame standardisation the logit chain models (method.md section 1)


@dataclass(frozen=True)
class RecogniserConfig(JSONConfig):
    """Architecture and front end; saved as JSON beside the weights.

    Args:
        n_mels, n_fft, hop: log-mel front end at 16 kHz (hop 160 = 10 ms frames).
        mel_floor: added to mel energies (of RMS-normalised audio) before the log: the floor that keeps
            digital silence from reaching log(0) and keeps low-level noise from dominating the features.
        channels, dilations, kernel: residual blocks; dropout inside them while training.
        vocab: the words, in token order after the blank.
    """

    what = "recogniser option"

    n_mels: int = 64
    n_fft: int = 400
    hop: int = 160
    mel_floor: float = 1e-3
    channels: int = 128
    dilations: tuple = (1, 2, 4, 8, 1, 2, 4, 8)
    kernel: int = 3
    dropout: float = 0.0
    vocab: tuple = WORDS
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        def bad(name, want):
            raise CoupledError(f"RecogniserConfig.{name} must be {want}, got {getattr(self, name)!r}")

        def positive(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        for name in ("dilations", "vocab"):  # frozen: JSON and YAML hand back lists
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("n_mels", "n_fft", "hop", "channels", "kernel", "sample_rate"):
            if not positive(getattr(self, name)):
                bad(name, "a positive integer")
        if (isinstance(self.mel_floor, bool) or not isinstance(self.mel_floor, (int, float))
                or not 0 < self.mel_floor < math.inf):
            bad("mel_floor", "a finite number > 0")
        if not isinstance(self.dilations, tuple) or not self.dilations or not all(map(positive, self.dilations)):
            bad("dilations", "a non-empty list of positive integers")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            bad("dropout", "a number in [0, 1)")
        if not isinstance(self.vocab, tuple) or not self.vocab or not all(isinstance(w, str) and w for w in self.vocab):
            bad("vocab", "a non-empty list of words")

    @property
    def num_classes(self) -> int:
        return len(self.vocab) + 1


class Block(nn.Module):
    def __init__(self, c: int, k: int, d: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.norm = nn.LayerNorm(c)
        self.conv1 = nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2)
        self.conv2 = nn.Conv1d(c, c, 1)

    def forward(self, x, mask):
        # LayerNorm maps a zeroed padded frame to its bias; masked again so the dilated convolution sees zeros
        # there, as it does past the end of an utterance run alone (issue 21)
        h = self.norm(x.transpose(1, 2)).transpose(1, 2) * mask
        h = F.dropout(F.gelu(self.conv1(h)), self.dropout, self.training)
        return (x + self.conv2(h)) * mask


class CTCRecogniser(nn.Module):
    """Waveform [B, N] at 16 kHz (+ optional lengths [B]) -> frame logits [B, T, K] (T = frames // 4)."""

    def __init__(self, cfg: RecogniserConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or RecogniserConfig()
        self.register_buffer("mel_fb", mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        c = cfg.channels
        self.sub1 = nn.Conv1d(cfg.n_mels, c, 5, stride=2, padding=2)
        self.sub2 = nn.Conv1d(c, c, 5, stride=2, padding=2)
        self.blocks = nn.ModuleList(Block(c, cfg.kernel, d, cfg.dropout) for d in cfg.dilations)
        self.norm = nn.LayerNorm(c)
        self.out = nn.Conv1d(c, cfg.num_classes, 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid logit frames of waveforms of `lengths` samples (what `FrozenClassifier.frame_lengths` asks)."""
        return self.frames(lengths)

    def frames(self, n_samples: torch.Tensor | int):
        """Number of output frames for a waveform of n_samples."""
        t = n_samples // self.cfg.hop + 1
        for _ in range(2):
            t = (t - 1) // 2 + 1
        return t

    def features(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, n_mels, frames] of RMS-normalised audio (statistics over each utterance's own samples)."""
        c = self.cfg
        return log_mel(wave, lengths, self.mel_fb, self.window, c.n_fft, c.hop, c.mel_floor)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if wave.dim() == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[-1], device=wave.device, dtype=torch.long)
        return self.forward_features(self.features(wave, lengths), frame_count(lengths, self.cfg.hop))

    def forward_features(self, feats: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Frame logits [B, T, K] from log-mel features [B, n_mels, T0] (what `features` returns).

        Args:
            feats: log(mel energy + mel_floor) of RMS-normalised audio, e.g. a `LogMel` representation's
                `log_mel(rep)`: the recogniser then reads a mel estimate without resynthesising audio.
            frames: valid feature frames [B] (default all T0); logits past frames(...) are computed from zeros.
        """
        frames = torch.full((feats.shape[0],), feats.shape[-1], device=feats.device, dtype=torch.long) \
            if frames is None else frames
        # a fixed affine instead of batch statistics: log(mel_floor) maps near -1, loud speech near +1
        feats = (feats - math.log(self.cfg.mel_floor) / 2) / (-math.log(self.cfg.mel_floor) / 2)
        t0 = frames
        feats = feats * valid_mask(t0, feats.shape[-1])[:, None]
        h = F.gelu(self.sub1(feats))
        t1 = (t0 - 1) // 2 + 1
        h = h * valid_mask(t1, h.shape[-1])[:, None]
        h = F.gelu(self.sub2(h))
        t2 = (t1 - 1) // 2 + 1
        mask = valid_mask(t2, h.shape[-1])[:, None].to(h.dtype)
        h = h * mask
        for b in self.blocks:
            h = b(h, mask)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.out(h).transpose(1, 2)


def greedy_decode(logits: torch.Tensor, lengths=None, vocab=WORDS) -> list[str]:
    """Greedy CTC readout: best token per frame, merge repeats, drop blanks (token 0), map tokens to words.

    Args:
        logits: frame-wise logits [B, T, K] (or [T, K] for one utterance).
        lengths: valid frames per item [B] (default: all T).
        vocab: words for tokens 1..K-1.
    """
    if logits.dim() == 2:
        logits = logits[None]
    best = logits.argmax(-1).cpu().numpy()
    lengths = [best.shape[1]] * len(best) if lengths is None else [int(x) for x in lengths]
    out = []
    for row, n in zip(best, lengths):
        words, prev = [], BLANK
        for tok in row[:n]:
            if tok != prev and tok != BLANK:
                words.append(vocab[tok - 1])
            prev = tok
        out.append(" ".join(words))
    return out


def encode(text: str, vocab=WORDS) -> list[int]:
    """Token ids of a transcript (words outside the vocabulary are an error)."""
    index = {w: i + 1 for i, w in enumerate(vocab)}
    try:
        return [index[w] for w in text.split()]
    except KeyError as e:
        raise CoupledError(f"word {e.args[0]!r} is not in the recogniser's vocabulary ({', '.join(vocab)})") from None


def collate(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad float waveforms into [B, N] with their lengths [B]."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.as_tensor(np.asarray(w, dtype=np.float32))
    return batch, lengths


@torch.no_grad()
def transcribe(model: CTCRecogniser, waves: list[np.ndarray], batch_size: int = 64, return_logits: bool = False):
    """Greedy transcripts of float waveforms (batched by length so padding stays small)."""
    model.eval()
    order = np.argsort([len(w) for w in waves])
    texts: list = [None] * len(waves)
    logits_out: list = [None] * len(waves)
    for s in range(0, len(waves), batch_size):
        idx = order[s: s + batch_size]
        x, n = collate([waves[i] for i in idx])
        device = next(model.parameters()).device  # the model may sit on a GPU (--device); the readout runs on the CPU
        logits = model(x.to(device), n.to(device)).cpu()
        frames = model.frames(n)
        for i, t, L, f in zip(idx, greedy_decode(logits, frames, model.cfg.vocab), logits, frames):
            texts[i] = t
            if return_logits:
                logits_out[i] = L[: int(f)].clone()
    return (texts, logits_out) if return_logits else texts


def save_recogniser(model: CTCRecogniser, folder, extra: dict | None = None) -> None:
    """Write the recogniser as the bundle's classifier: classifier.safetensors and classifier.json (its
    architecture as `net`, the domain, `extra` such as training settings), sealed in the folder's manifest,
    so that `coupled.bundle.load_bundle` and `load_recogniser` read it as any domain's classifier."""
    from ...checkpoint import save_weights

    meta = {"kind": "classifier", "domain": "speech", "arch": "ctc_conv", "net": model.cfg.to_dict(),
            "num_classes": model.cfg.num_classes, "logit_scale": LOGIT_SCALE, "frozen": True, **(extra or {})}
    save_weights(folder, "classifier", model.state_dict(), meta)


def load_recogniser(folder) -> CTCRecogniser:
    """The frozen recogniser of a bundle folder (classifier.safetensors + classifier.json, checked against the
    folder's manifest; no pickles), in eval mode."""
    from ...checkpoint import load_state, load_weights

    folder = Path(folder)
    if not (folder / "classifier.json").is_file():
        raise CoupledError(f"no speech recogniser in {folder} (classifier.safetensors + classifier.json); train one with "
                           "coupled train configs/speech.yaml, or pass --checkpoint checkpoints/speech")
    tensors, meta = load_weights(folder, "classifier")
    if meta.get("domain") != "speech" or "net" not in meta:
        raise CoupledError(f"{folder / 'classifier.json'} is not a speech recogniser (domain {meta.get('domain')!r}); "
                           "pass a speech bundle such as checkpoints/speech")
    model = CTCRecogniser(RecogniserConfig.from_dict(meta["net"]))
    load_state(model, tensors, str(folder / "classifier.safetensors"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
