"""The generic pipeline's config defaults: every key a config may set, each with its default and a comment.

A domain's `config_defaults()` starts from these and fills in its data and corruptions (the image domain's
are in `coupled.domains.image.domain`); `coupled.config` merges a user's YAML with them and `coupled.schema`
checks every value against the types they imply. A leaf module: it imports nothing of the library.
"""

from __future__ import annotations

# a config without a `domain:` key is an image config (the library's first domain)
DEFAULT_DOMAIN = "image"

FREE_FORM = {"net", "process", "severities", "train_severity", "calibration", "methods", "data"}

DEFAULTS: dict = {
    "name": "experiment",
    "seed": 0,
    "output": "checkpoints/experiment",
    "device": "auto",
    # the domain's data section (its `data_kinds` say which keys a kind takes) and its corruptions: a domain's
    # config_defaults() fills both (the image domain: mnist5k and its three corruptions)
    "data": {},
    "corruptions": {
        # corruption -> {light, medium, heavy} severities, chosen on the validation split (see `coupled calibrate`)
        "severities": {},
        # corruption -> [lo, hi]: training draws a corruption and a severity uniformly in [lo, hi] per item
        "train_severity": {},
        "calibration": {},
    },
    # factory: null trains the domain's built-in classifier (its `net` options); "module.path:function" couples
    # with your own frozen classifier instead: the function, called with `net` as keyword arguments, returns a
    # torch.nn.Module, `weights` (a safetensors file of its state_dict) are loaded into it, and `coupled train`
    # copies both into the bundle instead of training a classifier (docs/tutorial.md). A config is code.
    "classifier": {"net": {}, "steps": 1500, "batch_size": 128, "lr": 1e-3, "logit_scale": 0.8, "factory": None,
                   "weights": None},
    # ema_decay: each stage below saves an exponential moving average of its weights, with the warm-up
    # min(ema_decay, (1 + n) / (10 + n)) at update n (training/ema.py), so a short run saves trained weights;
    # ema_warmup: false is a flat ema_decay from the first step (how the bundled weights were trained)
    "signal": {
        "net": {}, "process": {"kind": "vp", "num_train_steps": 1000, "schedule": "cosine"}, "prediction": "v",
        "steps": 3000, "batch_size": 64, "lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True,
        # init: start from these weights (a .safetensors written by `coupled train`, e.g.
        # checkpoints/mnist/signal_pretrained.safetensors) instead of a random initialisation; the architecture
        # must match this section's `net` (logits and card take `init` too)
        "init": None,
    },
    "logits": {
        "net": {}, "process": {"kind": "centred"}, "prediction": "x0", "steps": 2000, "batch_size": 128,
        "lr": 1e-3, "ema_decay": 0.999, "ema_warmup": True, "init": None,
    },
    "joint": {
        "steps": 1000, "batch_size": 64, "lr": 2e-4, "lambda": 0.1, "null_dropout": 0.2,
        "ema_decay": 0.999, "ema_warmup": True, "cond_lr_scale": 1.0,  # learning-rate multiplier of the signal net's logit conditioning
        # what each item is trained at: one step of one coupled method's plan (engine/conditioning.py) on one
        # [signal_steps, logit_steps] grid; {} / [] take sampling.methods' coupled methods and the sampling steps
        "methods": {}, "grids": [],
    },
    # the baselines' own networks (stages card, finetuned, sequential; issue 7)
    "card": {"net": {}, "process": {"kind": "centred"}, "prediction": "x0", "steps": 3000, "batch_size": 128,
             "lr": 1e-3, "ema_decay": 0.999, "ema_warmup": True, "init": None},
    "finetuned": {"steps": 1500, "batch_size": 128, "lr": 5e-4, "clean_fraction": 0.2},
    "sequential": {"steps": 3000, "batch_size": 64, "lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True},
    # the predictive enhancer (issue 16): the signal net trained by regression from the degraded input alone, warm-
    # started from signal_pretrained (StoRM's predictive stage; method `predictive`)
    "predictive": {"steps": 1500, "batch_size": 64, "lr": 5e-4, "ema_decay": 0.999, "ema_warmup": True},
    # crop: the denoiser stages train on windows of this many samples along the last axis (0: whole items);
    # stages: what `coupled reproduce` trains, in order ([]: every stage); a bundle built from fewer lists them
    "train": {"checkpoint_every": 250, "log_every": 25, "num_threads": 0, "crop": 0, "stages": []},
    "sampling": {
        # false: the signal denoiser always gets the null logit token (ablation: logit conditioning off)
        "signal_logits": True,
        # classifier-free guidance weight on the signal net's logit input: 1 plain, 0 = null token, > 1 stronger
        "signal_guidance": 1.0,
        "signal": {"steps": 5, "sampler": "ddim", "eta": 0.0},
        "logits": {"steps": 5, "sampler": "pc", "corrector_steps": 1, "snr": 0.5},
        "methods": {
            "parallel": {"switch_fraction": 0.5},
            "alternating": {"rounds": 2},
            "nested": {"refresh_every": 2, "refresh_window": [0.5, 1.0]},
        },
    },
    # corruption_seed: the seed of the fixed degraded items every method is evaluated on (another seed: new noise
    # draws of the same items, e.g. to check a result on a second set of degradations)
    "evaluation": {"split": "test", "batch_size": 250, "seeds": [0, 1, 2], "heavy_seeds": 3, "other_seeds": 1,
                   "max_items": None, "bootstrap": 2000, "corruption_seed": 12345},
    # picks: validation picks (benchmarks/fair_comparison.py val) the demo runs; null: the paper's six methods
    # corruptions: the demo's (at their heavy level); [] all of the config's
    "demo": {"items": 200, "seed": 0, "picks": None, "corruptions": []},
    # `coupled tune`: the candidate grid (full, or compact where network calls are dear) and the observation-adding
    # weights every candidate that reads a signal estimate is also tried with (0: none; evaluation/fair.py)
    "tuning": {"grid": "full", "observation_weights": [0.0]},
}
