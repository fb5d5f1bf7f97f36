"""A Whisper model as a frozen closed-vocabulary recogniser (optional: needs `transformers` and weights on disk).

Whisper decodes autoregressively, so a clean and a degraded utterance decoded independently give logit
sequences that need not line up step for step (spec 7.4). Here both are teacher-forced on one shared prefix
of words: step s of either sequence is Whisper's next-word distribution after the same s words, restricted
to the domain's closed vocabulary. Class 0 is end-of-text (it plays the blank's role); class i + 1 is
WORDS[i], scored by the first token of " word". Audio is peak-normalised before the log-mel, every time,
because Whisper's front end is not scale-invariant (spec 7.8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import CoupledError
from .audio import SAMPLE_RATE
from .corpus import WORDS

EOT = 0  # closed-vocabulary class of end-of-text


def _transformers():
    try:
        import transformers
    except ImportError:
        raise CoupledError("the Whisper adapter needs transformers: pip install 'coupled-diffusion[whisper]'") from None
    return transformers


class WhisperAdapter(nn.Module):
    """Closed-vocabulary, prefix-aligned per-step logits [B, S, K] from a Whisper model.

    Args:
        model: a transformers WhisperForConditionalGeneration (frozen here).
        feature_extractor: its WhisperFeatureExtractor (log-mel at 16 kHz).
        word_tokens: word -> token id of its first sub-word (with the leading space).
        prompt: decoder start tokens (e.g. <|startoftranscript|><|en|><|transcribe|><|notimestamps|>).
        eot: Whisper's end-of-text token id.
        peak: every waveform is scaled to this peak before the front end.
    """

    def __init__(self, model, feature_extractor, word_tokens: dict, prompt: list[int], eot: int,
                 vocab=WORDS, peak: float = 0.9):
        super().__init__()
        missing = [w for w in vocab if w not in word_tokens]
        if missing:
            raise CoupledError(f"word_tokens lacks {', '.join(missing[:5])}; give a token id for every vocabulary word")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.fe = feature_extractor
        self.vocab = tuple(vocab)
        self.prompt = [int(t) for t in prompt]
        self.register_buffer("class_tokens", torch.tensor([int(eot)] + [int(word_tokens[w]) for w in vocab]), persistent=False)
        self.peak = peak

    @classmethod
    def from_pretrained(cls, folder, word_tokens: dict | None = None, prompt: list[int] | None = None,
                        eot: int | None = None, vocab=WORDS):
        """Load Whisper from a local folder (no download). Without `word_tokens`/`prompt`/`eot`, they come
        from the folder's tokenizer (English transcription, no timestamps)."""
        tf = _transformers()
        folder = Path(folder)
        if not folder.is_dir():
            raise CoupledError(f"no Whisper model folder at {folder}; pass a folder saved by save_pretrained")
        model = tf.WhisperForConditionalGeneration.from_pretrained(folder, local_files_only=True)
        fe = tf.WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        if word_tokens is None or prompt is None or eot is None:
            tok = tf.WhisperTokenizer.from_pretrained(folder, local_files_only=True, language="en", task="transcribe")
            tok.set_prefix_tokens(predict_timestamps=False)
            word_tokens = word_tokens or {w: tok.encode(" " + w, add_special_tokens=False)[0] for w in vocab}
            prompt = prompt or list(tok.prefix_tokens)
            eot = tok.eos_token_id if eot is None else eot
        return cls(model, fe, word_tokens, prompt, eot, vocab)

    def features(self, waves: list[np.ndarray]) -> torch.Tensor:
        """Whisper log-mel [B, n_mels, 3000] of peak-normalised 16 kHz audio."""
        waves = [np.asarray(w, np.float32) * (self.peak / max(float(np.abs(w).max()), 1e-8)) for w in waves]
        feats = self.fe(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        return feats.to(next(self.model.parameters()).dtype)

    @torch.no_grad()
    def step_logits(self, waves: list[np.ndarray], prefix: list[list[int]]) -> torch.Tensor:
        """Teacher-forced closed-vocabulary logits [B, S, K], S = longest prefix + 1.

        Args:
            waves: float waveforms at 16 kHz.
            prefix: per item, the word classes (1..K-1) already said; step s is the distribution of the next
                word after prefix[:s]. Shorter prefixes are padded (their extra steps are meaningless).
        """
        if len(prefix) != len(waves):
            raise CoupledError(f"one prefix per waveform: got {len(prefix)} prefixes for {len(waves)} waveforms")
        S = max(len(p) for p in prefix) + 1
        ids = torch.full((len(waves), len(self.prompt) + S - 1), int(self.class_tokens[EOT]))
        ids[:, : len(self.prompt)] = torch.tensor(self.prompt)
        for i, p in enumerate(prefix):
            if p:
                ids[i, len(self.prompt): len(self.prompt) + len(p)] = self.class_tokens[torch.tensor(p)]
        out = self.model(input_features=self.features(waves), decoder_input_ids=ids).logits
        return out[:, len(self.prompt) - 1:, :][:, :S][..., self.class_tokens]

    @torch.no_grad()
    def greedy_prefix(self, waves: list[np.ndarray], max_words: int = 8) -> list[list[int]]:
        """Greedy closed-vocabulary decode: the word classes of each item, stopping at end-of-text."""
        prefix: list[list[int]] = [[] for _ in waves]
        done = [False] * len(waves)
        for _ in range(max_words):
            logits = self.step_logits(waves, prefix)
            for i, p in enumerate(prefix):
                if done[i]:
                    continue
                c = int(logits[i, len(p)].argmax())
                if c == EOT:
                    done[i] = True
                else:
                    p.append(c)
            if all(done):
                break
        return prefix

    def aligned_logits(self, clean: list[np.ndarray], degraded: list[np.ndarray], prefix_from: str = "clean"):
        """Logits of clean and degraded inputs on one shared prefix (spec 7.4): ([B,S,K], [B,S,K], prefix).

        Args:
            prefix_from: "clean" (training: the logit chain's target) or "degraded" (test time, no clean audio).
        """
        if prefix_from not in ("clean", "degraded"):
            raise CoupledError(f"prefix_from must be 'clean' or 'degraded', got {prefix_from!r}")
        prefix = self.greedy_prefix(clean if prefix_from == "clean" else degraded)
        return self.step_logits(clean, prefix), self.step_logits(degraded, prefix), prefix

    def transcribe(self, waves: list[np.ndarray]) -> list[str]:
        return [" ".join(self.vocab[c - 1] for c in p) for p in self.greedy_prefix(waves)]


def decode_steps(logits: torch.Tensor, vocab=WORDS) -> list[str]:
    """Readout of per-step logits [B, S, K]: argmax per step up to the first end-of-text."""
    out = []
    for row in logits.argmax(-1).tolist():
        words = []
        for c in row:
            if c == EOT:
                break
            words.append(vocab[c - 1])
        out.append(" ".join(words))
    return out
