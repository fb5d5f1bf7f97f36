"""Training stages on PyTorch Lightning: classifier, signal pre-training, logit pre-training, joint fine-tuning.

Each stage is one LightningModule around a loss function of the spec's section 4; the same code runs on
one CPU or on many GPUs with DDP. Targets never use labels, except the classifier's own training. Every
random draw of a step comes from a generator seeded by (seed, stage, step, rank), so a resumed run draws
what an uninterrupted one would. State (weights, EMA, optimiser) is saved every `checkpoint_every` steps as
safetensors + JSON, atomically; `resume=True` continues from it.

A split of signals of different lengths (zero-padded, with `lengths`) trains as the strategies sample it: each
batch is trimmed to its longest item and carries its lengths; corruptions act on each item's valid extent;
every network is told the lengths (`engine.length_conditioning`, the classifier `f(s, lengths)`), noise is drawn
per item on its valid elements only, estimates are zero past each item's end and every loss averages over valid
elements only, so what an item contributes does not depend on the padding its batch carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..engine import Denoiser, item_generators, randn
from ..engine.classifier import frame_lengths
from ..engine.processes import MaskedNoise, _bcast, length_mask
from ..engine.strategies import length_conditioning, predictive_input
from ..errors import CoupledError
from ..seeds import stream_seed
from ..atomic import atomic_write_text
from ..checkpoint import STAGE_OUTPUTS, load_state, save_weights
from .checkpoint import (
    check_rng_states, clear_train_state, flatten_optimizer, load_train_state, restore_rng_states, rng_states,
    save_train_state, unflatten_optimizer,
)
from .ema import EMA

STAGES = ("classifier", "signal", "logits", "joint", "card", "finetuned", "sequential", "predictive")
# the coupled bundle's own stages, in order; the rest train the baselines' networks (issue 7: every baseline
# gets its own budget): CARD's logit net, a classifier fine-tuned on corrupted data (a labelled reference
# that breaks the frozen-classifier premise), sequential's null-token denoiser trained as long as the
# coupled signal net (pre-training + joint steps), and the predictive enhancer (issue 16: the signal net trained
# by regression from the degraded input alone, StoRM's predictive stage)
BUNDLE_STAGES = STAGES[:4]
BASELINE_STAGES = STAGES[4:]
# the stages whose losses need no label (train.crop may cut their items; a transcript fits the whole utterance only)
CROP_STAGES = ("signal", "logits", "joint", "card", "sequential", "predictive")
COND_PARAMS = ("logit_mlp", "null_logits")  # SignalUNet's logit-conditioning path (joint.cond_lr_scale)


def step_generator(seed: int, stage: str, step: int, rank: int = 0) -> torch.Generator:
    """The generator of one training step: the "training" stream of (seed, stage, step, rank) only."""
    return torch.Generator().manual_seed(stream_seed("training", seed, STAGES.index(stage), step, rank))


def random_corruption(images: torch.Tensor, train_severity: dict, generator: torch.Generator, domain=None,
                      lengths: torch.Tensor | None = None, cfg: dict | None = None) -> torch.Tensor:
    """Each item gets a corruption drawn uniformly from `train_severity` and a severity uniform in its range;
    corruptions are resolved by `domain` (a name or Domain; default image). With `lengths` [B] (a zero-padded
    batch), each item is corrupted over its valid extent only and stays zero past it. With `cfg`, the domain's
    `training_corruption(name, cfg)` resolves them (corruptions that need the config's data)."""
    from ..domains.registry import get_domain

    dom = get_domain(domain)
    if cfg is None:
        corruption_from_config = dom.corruption
    else:
        def corruption_from_config(name):
            return dom.training_corruption(name, cfg)
    names = sorted(train_severity)
    which = torch.randint(0, len(names), (images.shape[0],), generator=generator)
    u = torch.rand(images.shape[0], generator=generator)
    out = torch.empty_like(images) if lengths is None else torch.zeros_like(images)
    for i in range(images.shape[0]):
        name = names[int(which[i])]
        lo, hi = train_severity[name]
        n = images.shape[-1] if lengths is None else int(lengths[i])
        out[i : i + 1, ..., :n] = corruption_from_config(name)(images[i : i + 1, ..., :n].cpu(), lo + (hi - lo) * float(u[i]),
                                                               generator).to(images.device)
    return out


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's weights (ranks of a DDP run must agree on it)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class StageSetup:
    """What one stage trains and with what: its trainable nets, frozen helpers and hyper-parameters."""

    stage: str
    cfg: dict
    nets: dict  # name -> nn.Module (trainable)
    metas: dict  # name -> JSON metadata saved beside the weights
    frozen: dict = field(default_factory=dict)  # classifier (FrozenClassifier), signal_denoiser (Denoiser)

    @property
    def hp(self) -> dict:
        return self.cfg[self.stage]


def _lightning():
    import lightning.pytorch as pl

    return pl


def _make_module_class():
    pl = _lightning()

    class StageModule(pl.LightningModule):
        """One training stage; `loss` is the stage's loss function of (module, batch, generator)."""

        def __init__(self, setup: StageSetup, loss, step_offset: int, opt_state: dict | None, ema_state: dict | None,
                     rng_state: dict | None = None, ema_updates: int = 0):
            super().__init__()
            self.setup_, self.loss_fn, self.step_offset = setup, loss, step_offset
            self.nets = nn.ModuleDict(setup.nets)
            self.frozen = setup.frozen
            self.opt_state = opt_state
            self.rng_state = rng_state  # the global RNGs (dropout) as the checkpoint left them, set at the first step
            self.ema = EMA(self.nets, setup.hp["ema_decay"], ema_updates, setup.hp.get("ema_warmup", True)) if setup.hp.get("ema_decay") else None
            if self.ema is not None and ema_state is not None:
                self.ema.shadow = {k: ema_state[k].clone() for k in self.ema.shadow}

        @property
        def step(self) -> int:
            return self.step_offset + self.global_step

        def on_fit_start(self):
            for part in self.frozen.values():
                if isinstance(part, nn.Module):
                    part.to(self.device)
            if self.ema is not None:
                self.ema.shadow = {k: v.to(self.device) for k, v in self.ema.shadow.items()}

        def training_step(self, batch, batch_idx):
            if self.rng_state is not None:  # after the loader's own draw, so the next dropout mask is the one an
                restore_rng_states(self.rng_state)  # uninterrupted run draws
                self.rng_state = None
            g = step_generator(self.setup_.cfg["seed"], self.setup_.stage, self.step, self.global_rank)
            crop = self.setup_.cfg["train"].get("crop") or 0
            if crop and self.setup_.stage in CROP_STAGES:
                batch = crop_batch(batch, int(crop), g)
            loss, logs = self.loss_fn(self, batch, g)
            self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
            for k, v in logs.items():
                self.log(k, v, on_step=True, on_epoch=False)
            return loss

        def optimizer_step(self, *args, **kwargs):
            # the EMA follows each optimiser step inside it, before any callback can save a checkpoint
            super().optimizer_step(*args, **kwargs)
            if self.ema is not None:
                self.ema.update(self.nets)

        def configure_optimizers(self):
            hp = self.setup_.hp
            scale = hp.get("cond_lr_scale", 1.0)
            named = list(self.nets.named_parameters())
            # the signal net's logit-conditioning path (fresh at joint fine-tuning) may learn faster than the rest
            is_cond = {n: scale != 1.0 and n.split(".")[1] in COND_PARAMS for n, _ in named}
            cond = [p for n, p in named if is_cond[n]]
            rest = [p for n, p in named if not is_cond[n]]
            groups = [{"params": rest}] + ([{"params": cond, "lr": hp["lr"] * scale}] if cond else [])
            opt = torch.optim.AdamW(groups, lr=hp["lr"], weight_decay=0.0)
            if self.opt_state is not None:
                opt.load_state_dict(self.opt_state)
            return opt

        def trained_state(self) -> dict:
            """EMA weights when there is an EMA, else the raw weights."""
            return self.ema.shadow if self.ema is not None else self.nets.state_dict()

    return StageModule


def _make_checkpoint_callback(folder: Path, stage: str, every: int, total: int, meta: dict):
    pl = _lightning()

    class SafetensorsCheckpoint(pl.Callback):
        """Every `every` steps (and at the end) rank 0 writes weights, EMA and optimiser state atomically."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = module.step  # Lightning has already counted this batch's optimiser step
            if step % every == 0 or step == total:
                self.save(trainer, module, step)

        def save(self, trainer, module, step):
            if not trainer.is_global_zero:
                return
            opt_t, opt_meta = flatten_optimizer(trainer.optimizers[0].state_dict())
            tensors = {f"net.{k}": v for k, v in module.nets.state_dict().items()}
            if module.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in module.ema.shadow.items()})
            tensors.update(opt_t)
            tensors.update(rng_states())  # dropout draws from them: a resume must continue their streams
            # the EMA warm-up's position is part of the state: a resume must continue it
            ema = {"ema_updates": module.ema.updates} if module.ema is not None else {}
            save_train_state(folder, stage, step, tensors, {**meta, **ema, "total": total, "optimizer": opt_meta})

    return SafetensorsCheckpoint()


def _read_train_state(folder: Path, stage: str):
    found = load_train_state(folder, stage)  # digest- and step-checked; None when there is none
    if found is None:
        return None
    tensors, meta = found
    pick = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    opt = unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
    # a state saved before the EMA warm-up existed counts one update per step, as training does
    ema_updates = meta.get("ema_updates", meta["step"])
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    warning = check_rng_states(rng, folder / f"{stage}.json")  # another CUDA device count is refused here
    if warning:
        print(f"coupled: warning: {warning}", file=sys.stderr)
    return meta["step"], pick("net."), pick("ema.") or None, opt, rng or None, ema_updates


class StepBatchSampler:
    """Batches as a function of the step: step k of rank r is a fixed slice of epoch k // per_epoch's permutation.

    So a resumed run sees exactly the batches an uninterrupted one would, and in DDP each rank takes its own
    share of every global batch (no DistributedSampler needed).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, total_steps: int):
        self.n, self.bs, self.seed, self.start, self.total = n, batch_size, seed, start_step, total_steps

    def __len__(self):
        return max(self.total - self.start, 0)

    def __iter__(self):
        # the process group exists by the time a loader is iterated, whichever launcher started the ranks
        dist = torch.distributed
        ddp = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
        if self.bs * self.world > self.n:
            raise CoupledError(f"batch size {self.bs} x {self.world} processes exceeds the {self.n} training items; lower batch_size")
        self.per_epoch = self.n // (self.bs * self.world)
        perm, epoch = None, -1
        for step in range(self.start, self.total):
            if step // self.per_epoch != epoch:
                epoch = step // self.per_epoch
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(stream_seed("data_order", self.seed, epoch)))
            k = step % self.per_epoch
            glob = perm[k * self.bs * self.world:(k + 1) * self.bs * self.world]
            yield glob[self.rank::self.world].tolist()


