"""Train an unconditional image prior for the zero-shot samplers (issue 18, item 1).

The bundle's signal net (checkpoints/mnist/signal*.safetensors) is conditioned on the degraded observation
at every training step (its classifier-free dropout, `joint.null_dropout`, drops the *logits* only), so it has
no unconditional mode: a null observation is an input it never saw. This script warm-starts the same U-Net
from the bundle's pre-trained signal net and fine-tunes it by denoising score matching with the observation
channel held at zero (the "null observation") and the null logit token, on the clean training digits of the
bundle's split, with an EMA of the weights (as training/ema does: started after the warm start is loaded).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/train_prior.py --out checkpoints/mnist_prior \
        --minutes 25 --steps 3000

With `--logits` the prior is class-conditional instead (issue 18, "a class-conditional prior that would give
coupling a channel" into a zero-shot chain): shown the frozen classifier's standardised logits of the clean digit
(the space the logit chain carries) with probability 1 - `--logit-dropout`, else the null token, so one net is
both p(x | logits) and p(x). It warm-starts from `--warm` (default: the unconditional prior), and records
`logits: classifier` so that `Bundle` passes the logit chain's estimate through to it:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/train_prior.py --logits --out checkpoints/mnist_prior_logits \
        --warm checkpoints/mnist_prior --minutes 35 --steps 5000

Writes `<out>/prior.safetensors` + `prior.json` (the `signal.json` format, `stage: prior`,
`observation: zeros`) every `--save-every` steps and at the end, so `coupled.bundle.load_net(out, "prior",
"signal")` loads it.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from coupled.bundle import load_bundle, load_net
from coupled.checkpoint import save_weights
from coupled.domains.registry import get_domain
from coupled.engine import Denoiser, process_from_dict
from coupled.seeds import stream_seed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="checkpoints/mnist")
    p.add_argument("--out", default="checkpoints/mnist_prior")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=25.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logits", action="store_true", help="class-conditional: shown the classifier's logits")
    p.add_argument("--logit-dropout", type=float, default=0.2, help="share of items shown the null token (--logits)")
    p.add_argument("--warm", default=None, help="a prior folder to warm-start from (default: the bundle's "
                   "signal_pretrained; with --logits, checkpoints/mnist_prior)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    bundle = Path(a.bundle)
    cfg = json.loads((bundle / "config.json").read_text())
    warm = a.warm or ("checkpoints/mnist_prior" if a.logits else None)
    net, meta = load_net(warm, "prior", "signal") if warm else load_net(bundle, "signal_pretrained", "signal")
    classifier = load_bundle(bundle).coupling.classifier if a.logits else None
    net.train().requires_grad_(True)
    ema = copy.deepcopy(net).eval().requires_grad_(False)  # after the warm start is loaded (method.md 7.6)
    process = process_from_dict(meta["process"])
    den = Denoiser(net, process, meta["prediction"])
    train = get_domain("image").load_splits(cfg)["train"].signals
    g = torch.Generator().manual_seed(stream_seed("training", a.seed, 18))
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started, losses = time.time(), []

    def save(step):
        info = {k: v for k, v in meta.items() if k not in ("conditioning", "steps", "train_seconds", "stage", "warm_start",
                                                            "logits", "logit_dropout", "loss_last_100")}
        info.update(stage="prior", observation="zeros", warm_start=f"{warm}/prior" if warm else f"{bundle}/signal_pretrained",
                    steps=step,
                    train_seconds=round(time.time() - started, 1), batch_size=a.batch, lr=a.lr, ema_decay=a.ema,
                    loss_last_100=float(sum(losses[-100:]) / max(1, len(losses[-100:]))))
        if a.logits:
            info.update(logits="classifier", logit_dropout=a.logit_dropout)
        save_weights(out, "prior", ema.state_dict(), info)

    step = 0
    while step < a.steps and time.time() - started < 60 * a.minutes:
        idx = torch.randint(0, len(train), (a.batch,), generator=g)
        x0 = train[idx]
        t = process.sample_time(a.batch, g)
        noise = torch.randn(x0.shape, generator=g)
        if classifier is None:
            loss, _ = den.loss(x0, t, noise, observation=torch.zeros_like(x0), logits=None)
        else:
            keep = torch.rand(a.batch, generator=g) >= a.logit_dropout
            loss, _ = den.loss(x0, t, noise, observation=torch.zeros_like(x0), logits=classifier(x0), logits_mask=keep)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1 - a.ema)
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {sum(losses[-50:]) / 50:.4f} {time.time() - started:.0f}s", flush=True)
        if step % a.save_every == 0:
            save(step)
    save(step)
    print(f"done: {step} steps in {time.time() - started:.0f}s -> {out}/prior.safetensors", flush=True)


if __name__ == "__main__":
    main()
