"""Does the class-conditional prior (benchmarks/train_prior.py --logits) listen to its logits? (issue 18)

Generation, no measurement: 20-step DDIM (eta 0) from the same noise, conditioned on the frozen classifier's
standardised logits of validation digits of each class (what the logit chain carries at its cleanest), with
classifier-free guidance 0 (the null token: the prior as an unconditional one), 1 and 2. The frozen classifier
then reads every sample: the share it gives the conditioning digit's class is how much of the class the logits
carry into the signal. 50 digits per class, one sample each.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/class_prior_check.py

Output: docs/results/zero_shot/class_prior_check.json and class_prior_samples.png (one row per guidance, the
first digit of each class; look at it).

`--channel`: what the channel can carry on zero_shot_coupling.py's unseen corruptions (the same 200 validation
digits, the same per-item sampling seeds as its search): sequential PiGDM (10 steps, weight 2, guidance 1) around
the class-conditional prior, every signal call conditioned on fixed logits: the null token (= sequential_cp/10/2
of the search), the classifier's logits of the degraded input, the clean digit's (an oracle: the ceiling of a channel whose
belief is right), and the classifier's logits of the null-token chain's x_hat ("first_pass": a second chain
conditioned on the first one's answer, the cost of two). Output: class_prior_channel.json.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/class_prior_check.py --channel
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from coupled.atomic import atomic_write, atomic_write_json  # noqa: E402
from coupled.bundle import NullObservation, load_bundle, load_net, wrap_denoiser  # noqa: E402
from coupled.domains.registry import get_domain  # noqa: E402
from coupled.engine import GuidedLogits, process_from_dict, sample  # noqa: E402
from coupled.seeds import stream_seed  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from zero_shot_vs_trained import _split  # noqa: E402

BUNDLE, PRIOR, OUT = Path("checkpoints/mnist"), Path("checkpoints/mnist_prior_logits"), Path("docs/results/zero_shot")
GUIDANCES = (0.0, 1.0, 2.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel", action="store_true", help="the channel's ceiling on the unseen corruptions")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.channel:
        return channel()
    started = time.time()
    bundle = load_bundle(BUNDLE)
    clf = bundle.coupling.classifier
    val = _split("val", 10 * a.per_class)  # class-balanced: the first per_class digits of each class
    x, labels = val.signals, val.labels
    logits = clf(x)
    net, meta = load_net(PRIOR, "prior", "signal")
    base = NullObservation(net, logits=True)
    process = process_from_dict(meta["process"])
    grid = process.grid(a.steps)
    gens = [torch.Generator().manual_seed(stream_seed("sampling", a.seed, i)) for i in range(len(x))]
    noise = process.prior(tuple(x.shape), gens)
    out = {"command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/class_prior_check.py", "prior": str(PRIOR),
           "steps": a.steps, "sampler": "ddim eta 0", "per_class": a.per_class, "seed": a.seed,
           "classifier_on_the_conditioning_digits": float((logits.argmax(1) == labels).float().mean()), "guidance": {}}
    samples = {}
    for w in GUIDANCES:
        conditioned = wrap_denoiser("signal", _Fixed(base if w == 1.0 else GuidedLogits(base, w), logits), meta)
        xs = sample(conditioned, process, grid, noise.clone(), sampler="ddim", eta=0.0)
        pred = clf(xs).argmax(1)
        samples[w] = xs
        out["guidance"][f"{w:g}"] = {"share_of_the_conditioning_class": float((pred == labels).float().mean()),
                                     "per_class": [float((pred[labels == c] == c).float().mean()) for c in range(10)]}
        print(f"guidance {w:g}: the classifier reads the conditioning class in "
              f"{out['guidance'][f'{w:g}']['share_of_the_conditioning_class']:.3f} of the samples", flush=True)
    out["seconds"] = round(time.time() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / "class_prior_check.json", out)
    first = [int(torch.nonzero(labels == c)[0]) for c in range(10)]
    fig, axes = plt.subplots(len(GUIDANCES) + 1, 10, figsize=(10, 1.1 * (len(GUIDANCES) + 1)))
    rows = [("conditioning digit", x)] + [(f"guidance {w:g}", samples[w]) for w in GUIDANCES]
    for r, (name, imgs) in enumerate(rows):
        for c, i in enumerate(first):
            ax = axes[r, c]
            ax.imshow(imgs[i, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle("class-conditional prior: 20-step DDIM from the same noise, conditioned on the digit's logits", fontsize=9)
    fig.tight_layout()
    atomic_write(OUT / "class_prior_samples.png", lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def channel():
    """Sequential PiGDM around the class-conditional prior, conditioned on fixed logits (see the module doc)."""
    from dataclasses import replace

    from zero_shot_coupling import CONDITIONS, PRIOR_LOGITS

    from coupled.engine import Measurement, item_generators, run_method
    from coupled.evaluation.runner import CORRUPTION_SEED
    from coupled.seeds import item_seeds

    started = time.time()
    bundle, domain, data = load_bundle(BUNDLE), get_domain("image"), _split("val", 200)
    clf = bundle.coupling.classifier
    coupling, method, options = bundle.prepare("sequential", {"signal_steps": 10, "zero_shot": {
        "sampler": "pigdm", "prior": PRIOR_LOGITS, "weight": 2.0}})
    den, meta = coupling.signal_denoiser, bundle.meta[f"prior:{PRIOR_LOGITS}"]
    out = {"command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/class_prior_check.py --channel",
           "prior": PRIOR_LOGITS, "chain": "sequential pigdm, 10 steps, weight 2, guidance 1", "items": len(data.labels),
           "split": "val", "sampling_seed": 0, "accuracy": {}, "belief_accuracy": {}}
    for c, levels in CONDITIONS.items():
        for level, sev in levels.items():
            d = domain.corrupt_set(data.signals, c, sev, CORRUPTION_SEED, indices=data.ids)
            operator, noise_std = domain.linear_measurement(c, sev, CORRUPTION_SEED, data)
            op = operator.batch(0, len(d))
            m = Measurement(op, op(op.pinv(d)), noise_std)
            beliefs = {"null": lambda: None, "degraded": lambda: clf(d), "oracle": lambda: clf(data.signals),
                       # the classifier's logits of the null-token chain's x_hat (two chains' cost)
                       "first_pass": lambda: clf(x_hat_null)}
            for name, belief in beliefs.items():
                logits = belief()
                fixed = replace(coupling, signal_denoiser=wrap_denoiser("signal", _Fixed(den.net, logits), meta))
                res = run_method(method, fixed, d, item_generators(item_seeds("sampling", 0, 0, len(d))),
                                 measurement=m, **options)
                acc = float((clf(res.x_hat).argmax(1) == data.labels).float().mean())
                if name == "null":
                    x_hat_null = res.x_hat
                out["accuracy"][f"{c}/{level}/{name}"] = acc
                if logits is not None:
                    out["belief_accuracy"][f"{c}/{level}/{name}"] = float((logits.argmax(1) == data.labels).float().mean())
                print(f"{c} {level} conditioned on {name}: {acc:.3f}", flush=True)
    out["seconds"] = round(time.time() - started, 1)
    atomic_write_json(OUT / "class_prior_channel.json", out)


class _Fixed(torch.nn.Module):
    """A prior net whose logits are fixed per item (None: the null token), whatever its caller passes (a strategy,
    or `sample`, which passes none)."""

    def __init__(self, net, logits):
        super().__init__()
        self.inner, self.fixed = net, logits
        self.cfg = getattr(net, "cfg", None)

    def forward(self, x_t, t, logits=None, logits_mask=None, **conditioning):
        return self.inner(x_t, t, logits=self.fixed, **conditioning)


if __name__ == "__main__":
    main()