class TrainBatch(NamedTuple):
    """One training batch: `signals` [B, ...], `labels` (a tensor of class indices, or a list of answers such as
    transcripts) and, for a split of signals of different lengths, `lengths` [B] (the signals trimmed to the
    batch's longest item); None for signals of one shape."""

    signals: torch.Tensor
    labels: object
    lengths: torch.Tensor | None = None


class SplitBatches:
    """The loader's collate function: the items of a split at a batch's indices (`StepBatchSampler`), gathered
    into a `TrainBatch`; labels may be any list, and a padded split's batch is trimmed to its longest item."""

    def __init__(self, data):
        self.data = data

    def __call__(self, indices) -> TrainBatch:
        data, idx = self.data, torch.as_tensor(indices, dtype=torch.long)
        labels = data.labels[idx] if torch.is_tensor(data.labels) else [data.labels[i] for i in idx.tolist()]
        if data.lengths is None:
            return TrainBatch(data.signals[idx], labels)
        lengths = data.lengths[idx]
        return TrainBatch(data.signals[idx][..., : int(lengths.max())], labels, lengths)


def crop_batch(batch: TrainBatch, crop: int, generator: torch.Generator) -> TrainBatch:
    """`train.crop`: every item cut to a window of `crop` samples along the last axis, at an offset drawn uniformly
    within its valid extent; an item shorter than the window keeps its start, zero-padded, and the padding counts as
    signal (silence, which the corruption then covers too), so the batch has one length and no `lengths`: as
    SGMSE+ trains on fixed-length crops, and the networks take their unmasked path (no per-item normalisation)."""
    s, labels, lengths = batch
    valid = torch.full((s.shape[0],), s.shape[-1]) if lengths is None else lengths.cpu()
    u = torch.rand(s.shape[0], generator=generator)
    out = s.new_zeros(*s.shape[:-1], crop)
    for i, n in enumerate(valid.tolist()):
        start = int(u[i] * (max(n - crop, 0) + 1))
        take = min(crop, n)
        out[i, ..., :take] = s[i, ..., start:start + take]
    return TrainBatch(out, labels, None)


