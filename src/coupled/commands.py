"""The generic pipeline's `coupled train`, `evaluate`, `demo`, `classify`, `tune` and `calibrate`, and the dispatch that lets a domain replace them.

A domain runs these commands through the generic trainer and evaluator unless it defines its own `run_train`,
`run_evaluate` or `run_demo` (speech trains its recogniser with its own code; the Gaussian toy has its own
demo). This module sits above training and evaluation, so that no domain module has to import them.
"""

from __future__ import annotations

from .errors import CoupledError


def run(domain, command: str, *args, **kwargs):
    """Run `command` ('train', 'evaluate', 'demo', 'classify', 'tune' or 'calibrate') for `domain`: its own `run_<command>`, else the generic one.

    A domain's own `run_train` is its `classifier` stage (speech trains its recogniser with its own code): without
    `stages` it runs alone, as before; with `stages`, `classifier` among them runs it first and every other stage
    runs the generic trainer (the denoisers of the bundle the classifier is in)."""
    own = getattr(domain, f"run_{command}", None)
    if command == "train" and own is not None and kwargs.get("stages"):
        stages = list(kwargs["stages"])
        done = list(own(*args, **{**kwargs, "stages": ["classifier"]})) if "classifier" in stages else []
        rest = [s for s in stages if s != "classifier"]
        return done + (GENERIC["train"](domain, *args, **{**kwargs, "stages": rest}) if rest else [])
    if own is not None:
        return own(*args, **kwargs)
    return GENERIC[command](domain, *args, **kwargs)


def train(domain, cfg: dict, *, stages=None, resume=False, devices=1, accelerator="auto", max_steps=None,
          progress=True) -> list:
    """Train the config's stages; returns what to print, one entry per stage."""
    from .training.run import train as train_stages
    from .training.stages import STAGES

    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
            for s in train_stages(cfg, stages or STAGES, resume=resume, devices=devices, accelerator=accelerator,
                                  max_steps=max_steps, progress=progress)]


def evaluate(domain, cfg: dict, *, checkpoint=None, split=None, out="runs/eval", max_items=None,
             corruptions=None, levels=None, methods=None, seeds=None, picks=None, results_path=None,
             headline_only=False, progress=True, zero_shot=None, prior=None) -> str:
    """Evaluate the config's checkpoint (results.json, report.md and plots in `out`); returns the report.
    `headline_only` (with `picks`): noisy, tuned sequential and the cost-matched headline's two rows only.
    `zero_shot` (sampler names) with `prior` (a folder) adds each method's zero-shot variant (issue 18)."""
    from .evaluation.api import evaluate_config
    from .evaluation.report import markdown_report

    if picks and methods:
        raise CoupledError("--picks runs the methods validation chose; drop --methods, or drop --picks")
    if headline_only and not picks:
        raise CoupledError("--headline-only needs the validation picks that choose the headline: add --picks FILE")
    results = evaluate_config(cfg, checkpoint=checkpoint, split=split, out=out, max_items=max_items,
                              corruptions=corruptions, levels=levels, methods=methods, progress=progress,
                              results_path=results_path, picks=picks, headline_only=headline_only,
                              zero_shot=zero_shot, prior=prior,
                              seeds_for_level=(lambda level: seeds) if seeds else None)
    return markdown_report(results)  # with the cost-matched headline, its verdicts and a glossary when picks ran


def demo(domain, *, config, overrides=(), items=None, seed=None, steps=20, out="runs/demo", progress=True) -> str:
    """The demo table: the config's bundled checkpoint on a fixed subset at the heavy level."""
    from .config import checkpoint_sampling, load_config, readable_output
    from .evaluation.api import evaluate_config
    from .evaluation.report import markdown_report

    cfg = load_config(config, overrides)
    cfg["output"] = readable_output(cfg)  # the bundled models, from any directory (coupled.home)
    cfg["sampling"] = checkpoint_sampling(cfg, overrides)  # the bundle's own, with --set on top
    picks = cfg["demo"].get("picks")  # validation picks: the cost-matched headline's rows, noisy and tuned sequential
    results = evaluate_config(cfg, out=out, max_items=items or cfg["demo"]["items"], levels=["heavy"],
                              corruptions=cfg["demo"]["corruptions"] or None,
                              seeds_for_level=lambda level: [cfg["demo"]["seed"] if seed is None else seed],
                              progress=progress, picks=picks, headline_only=True)
    return markdown_report(results) + f"\n(one sampling seed)\nwrote {out}/results.json, report.md and plots"


def classify(domain, files, checkpoint, *, method=None, allow_clipped=False, **options) -> int:
    """Print one line per input item of `files` (the bundle's domain reads them); returns the number of failures.
    `method` None runs Parallel; `options` may carry a picks file's `readout` and method `options`."""
    from .pipeline import classify_files

    if allow_clipped:
        raise CoupledError(f"--allow-clipped applies to audio files; the {domain.name} domain's inputs are not audio: drop it")
    return classify_files(files, checkpoint, method=method or "parallel", **options)


def tune(domain, cfg: dict, *, checkpoint=None, out="runs/tune/picks.json", max_items=None, nets=None,
         budget_ms=None, corruptions=None, wide=False, progress=True) -> str:
    """`coupled tune`: every method's configuration chosen on validation, written as a picks file; returns the
    tuning table."""
    from .evaluation.fair import dump, tune as tune_picks, tuning_table

    val = {"domain": domain.name, **tune_picks(cfg, checkpoint=checkpoint, max_items=max_items, nets=nets,
                                                  budget_ms=budget_ms, corruptions=corruptions, wide=wide,
                                                  progress=progress)}
    dump(val, out)
    budgets = [f"- {c}: {p['budget']['method']} ({p['budget']['readout']}) {p['budget'].get('value', p['budget'].get('accuracy')):.3f} "
               f"at {1000 * p['budget']['seconds_per_item']:.2f} ms/item" if p.get("budget") else f"- {c}: nothing fits"
               for c, p in val["picks"].items() if "budget" in p]
    return (tuning_table(val) + ("\n## Within the budget of %g ms per item\n\n" % budget_ms + "\n".join(budgets) + "\n"
                                  if budget_ms is not None else "")
            + f"\nwrote {out}: {val['runs'][0]['candidates']} candidates on {val['n_items']} validation items; "
              f"use it with coupled evaluate --picks {out} or coupled classify --picks {out}")


def calibrate(domain, cfg: dict, *, progress=True) -> str:
    """`coupled calibrate`: light / medium / heavy severities where the noisy classifier's validation metric crosses
    the domain's targets (coupled/evaluation/calibrate.py); returns them as JSON, with the metric measured at each
    and the targets, to copy into the config's `corruptions.severities`."""
    import json

    from .evaluation.calibrate import calibrate as calibrate_levels

    return json.dumps(calibrate_levels(domain, cfg, progress=progress), indent=1)


GENERIC = {"train": train, "evaluate": evaluate, "demo": demo, "classify": classify, "tune": tune,
           "calibrate": calibrate}
