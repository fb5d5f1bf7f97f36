"""The measurements behind the speech representations' value scales and the denoisers' default widths.

    python -m coupled.domains.speech.measure [--corpus FOLDER] [--items 400] [--repeats 20]

prints (1) the mean and standard deviation of each representation over training utterances, clean and with
white noise at 10 and 0 dB (valid frames only, silence included), and (2) the time of one forward pass of
each signal U-Net preset and of the logit net on one 2-second utterance on one CPU thread (batch 1, no
gradient, median of `repeats` runs), beside a reference 3x3 convolution (32 channels, 64 x 251) timed in the
same run, interleaved with each network's runs (a figure taken on a busy machine scales to an idle one by
the ratio of the reference convolution's times).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ...threads import use_threads


def representation_statistics(root, items: int = 400, seed: int = 0, snrs=(10.0, 0.0)) -> list[dict]:
    """Mean / std of both representations over `items` random training utterances of the corpus at `root`,
    clean and with white noise at each SNR (the project's `white_noise` degradation)."""
    from .corpus import load_split
    from .degrade import degrade
    from .recogniser import collate
    from .representation import CompressedSTFT, LogMel

    utts = load_split(root, "train")
    pick = np.random.default_rng(seed).choice(len(utts), min(items, len(utts)), replace=False)
    clean = [utts[i].wave for i in pick]
    conditions = [("clean", clean)] + [(f"white {snr:g} dB", [degrade("white_noise", w, snr, [seed, k])
                                                               for k, w in enumerate(clean)]) for snr in snrs]
    rows = []
    for rep in (CompressedSTFT(), LogMel()):
        for name, waves in conditions:
            x, n = collate(waves)
            r, frames = rep.analyse(x, n)
            valid = torch.arange(r.shape[-1])[None] < frames[:, None]
            v = r.permute(0, 3, 1, 2)[valid]
            rows.append({"representation": rep.kind, "condition": name, "mean": float(v.mean()),
                         "std": float(v.std()), "abs_max": float(v.abs().max()),
                         "seconds": float(n.sum()) / 16000})
    return rows


def multiply_adds(net: torch.nn.Module, *args, **kwargs) -> int:
    """Multiply-adds of the convolutions and linear layers in one `net(*args, **kwargs)` call (a machine-independent
    cost: the rest, norms and activations, is memory traffic)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features
        else:  # a convolution: each output value costs in_channels / groups x kernel size
            total += output.numel() * module.weight[0].numel()

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            net(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return total


def _interleaved_ms(fn, reference, repeats: int) -> tuple[float, float]:
    """Median ms of `fn` and of `reference`, run alternately, so both see the same load on a shared machine."""
    with torch.no_grad():
        for _ in range(2):
            fn()
            reference()
        a, b = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            reference()
            a.append(t1 - t0)
            b.append(time.perf_counter() - t1)
    return 1e3 * statistics.median(a), 1e3 * statistics.median(b)


def network_costs(seconds: float = 2.0, repeats: int = 20) -> list[dict]:
    """Forward-pass time (ms) and parameter count of each signal U-Net preset (both representations) and of
    the logit net, on one utterance of `seconds`, on the current thread setting (use one thread)."""
    from .networks import (SIGNAL_UNET_PRESETS, SpeechLogitNet, SpeechSignalUNet, count_parameters, logit_net_config,
                           signal_unet_config)
    from .representation import CompressedSTFT, LogMel

    torch.manual_seed(0)
    n = int(seconds * 16000)
    logit_frames = -(-(n // 160 + 1) // 4)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    probe = torch.randn(1, 32, 64, 251).contiguous(memory_format=torch.channels_last)
    rows = []
    for rep in (CompressedSTFT(), LogMel()):
        T = rep.frames(n)
        x = torch.randn(1, rep.channels, rep.bins, T)
        logits = torch.randn(1, logit_frames, 22)
        t = torch.tensor([0.5])
        for size in SIGNAL_UNET_PRESETS:
            cfg = signal_unet_config(rep, size)
            net = SpeechSignalUNet(cfg).eval()
            ms, ref = _interleaved_ms(lambda: net(x, t, x, logits=logits), lambda: conv(probe), repeats)
            rows.append({"network": "signal_unet", "representation": rep.kind, "size": size,
                         "channels": list(cfg.channels), "parameters": count_parameters(net), "ms": ms,
                         "gmacs": multiply_adds(net, x, t, x, logits=logits) / 1e9,
                         "reference_conv_ms": ref})
        net = SpeechLogitNet(logit_net_config(rep)).eval()
        ms, ref = _interleaved_ms(lambda: net(logits, t, logits, signal=x), lambda: conv(probe), repeats)
        rows.append({"network": "logit_net", "representation": rep.kind, "size": "default",
                     "parameters": count_parameters(net), "ms": ms,
                     "gmacs": multiply_adds(net, logits, t, logits, signal=x) / 1e9,
                     "reference_conv_ms": ref})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coupled.domains.speech.measure", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="a built corpus folder (default: the configs/speech.yaml corpus in the cache); "
                                         "'none' skips the statistics")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    use_threads(1)
    if args.corpus != "none":
        from .corpus import CorpusConfig, default_root

        root = args.corpus or default_root(CorpusConfig(speakers={"train": 160, "val": 12, "test": 16}))
        for r in representation_statistics(root, args.items):
            print(f"{r['representation']:5s} {r['condition']:12s} mean {r['mean']:+.3f} std {r['std']:.3f} "
                  f"|max| {r['abs_max']:.2f}  ({r['seconds']:.0f} s of audio)")
    for r in network_costs(repeats=args.repeats):
        print(f"{r['network']:11s} {r['representation']:5s} {r['size']:7s} {r.get('channels', '')!s:15s} "
              f"{r['parameters']:>9,d} parameters  {r['gmacs']:.2f} GMAC  {r['ms']:6.1f} ms  "
              f"(reference conv {r['reference_conv_ms']:.2f} ms)")


if __name__ == "__main__":
    main()