def _loader(setup: StageSetup, data, step_offset: int, total: int):
    from torch.utils.data import DataLoader

    sampler = StepBatchSampler(len(data), setup.hp["batch_size"], setup.cfg["seed"], step_offset, total)
    # the dataset yields indices; the collate function gathers them (labels need not be a tensor)
    return DataLoader(range(len(data)), batch_sampler=sampler, collate_fn=SplitBatches(data), num_workers=0)


def _quiet_lightning(verbose: bool) -> None:
    """Silence what a user cannot act on: Lightning's torch-version deprecation notice always, and its
    device banners and tips unless progress is shown."""
    import logging
    import warnings

    _lightning()  # importing Lightning sets its loggers' levels; set ours after
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(level)


def run_stage(setup: StageSetup, loss, data, output: Path, *, resume: bool = False, devices: int = 1,
              accelerator: str = "auto", max_steps: int | None = None, progress: bool = True) -> dict:
    """Train one stage and write its outputs (EMA weights + JSON) into `output`; returns a summary."""
    _quiet_lightning(verbose=progress)
    pl = _lightning()
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    total = int(max_steps if max_steps is not None else setup.hp["steps"])
    state_dir = output / "train_state"
    step_offset, opt_state, ema_state, rng_state, ema_updates = 0, None, None, None, 0
    if resume:
        found = _read_train_state(state_dir, setup.stage)
        if found is not None:
            step_offset, net_state, ema_state, opt_state, rng_state, ema_updates = found
            load_state(nn.ModuleDict(setup.nets), net_state, str(state_dir / f"{setup.stage}.safetensors"))
    else:
        clear_train_state(state_dir, setup.stage)  # a fresh run must not be mistaken for a resumable one
    module = _make_module_class()(setup, loss, step_offset, opt_state, ema_state, rng_state, ema_updates)
    started = time.time()
    if step_offset < total:
        meta = {"stage": setup.stage, "seed": setup.cfg["seed"]}
        trainer = pl.Trainer(
            max_steps=total - step_offset, accelerator=accelerator, devices=devices,
            strategy="ddp_find_unused_parameters_true" if devices > 1 else "auto", logger=[
                CSVLogger(output / "logs", name=setup.stage), TensorBoardLogger(output / "logs", name=f"{setup.stage}_tb")],
            callbacks=[_make_checkpoint_callback(state_dir, setup.stage, setup.cfg["train"]["checkpoint_every"], total, meta)],
            enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
            log_every_n_steps=min(setup.cfg["train"]["log_every"], total - step_offset), num_sanity_val_steps=0,
            limit_val_batches=0,
            use_distributed_sampler=False, max_epochs=-1,
        )
        trainer.fit(module, _loader(setup, data, step_offset, total))
        rank = trainer.global_rank
    else:
        trainer, rank = None, 0
    seconds = time.time() - started
    trained = module.trained_state()
    final = nn.ModuleDict(setup.nets)
    final.load_state_dict({k: v.cpu() for k, v in trained.items()})
    atomic_write_text(state_dir / f"{setup.stage}.rank{rank}.digest", weights_digest(final) + "\n")
    if rank == 0:
        for name, net in setup.nets.items():
            out_name = dict(zip(setup.nets, STAGE_OUTPUTS[setup.stage]))[name]
            save_weights(output, out_name, net.state_dict(), {**setup.metas[name], "stage": setup.stage,
                                                              "steps": total, "train_seconds": round(seconds, 1)})
    if trainer is not None and trainer.world_size > 1:
        trainer.strategy.barrier()  # the next stage on every rank loads what rank 0 just wrote
    return {"stage": setup.stage, "steps": total, "resumed_from": step_offset, "seconds": seconds, "rank": rank}


