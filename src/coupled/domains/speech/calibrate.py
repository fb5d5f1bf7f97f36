"""Light / medium / heavy SNRs per noise type, chosen on the validation split for the frozen recogniser.

For each additive noise the recogniser's digit WER is measured on a grid of SNRs; a level is the SNR
(interpolated, rounded to 0.5 dB) at which the WER crosses its target. The result goes into the config's
`levels`, and the evaluation adds those SNRs to its sweep, tagging their rows with the level.
"""

from __future__ import annotations

import numpy as np

TARGETS = {"light": 0.10, "medium": 0.25, "heavy": 0.50}
GRID = tuple(range(-10, 31, 2))


def crossing(grid, wer, target: float) -> float:
    """The SNR where a WER-vs-SNR curve falls through `target`, interpolated and rounded to 0.5 dB.

    The curve is first made monotone (WER never rises with SNR: the running maximum from the high-SNR end);
    a target above every WER gives the lowest SNR of the grid, one below every WER the highest.
    """
    x = np.asarray(grid, float)
    w = np.maximum.accumulate(np.asarray(wer, float)[::-1])[::-1]
    above = np.flatnonzero(w >= target)
    if len(above) == 0:
        snr = x[0]
    elif above[-1] == len(x) - 1:
        snr = x[-1]
    else:
        i = above[-1]
        snr = np.interp(target, [w[i + 1], w[i]], [x[i + 1], x[i]])
    return float(round(snr * 2) / 2)


def calibrate_levels(cfg: dict, checkpoint=None, targets: dict = TARGETS, grid=GRID, max_items: int = 200,
                     progress: bool = True) -> dict:
    """{noise: {level: snr_db}} plus the measured curve, on the validation split's digit strings.

    Args:
        cfg: a speech config.
        checkpoint: recogniser folder (default: the config's output).
        targets: digit WER per level.
        grid: SNRs (dB) to measure.
        max_items: validation digit strings used.
    """
    from tqdm import tqdm

    from ...threads import use_threads

    from .corpus import built_corpus, load_split
    from .evaluate import NOISES, degrade_item, score
    from .recogniser import load_recogniser, transcribe

    use_threads(cfg["evaluation"].get("num_threads"))  # 0: the cores torch can use (coupled.threads)
    root = built_corpus(cfg)
    model = load_recogniser(checkpoint or cfg["output"])
    items = load_split(root, "val", tasks=("digits",), max_items=max_items)
    babble = [u.wave for u in load_split(root, "test", tasks=("digits",), max_items=60)]
    seed = cfg["evaluation"]["corruption_seed"] + 1000  # not the evaluation's degraded items
    levels, curves = {}, {}
    for name in [n for n in NOISES if n in cfg["degradations"]]:
        talkers = cfg["degradations"][name].get("talkers", 6)
        curve = []
        for snr in tqdm(grid, desc=f"calibrate {name}", disable=not progress):
            cond = {"corruption": name, "snr_db": float(snr), "rt60": None, "talkers": talkers}
            hyps = transcribe(model, [degrade_item(cond, u.wave, seed, i, babble) for i, u in enumerate(items)])
            curve.append(score([u.text for u in items], hyps, ["digits"] * len(items), n_boot=10)["wer"]["value"])
        curves[name] = dict(zip(map(float, grid), curve))
        levels[name] = {level: crossing(grid, curve, target) for level, target in targets.items()}
    return {"levels": levels, "val_wer": curves, "targets": targets, "n_items": len(items)}
