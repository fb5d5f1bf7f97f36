"""Forward cost of the image-domain networks on this CPU (eval mode, torch.no_grad(), 28 x 28 x 1, K = 10).

The demo runs ~1,200 images x ~100 network calls in under 3 minutes, so the SignalUNet must stay well under
2 ms per image per call at batch 200 (a 1.1M-parameter diffusers UNet2DModel costs ~9 ms, as measured for
the project brief). Each row is the median over --repeats timed calls after --warmup untimed ones (oneDNN
builds its kernels on the first calls of each shape, which otherwise dominates), divided by the batch size;
"best" is the fastest call, the better estimate when other jobs share the CPU.

Measured with: .venv/bin/python benchmarks/denoiser_cost.py --batch 200 --repeats 5 --threads 2
(2-core AMD EPYC (Zen 3, AVX2) KVM guest, torch 2.13.0+cpu, run while the CPU was otherwise idle: other jobs
on the same two cores slow two-thread runs several-fold, and repeated idle runs differ by ~10%)

    batch=200 repeats=5 warmup=3 threads=2 torch=2.13.0+cpu
    network (* = default config)         format          params  ms/batch  ms/image   best
    --------------------------------------------------------------------------------------
    SignalUNet (16, 32) mid=1            default        156,625     143.2     0.716  0.600
    SignalUNet (16, 32) mid=1            channels_last  156,625     196.7     0.983  0.734
    SignalUNet (16, 32) mid=2 *          default        179,377     157.4     0.787  0.608
    SignalUNet (16, 32) mid=2            channels_last  179,377     200.0     1.000  0.701
    SignalUNet (16, 48) mid=2            default        298,417     216.6     1.083  0.897
    SignalUNet (16, 48) mid=2            channels_last  298,417     256.6     1.283  1.228
    SignalUNet (24, 48) mid=2            default        323,017     337.1     1.685  1.593
    SignalUNet (24, 48) mid=2            channels_last  323,017     351.3     1.756  1.591
    SignalUNet (32, 64) mid=2            default        519,649     632.1     3.160  2.747
    SignalUNet (32, 64) mid=2            channels_last  519,649     528.5     2.643  2.442
    LogitNet use_features=True *         default        332,874       7.4     0.037  0.029
    LogitNet use_features=False          default        289,034       2.0     0.010  0.010
    DigitClassifier width=32 *           default        421,642      19.2     0.096  0.085
    DigitClassifier width=32             channels_last  421,642      18.8     0.094  0.089
    defaults, all three networks: 0.920 ms/image/call -> 110 s for 1,200 x 100

Conclusions (they set the defaults in coupled.domains.image.networks):
* SignalUNetConfig defaults to channels=(16, 32), mid_blocks=2: ~0.8 ms/image/call, about 11x cheaper than
  the 1.1M-parameter diffusers UNet2DModel (~9 ms), two levels (28 -> 14 -> 7). The two 7 x 7 middle blocks
  cost almost nothing. Widths off a multiple of 16 are slow for their size (in trials, (20, 40) cost more
  than (16, 48)); (16, 48) is the next step up at ~1.1 ms if sample quality needs it; (24, 48) sits at
  the ~1.5 ms target (1.46-1.69 ms over runs) and (32, 64) is twice over it.
* channels_last makes the narrow U-Nets slower; it only helps at (32, 64). It halves the DigitClassifier's
  cost, so the classifier switches to it internally (both its rows are therefore alike).
* LogitNet is negligible either way.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from coupled.domains.image.networks import (
    ClassifierConfig,
    DigitClassifier,
    LogitNet,
    LogitNetConfig,
    SignalUNet,
    SignalUNetConfig,
    count_parameters,
)

# (channels, mid_blocks) of the SignalUNet variants to time; the default config is marked in the table
UNET_VARIANTS = [((16, 32), 1), ((16, 32), 2), ((16, 48), 2), ((24, 48), 2), ((32, 64), 2)]


def time_calls(calls, warmup: int, repeats: int) -> list[list[float]]:
    """Seconds per call of each of `calls`, `repeats` times each, after `warmup` untimed calls of each.

    The rounds interleave the calls so that load from other processes on the machine hits every
    network alike instead of spoiling the one that happened to run at the time.
    """
    for fn in calls:
        for _ in range(warmup):
            fn()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for fn, out in zip(calls, times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def _cl(x: torch.Tensor) -> torch.Tensor:
    # a real channels_last copy: .contiguous(memory_format=...) leaves one-channel images as they are
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def cases(batch: int):
    """Yield (name, module, channels_last?, call) for every network and width choice to time.

    The channels_last rows convert both the weights and the inputs; the plain rows are what the networks
    do by default (DigitClassifier switches its activations to channels_last internally).
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1
    obs = torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1
    t = torch.rand(batch, generator=gen)
    logits = torch.randn(batch, 10, generator=gen)
    default = SignalUNetConfig()
    for ch, mid in UNET_VARIANTS:
        cfg = SignalUNetConfig(channels=ch, mid_blocks=mid)
        for cl in (False, True):
            net = SignalUNet(cfg).eval()
            xs, os_ = (_cl(x), _cl(obs)) if cl else (x, obs)
            if cl:
                net = net.to(memory_format=torch.channels_last)
            tag = " *" if cfg == default and not cl else ""
            yield f"SignalUNet {ch} mid={mid}{tag}", net, cl, lambda n=net, a=xs, b=os_: n(a, t, b, logits)
    for use_features in (True, False):
        net = LogitNet(LogitNetConfig(use_features=use_features)).eval()
        tag = " *" if use_features == LogitNetConfig().use_features else ""
        yield f"LogitNet use_features={use_features}{tag}", net, False, lambda n=net: n(logits, t, logits, x)
    for cl in (False, True):
        net = DigitClassifier(ClassifierConfig()).eval()
        if cl:
            net = net.to(memory_format=torch.channels_last)
        xs = _cl(x) if cl else x
        yield f"DigitClassifier width=32{'' if cl else ' *'}", net, cl, lambda n=net, a=xs: n(a)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(
        f"batch={args.batch} repeats={args.repeats} warmup={args.warmup} threads={args.threads} "
        f"torch={torch.__version__}"
    )
    header = (
        f"{'network (* = default config)':<36} {'format':<13} {'params':>8} {'ms/batch':>9} {'ms/image':>9} {'best':>6}"
    )
    print(header)
    print("-" * len(header))
    rows = list(cases(args.batch))
    with torch.no_grad():
        times = time_calls([call for *_, call in rows], args.warmup, args.repeats)
    per_image = {}
    for (name, net, cl, _), secs in zip(rows, times):
        med, best = statistics.median(secs) * 1e3, min(secs) * 1e3
        if name.endswith(" *"):
            per_image[name.split()[0]] = med / args.batch
        fmt = "channels_last" if cl else "default"
        print(
            f"{name:<36} {fmt:<13} {count_parameters(net):>8,d} {med:>9.1f} "
            f"{med / args.batch:>9.3f} {best / args.batch:>6.3f}"
        )
    # the demo's budget: ~1,200 images x ~100 steps, each step calling all three networks once at most
    total = sum(per_image.values())
    demo_s = total * 1200 * 100 / 1e3
    print(f"defaults, all three networks: {total:.3f} ms/image/call -> {demo_s:.0f} s for 1,200 x 100")


if __name__ == "__main__":
    main()