# ------------------------------------------------------------------------------------------------ losses


def _signal_mask(s: torch.Tensor, lengths) -> torch.Tensor | None:
    """Bool [B, 1, ..., T]: the valid elements of a padded batch `s` (None without lengths)."""
    return None if lengths is None else length_mask(lengths, s.shape[-1]).view(s.shape[0], *[1] * (s.dim() - 2), -1)


def _noise(shape, g: torch.Generator, mask, device) -> torch.Tensor:
    """Standard normal noise of `shape`: one draw from `g`; for a padded batch (`mask` of its valid elements),
    each item's from its own generator seeded from `g`, on its valid elements only (zero past its end), so an
    item's noise does not depend on the padding its batch carries."""
    if mask is None:
        return randn(tuple(shape), g, device=device)
    seeds = torch.randint(0, 2**62, (shape[0],), generator=g).tolist()
    return randn(tuple(shape), MaskedNoise(item_generators(seeds), mask), device=device)


def _train_classifier(m, x, labels, lengths):
    """The loss of the classifier being trained on inputs `x`: the domain's `classifier_loss`, told the lengths."""
    from ..domains.registry import domain_of

    net = m.nets["classifier"]
    logits = net(x) if lengths is None else net(x, lengths)
    frames = None
    if lengths is not None and logits.dim() == 3:
        frames = frame_lengths(net, lengths, logits.shape[1])
    return domain_of(m.setup_.cfg).classifier_loss(logits, labels, lengths=lengths, frame_lengths=frames)


