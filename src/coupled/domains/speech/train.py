"""Training the frozen recogniser: CTC on clean synthetic speech with a noise floor, cosine-decayed LR.

Without the noise floor (white noise at 30-50 dB SNR on most training items) a recogniser trained on
eSpeak's exact digital silence collapses as soon as any noise is present; with a decaying learning rate the
validation accuracy stops swinging from one evaluation to the next.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ...threads import use_threads
from .config import TRAIN_DEFAULTS
from .corpus import CorpusConfig, build_corpus, built_corpus, corpus_root, is_corpus, load_split
from .degrade import scale_noise, white_noise
from .metrics import keyword_accuracy, wer
from .recogniser import CTCRecogniser, RecogniserConfig, collate, encode, save_recogniser, transcribe


def evaluate_clean(model: CTCRecogniser, utts) -> dict:
    """Digit WER and keyword accuracy of `model` on clean utterances."""
    hyps = transcribe(model, [u.wave for u in utts])
    d = [(u.text, h) for u, h in zip(utts, hyps) if u.task == "digits"]
    k = [(u.text, h) for u, h in zip(utts, hyps) if u.task == "keywords"]
    out = {}
    if d:
        out["digit_wer"] = wer([r for r, _ in d], [h for _, h in d])
    if k:
        out["keyword_accuracy"] = keyword_accuracy([r for r, _ in k], [h for _, h in k])
    return out


def _speed(w: np.ndarray, factor: float) -> np.ndarray:
    """Play `w` `factor` times faster (polyphase resampling by the nearest twentieths)."""
    from scipy.signal import resample_poly

    down = int(round(20 * factor))
    return w if down == 20 else resample_poly(w, 20, down).astype(np.float32)


def train_recogniser(corpus_root, out, settings: dict | None = None, progress: bool = True,
                     val_items: int | None = None) -> dict:
    """Train the recogniser on the corpus's train split and bundle it into `out` (safetensors + JSON + log).

    Args:
        corpus_root: a built corpus (`coupled data speech`).
        out: bundle folder (recogniser.safetensors, recogniser.json, training_log.jsonl).
        settings: keys of TRAIN_DEFAULTS (unknown keys are an error).
        progress: tqdm bar.
        val_items: limit the validation items per task (None: the whole split).
    Returns the final validation figures and the wall time.
    """
    from tqdm import tqdm

    from ...errors import CoupledError

    s = dict(TRAIN_DEFAULTS)
    for k, v in (settings or {}).items():
        if k not in TRAIN_DEFAULTS:
            raise CoupledError(f"unknown recogniser training option '{k}'; valid: {', '.join(sorted(TRAIN_DEFAULTS))}")
        s[k] = v
    use_threads(s["num_threads"])  # 0: the cores torch can use (coupled.threads)
    torch.manual_seed(s["seed"])
    rng = np.random.default_rng(s["seed"])
    train = load_split(corpus_root, "train")
    val = load_split(corpus_root, "val", max_items=val_items)
    waves = [u.audio for u in train]  # int16 as stored: half the memory; converted per batch
    targets = [encode(u.text) for u in train]
    model = CTCRecogniser(RecogniserConfig.from_dict(s["net"]))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0}],
                            lr=s["lr"])

    def lr_at(step):
        if step < s["warmup"]:
            return s["lr"] * (step + 1) / s["warmup"]
        frac = (step - s["warmup"]) / max(1, s["steps"] - s["warmup"])
        return s["lr_min"] + 0.5 * (s["lr"] - s["lr_min"]) * (1 + math.cos(math.pi * frac))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.jsonl"
    log = log_path.open("w")
    t0 = time.time()
    bar = tqdm(range(s["steps"]), desc="recogniser", disable=not progress)
    running = None
    for step in bar:
        idx = rng.integers(0, len(train), s["batch_size"])
        batch = []
        for i in idx:
            w = waves[i].astype(np.float32) / 32768
            if rng.random() < s["speed_prob"]:  # speed perturbation: tempo and pitch together, as a new voice
                w = _speed(w, rng.uniform(*s["speed"]))
            shift = int(rng.integers(0, int(s["max_shift"] * 16000) + 1))
            w = np.concatenate([np.zeros(shift, np.float32), w])
            if rng.random() < s["noise_prob"]:
                w = w + scale_noise(w, white_noise(len(w), rng), rng.uniform(*s["noise_snr"]))
            batch.append(w)
        x, n = collate(batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        model.train()
        logits = model(x, n)
        frames = model.frames(n)
        tgt = [torch.tensor(targets[i]) for i in idx]
        loss = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), torch.cat(tgt), frames,
                          torch.tensor([len(t) for t in tgt]), blank=0, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}")
        rec = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step), "seconds": round(time.time() - t0, 1)}
        if (step + 1) % s["eval_every"] == 0 or step + 1 == s["steps"]:
            rec.update({f"val_{k}": round(v, 4) for k, v in evaluate_clean(model, val).items()})
            if progress:
                tqdm.write(json.dumps(rec))
        if step == 0 or (step + 1) % 25 == 0 or "val_digit_wer" in rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
    log.close()
    wall = time.time() - t0
    final = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
    save_recogniser(model, out, extra={"training": s, "corpus": json.loads((Path(corpus_root) / "manifest.json").read_text())["config"],
                                       "validation": final, "train_seconds": round(wall, 1)})
    return {**final, "train_seconds": wall}


def train_from_config(cfg: dict, progress: bool = True) -> dict:
    """`coupled train configs/speech.yaml`: train the recogniser of a speech config into its `output`."""
    root = corpus_root(cfg)
    if not is_corpus(root) and not (root.is_dir() and any(root.iterdir())):
        # training (and `coupled reproduce`) synthesises a missing corpus, as `coupled data speech` would; a folder of
        # other files is refused by built_corpus with the command to run
        build_corpus(CorpusConfig.from_dict(cfg["corpus"]), root, progress=progress)
    root = built_corpus(cfg)
    return train_recogniser(root, cfg["output"], cfg["recogniser"], progress=progress)