def classifier_loss(m, batch, g):
    x, y, lengths = batch
    return _train_classifier(m, x, y, lengths)


def finetuned_loss(m, batch, g):
    """The reference row's classifier: fine-tuned on labelled corrupted digits (a `clean_fraction` of each
    batch stays clean), drawn from the same corruption distribution the denoisers train on."""
    x, y, lengths = batch
    d = _corrupted(m, x, g, lengths)
    keep = _bcast((torch.rand(x.shape[0], generator=g) < m.setup_.hp["clean_fraction"]).to(x.device), x, torch.bool)
    return _train_classifier(m, torch.where(keep, x, d), y, lengths)


def _corrupted(m, s, g, lengths=None):
    """The batch `s` degraded as training draws it: the config's train_severity, the config's domain."""
    cfg = m.setup_.cfg
    return random_corruption(s, cfg["corruptions"]["train_severity"], g, cfg.get("domain"), lengths, cfg)


def _corrupted_pair(m, s, g, lengths=None):
    """(clean, degraded, lengths) of batch `s` as the chains run on them: the corruption acts on the raw items, then
    `Domain.represent` maps both (for the config's `signal_meta`; the same objects for a domain without a
    representation, e.g. images)."""
    from ..domains.registry import domain_of

    d = _corrupted(m, s, g, lengths)
    domain = domain_of(m.setup_.cfg)
    meta = domain.signal_meta(m.setup_.cfg)
    rs, rl = domain.represent(s, lengths, meta)
    rd, _ = domain.represent(d, lengths, meta)
    return rs, rd, rl


def _noised(process, x0, g, center=None, t=None, mask=None):
    B = x0.shape[0]
    t = process.sample_time(B, g).to(x0.device) if t is None else t
    noise = _noise(x0.shape, g, mask, x0.device)
    return process.add_noise(x0, t, noise, center), t, noise


def _denoiser(m, name: str, process, prediction: str) -> Denoiser:
    """The net being trained as the sampling-side wrapper sees it (its `loss` is the training side)."""
    kind = "signal" if name == "signal" else "logits"
    from ..domains.registry import domain_of

    span = domain_of(m.setup_.cfg).signal_range if kind == "signal" else None  # the domain's range, as sampling clips
    return Denoiser(m.nets[name], process, prediction, clip=None if span is None else tuple(span),
                    pass_center=kind == "logits" and process.kind == "centred")


class _Frames:
    """The frozen classifier's logits on a batch, as the strategies see them: `f(x, lengths)`, and for frame
    logits [B, T, K] of a padded batch the frames past each item's end set to 0, with their `mask` [B, T, 1] and
    `lengths` (the first call fixes them)."""

    def __init__(self, f, lengths):
        self.f, self.signal_lengths, self.lengths, self.mask = f, lengths, None, None

    def __call__(self, x):
        logits = self.f(x, self.signal_lengths)
        if self.signal_lengths is None or logits.dim() != 3:
            return logits
        if self.mask is None:
            self.lengths = self.f.frame_lengths(self.signal_lengths, logits.shape[1])
            self.mask = length_mask(self.lengths, logits.shape[1])[..., None]
        return logits * self.mask


def signal_loss(m, batch, g):
    cfg = m.setup_.cfg
    s, _, lengths = batch
    s, d, lengths = _corrupted_pair(m, s, g, lengths)
    proc = m.frozen["signal_process"]
    t = proc.sample_time(s.shape[0], g).to(s.device)
    mask = _signal_mask(s, lengths)
    loss, _ = _denoiser(m, "signal", proc, cfg["signal"]["prediction"]).loss(
        s, t, _noise(s.shape, g, mask, s.device), center=d, mask=mask, observation=d, logits=None,
        **length_conditioning("signal", lengths))
    return loss, {}


def _logit_branch(m, name, s, d, z, g, prediction=None, lengths=None):
    """Loss of logit net `name` on y0 = norm(f(s)) given evidence c = norm(f(z)); returns (loss, logs). The chain
    is the stage's `logit_process`; `prediction` defaults to the logits section's; `lengths` [B] of a padded
    batch."""
    f, proc = _Frames(m.frozen["classifier"], lengths), m.frozen["logit_process"]
    y0, c, c_d = f(s), f(z), f(d)
    # the chain's center is the opinion at the trajectory's start: c(d) in Parallel, the evidence elsewhere; chosen
    # per item, over all its logits ([B, K], or [B, T, K] frame logits)
    use_d = torch.rand(s.shape[0], generator=g).to(s.device) < 0.5
    center = torch.where(_bcast(use_d, c_d, torch.bool), c_d, c)
    t = proc.sample_time(s.shape[0], g).to(s.device)
    den = _denoiser(m, name, proc, prediction or m.setup_.cfg["logits"]["prediction"])
    loss, y0_hat = den.loss(y0, t, _noise(y0.shape, g, f.mask, s.device), center=center, mask=f.mask, evidence=c,
                            signal=z, **length_conditioning("logits", lengths, f.lengths))
    same = (y0_hat.argmax(-1) == y0.argmax(-1)).float()  # per item, or per frame of frame logits
    agree = same.mean() if f.mask is None else same[f.mask[..., 0]].mean()  # valid frames only
    return loss, {"agree": agree}


def card_loss(m, batch, g):
    """CARD for this setting: the logit net learns norm(f(s)) from the degraded input alone (its features and
    the classifier's logits of it), z = d always, as `logits_only` samples it."""
    s, _, lengths = batch
    s, d, lengths = _corrupted_pair(m, s, g, lengths)
    return _logit_branch(m, "card", s, d, d, g, prediction=m.setup_.hp["prediction"], lengths=lengths)


def logit_loss(m, batch, g):
    s, _, lengths = batch
    s, d, lengths = _corrupted_pair(m, s, g, lengths)
    # z as sampling will show it: the degraded input, signal estimates x0_hat at random times, the clean signal
    sig = m.frozen["signal_denoiser"]
    mask = _signal_mask(s, lengths)
    x_t, t, _ = _noised(sig.process, s, g, center=d, mask=mask)
    with torch.no_grad():
        x0 = sig(x_t, t, center=d, observation=d, logits=None, **length_conditioning("signal", lengths))
    x0 = x0 if mask is None else x0 * mask  # zero past each item's end, as the strategies' estimates
    which = _bcast(torch.randint(0, 3, (s.shape[0],), generator=g).to(s.device), s, torch.long)
    z = torch.where(which == 0, d, torch.where(which == 1, x0, s))
    return _logit_branch(m, "logits", s, d, z, g, lengths=lengths)


def joint_loss(m, batch, g):
    """Both networks at one planned visit pair per item (training/conditioning.py): the logit net shown the
    z and center its strategy shows it at that step, the signal net the logits it is shown there (the logit
    branch's detached y0_hat, a finished y_hat, or the null token), with `null_dropout` for guidance."""
    from .conditioning import joint_inputs

    s, _, lengths = batch
    s, d, lengths = _corrupted_pair(m, s, g, lengths)
    coupling = m.frozen["coupling"]
    inp = joint_inputs(coupling, m.frozen["plans"], s, d, g, lengths=lengths)
    f = _Frames(m.frozen["classifier"], lengths)
    y0, c = f(s), f(inp.z)
    loss_y, y0_hat = m.frozen["logit_denoiser"].loss(y0, inp.t_y, _noise(y0.shape, g, f.mask, s.device),
                                                     center=inp.center, mask=f.mask, evidence=c, signal=inp.z,
                                                     **length_conditioning("logits", lengths, f.lengths))
    estimate = _bcast(inp.signal_sees("estimate").to(s.device), y0_hat, torch.bool)  # per item, all its frames
    logits = torch.where(estimate, y0_hat, inp.final_logits)
    keep = (torch.rand(s.shape[0], generator=g).to(s.device) >= m.setup_.hp["null_dropout"]) & ~inp.signal_sees("null").to(s.device)
    px = coupling.signal_chain.process
    mask = _signal_mask(s, lengths)
    loss_x, _ = m.frozen["signal_denoiser"].loss(s, inp.t_x, _noise(s.shape, g, mask, s.device),
                                                 center=d if px.kind == "centred" else None, mask=mask, observation=d,
                                                 logits=logits, logits_mask=keep, **length_conditioning("signal", lengths))
    lam = m.setup_.hp["lambda"]
    return (1 - lam) * loss_x + lam * loss_y, {"loss_x": loss_x, "loss_y": loss_y}


def predictive_loss(m, batch, g):
    """The predictive enhancer (StoRM's predictive stage): the signal net shown the degraded input alone, as the
    `predictive` method shows it (`engine.predictive_input`: the prior's mean at the top time, the null logit token,
    no noise), regressed onto the clean signal: the MSE of its x0_hat over each item's valid elements, in the space
    the chains run on (`Domain.represent`; unclipped, so no gradient is cut at the data range). Logs `observation_mse`,
    the same MSE of d itself (where d lives in the signal's space, the loss falls below it once the net enhances)."""
    s, _, lengths = batch
    s, d, lengths = _corrupted_pair(m, s, g, lengths)
    mask = _signal_mask(s, lengths)
    if mask is not None:
        d = d * mask
    proc = m.frozen["signal_process"]
    den = Denoiser(m.nets["signal"], proc, m.setup_.metas["signal"]["prediction"])
    x_t, t, center = predictive_input(proc, d)
    x0_hat = den(x_t, t, center=center, observation=d, logits=None, **length_conditioning("signal", lengths))
    err, base = x0_hat - s, d - s
    if mask is None:
        return err.square().mean(), {"observation_mse": base.square().mean()}
    keep = mask.expand(s.shape)
    return err[keep].square().mean(), {"observation_mse": base[keep].square().mean()}


LOSSES = {"classifier": classifier_loss, "signal": signal_loss, "logits": logit_loss, "joint": joint_loss,
          "card": card_loss, "finetuned": finetuned_loss, "sequential": signal_loss, "predictive": predictive_loss}
