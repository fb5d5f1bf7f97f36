"""Run methods over a fixed corrupted split: the paired, cost-measured comparisons of the spec's section 5.

The corrupted split is generated once per (corruption, severity) from `corruption_seed`, so every method
and every sampling seed sees the same degraded items. Item i (its index in the split) under sampling seed s
draws its noise from its own generator, seeded `coupled.seeds.item_seeds("sampling", s, i, 1)[0]`: a stream
of its own, never the corruption's, whatever the seeds (`coupled.seeds`). Results do not depend on batch size,
and every method draws the same noise for the same item (common random numbers, which tightens paired
comparisons).

Methods are interleaved batch by batch (each batch runs every method, in an order that rotates from batch
to batch), so the seconds per item they report are measured under the same machine load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..defaults import DEFAULTS
from ..methods import REFERENCE_METHODS, zero_shot_label
from ..domains.registry import get_domain
from ..engine import COUPLED, NOISELESS, SIGNAL_METHODS, Measurement, item_generators, readouts, run_method
from ..errors import CoupledError
from ..seeds import item_seeds

CORRUPTION_SEED = DEFAULTS["evaluation"]["corruption_seed"]  # the seed of the fixed corrupted splits every method is evaluated on
# no sampling: one seed is all there is (noisy, predictive, and the reference methods that run one of them)
DETERMINISTIC = (*NOISELESS, *(r for r, engine_method in REFERENCE_METHODS.items() if engine_method in NOISELESS))


@dataclass(frozen=True)
class MethodSpec:
    """One evaluated configuration: a row `label` (the method's name, or a clearly named variant of it),
    the `method` that runs and its `options` (strategy options plus the bundle's: signal_guidance,
    signal_net, signal_eta)."""

    label: str
    method: str
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise CoupledError(f"a method's label must be a non-empty string, got {self.label!r}")
        if not isinstance(self.options, dict):
            raise CoupledError(f"options of {self.label!r} must be a mapping, got {type(self.options).__name__}")


def domain_seconds(bundle) -> float | None:
    """Samples per second of the bundle's domain's raw items (None: not a time signal)."""
    return get_domain(getattr(bundle, "domain", None)).samples_per_second


def represent(bundle, signals, lengths):
    """Raw items (a split's signals or their degraded versions, zero-padded with `lengths`) as the bundle's chains
    and classifier take them: the domain's `represent` for the bundle's signal net (identity for a domain
    without a representation). Returns (signals, lengths)."""
    domain = get_domain(getattr(bundle, "domain", None))
    return domain.represent(signals, lengths, (getattr(bundle, "meta", None) or {}).get("signal") or {})


def represent_split(bundle, data):
    """A labelled split with its signals and lengths as the bundle's chains take them (`represent`)."""
    from dataclasses import replace

    signals, lengths = represent(bundle, data.signals, data.lengths)
    return data if signals is data.signals and lengths is data.lengths else replace(data, signals=signals, lengths=lengths)


def _engine_method(bundle, method: str) -> str:
    """The engine method `method` runs: itself, or what a reference method of the library or of the bundle's domain
    (`Bundle.reference_methods`) runs."""
    return getattr(bundle, "reference_methods", REFERENCE_METHODS).get(method, method)


def _readouts(method: str) -> tuple[str, ...]:
    return ("classifier",) if method in DETERMINISTIC else readouts(method)


def _batch(signals, lengths, i: int, n: int):
    """Items i .. i + n of a split, trimmed to the longest valid length among them (with their lengths)."""
    if lengths is None:
        return signals[i:i + n], None
    lens = lengths[i:i + n]
    return signals[i:i + n, ..., : int(lens.max())], lens


def _item_metrics(metrics: dict, x: torch.Tensor, ref: torch.Tensor, lens) -> dict:
    """Per-item signal metrics of estimates `x` against `ref`; each item over its own length when given."""
    if lens is None:
        return {k: fn(x, ref).numpy() for k, fn in metrics.items()}
    out = {k: [] for k in metrics}
    for j, n in enumerate(lens.tolist()):
        for k, fn in metrics.items():
            out[k].append(np.asarray(fn(x[j:j + 1, ..., :n], ref[j:j + 1, ..., :n])).reshape(-1))
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def run_specs(bundle, clean: torch.Tensor, labels, degraded: torch.Tensor, specs, seed: int,
              batch_size: int, device, keep_x_hat: bool = False, lengths=None, task=None,
              signal_seconds: float | None = None, measurement=None, score_estimates: bool = True) -> dict:
    """Every spec over a whole (already degraded) split under one sampling seed, interleaved batch by batch.

    `labels`: int64 [N] class indices or a list of N answers (transcripts); `lengths` [N]: valid extents of a
    zero-padded split (each batch is trimmed to its longest item and run with per-item lengths, so an item's
    result does not depend on its batch); `task`: what the labels are (the domain's `task_metric` and
    `item_scores` score the answers). Returns {label: per-item scores per readout (`score_logits`,
    `score_classifier`: [N], or [N, 2] for a ratio metric), answers, signal metrics, calls per item and
    measured seconds per item; with the domain's `secondary_scores`, `secondary_<readout>`: {metric: per-item scores}
    of the same answers}. `signal_seconds`: the split's total duration (default: its lengths over the
    domain's `samples_per_second`; pass it when `lengths` count frames of a representation).
    `measurement`: (operator over the split's items, noise std) of the corruption (`Domain.linear_measurement`),
    bound batch by batch (y = the degraded batch) to the specs whose signal chain is a zero-shot sampler.
    `score_estimates`: False skips the estimates' signal metrics (`Domain.estimate_metrics`; their keys are then
    None), for a run that does not report them (`coupled tune`): some cost more than the sampling (speech's ESTOI).
    """
    if not specs:
        return {}
    if signal_seconds is None and lengths is not None and domain_seconds(bundle):
        signal_seconds = float(lengths.sum()) / domain_seconds(bundle)
    prepared = {s.label: bundle.prepare(s.method, s.options) for s in specs}
    domain = get_domain(getattr(bundle, "domain", None))
    # per-item quality of x_hat (on what the chains run on: the bundle's signal net records it)
    metrics = domain.estimate_metrics((getattr(bundle, "meta", None) or {}).get("signal")) if score_estimates else {}
    secondary = domain.secondary_scores(task)  # other scores of the same answers (no second sampling run)
    out = {s.label: {"score_logits": [], "pred": [], "pred_logits": [], **{k: [] for k in metrics}, "x_hat": [],
                     "calls": None, "seconds": 0.0} for s in specs}
    for b, i in enumerate(range(0, len(degraded), batch_size)):
        d, lens = _batch(degraded, lengths, i, batch_size)
        d = d.to(device)
        y = labels[i:i + len(d)]
        seeds = item_seeds("sampling", seed, i, len(d))
        order = specs[b % len(specs):] + specs[:b % len(specs)]  # rotate, so no method always runs first
        for spec in order:
            coupling, method, options = prepared[spec.label]
            o = out[spec.label]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            m = None
            chain = getattr(coupling, "signal_chain", None)
            if chain is not None and chain.zero_shot:
                if measurement is None:
                    raise CoupledError(f"{spec.label} runs a zero-shot sampler, which needs the corruption's linear "
                                       "measurement (Domain.linear_measurement)")
                op = measurement[0].batch(i, i + len(d))
                m = Measurement(op, op(op.pinv(d)), measurement[1])  # d on A's range: A x (+ noise)
            res = run_method(method, coupling, d, item_generators(seeds), lengths=None if lens is None else lens.to(device),
                             measurement=m, **options)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            o["seconds"] += time.perf_counter() - started
            answers = domain.readout(res.classifier_logits.cpu(), _cpu(res.frame_lengths))  # the domain's answers
            o["pred"].extend(answers.tolist() if torch.is_tensor(answers) else answers)
            if res.y_hat is not None:
                answers = domain.readout(res.y_hat.cpu(), _cpu(res.frame_lengths))
                o["score_logits"].append(domain.item_scores(task, y, answers))
                if secondary:
                    o["pred_logits"].extend(answers.tolist() if torch.is_tensor(answers) else answers)
            if res.x_hat is not None:
                x = res.x_hat.cpu()
                ref, _ = _batch(clean, lengths, i, batch_size)
                for k, v in _item_metrics(metrics, x, ref, lens).items():
                    o[k].append(v)
                if keep_x_hat:
                    o["x_hat"].append(x if lens is None else list(x))
            o["calls"] = dict(res.calls)  # per item: one batched call of a network serves every item once
    results = {}
    for spec in specs:
        o = out[spec.label]
        cat = lambda k: np.concatenate(o[k]) if o[k] else None  # noqa: E731
        pred = np.asarray(o["pred"])
        ro = _readouts(_engine_method(bundle, spec.method))
        if lengths is None:
            x_hat = torch.cat(o["x_hat"]) if o["x_hat"] else None
        else:
            x_hat = [item for part in o["x_hat"] for item in part] or None
        results[spec.label] = {
            "score_logits": cat("score_logits") if "logits" in ro else None,
            "score_classifier": domain.item_scores(task, labels, pred) if "classifier" in ro else None,
            "metric": domain.task_metric(task),
            # a signal metric the domain does not compute on estimates of what the chains run on: None
            "pred": pred, **{k: None for k in domain.signal_metrics}, **{k: cat(k) for k in metrics}, "calls": o["calls"],
            "seconds_per_item": o["seconds"] / len(degraded),
            **({"seconds_per_signal_second": o["seconds"] / signal_seconds} if signal_seconds else {}),
            "x_hat": x_hat,
        }
        if secondary:  # {metric: per-item scores} of each readout's answers, None where the method lacks the readout
            answers = {"classifier": o["pred"], "logits": o["pred_logits"]}
            for r in ("classifier", "logits"):
                results[spec.label][f"secondary_{r}"] = ({k: fn(labels, answers[r]) for k, fn in secondary.items()}
                                                        if r in ro else None)
    return results


def _cpu(t):
    return None if t is None else t.cpu()


def specs_from_methods(methods, method_options: dict | None = None) -> list[MethodSpec]:
    """One spec per method name, with its options from `method_options` (a config's `sampling.methods`)."""
    method_options = method_options or {}
    return [MethodSpec(zero_shot_label(m, method_options.get(m, {})), m, dict(method_options.get(m, {})))
            for m in methods]


def parse_zero_shot(text: str) -> dict:
    """'SAMPLER' or 'SAMPLER:key=value,key=value' (e.g. 'dps:weight=2') as {sampler, options...}; values are
    numbers, or '/'-separated numbers for a per-step weight or a clip range."""
    sampler, _, rest = str(text).partition(":")
    out = {"sampler": sampler}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise CoupledError(f"zero-shot option {item!r} in {text!r} is not key=value; e.g. dps:weight=2")
        try:
            parts = [float(v) for v in value.split("/")]
        except ValueError:
            raise CoupledError(f"zero-shot option {key!r} in {text!r} must be a number, got {value!r}") from None
        out[key] = parts[0] if len(parts) == 1 else parts
    return out


def zero_shot_specs(specs, samplers, prior) -> list[MethodSpec]:
    """The zero-shot variant `METHOD+SAMPLER` of each spec that runs a signal chain, per sampler ('ddnm', or
    with options 'dps:weight=2', `parse_zero_shot`): the same options, with the bundle option
    `zero_shot: {sampler, prior, options}` (its signal chain becomes that sampler around the unconditional prior
    in the folder `prior`; `Bundle.prepare`)."""
    from ..methods import BUNDLE_CHECKS

    if not prior:
        raise CoupledError("zero-shot sampling needs the unconditional prior's folder (--prior), e.g. checkpoints/mnist_prior")
    out = []
    for text in samplers:
        zs = {**parse_zero_shot(text), "prior": str(prior)}
        BUNDLE_CHECKS["zero_shot"](f"--zero-shot {text}", zs)
        out += [MethodSpec(f"{s.label}+{text}", s.method, {**s.options, "zero_shot": zs})
                for s in specs if s.method in SIGNAL_METHODS and "zero_shot" not in s.options]
    return out


def evaluate(bundle, data, severities: dict, *, specs, seeds_for_level=None, batch_size: int = 250,
             corruption_seed: int = CORRUPTION_SEED, device="cpu", progress: bool = True, n_examples: int = 3,
             score_estimates: bool = True, example_labels=None):
    """Every spec over every corruption and severity of `severities` ({name: {level: severity}}).

    Returns (records, example_rows): records as `report.summarise` reads them (one per spec, corruption,
    severity and seed; deterministic methods run on the first seed only), and rows for
    `report.plot_examples` (heavy severity, first seed, items where a coupled method changed the answer).
    `score_estimates`: as `run_specs`. `example_labels`: the spec labels whose estimates the examples show beside
    sequential's (default: the coupled ones; a fair test run passes its matched baseline and coupled pick).
    """
    domain = get_domain(getattr(bundle, "domain", None))
    device = torch.device(device)
    specs = list(specs)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise CoupledError(f"method labels must be unique, got {labels}")
    seeds_for_level = seeds_for_level or (lambda level: [0, 1, 2] if level == "heavy" else [0])
    jobs = [(name, level, sev, seed) for name, levels in severities.items() for level, sev in levels.items()
            for seed in seeds_for_level(level)]
    records, examples = [], []
    rep = represent_split(bundle, data)  # the clean items as the chains take them (the same object without a representation)
    seconds = (float(data.lengths.sum()) / domain.samples_per_second
               if data.lengths is not None and domain.samples_per_second else None)  # of the raw items
    bar = tqdm(jobs, desc="evaluate", disable=not progress, unit="run")
    degraded, key = None, None
    for name, level, sev, seed in bar:
        bar.set_postfix_str(f"{name}/{level} seed {seed}")
        if key != (name, level):
            key, degraded = (name, level), domain.corrupt_set(data.signals, name, sev, corruption_seed,
                                                              lengths=data.lengths, indices=data.ids)
            degraded, _ = represent(bundle, degraded, data.lengths)  # corrupted as raw items, then represented
            chain = bundle.coupling.signal_chain  # zero-shot by a spec's option, or by the sampling section
            zero_shot = any(s.options.get("zero_shot") for s in specs) or (chain is not None and chain.zero_shot)
            measurement = domain.linear_measurement(name, sev, corruption_seed, data) if zero_shot else None
        first = seed == seeds_for_level(level)[0]
        todo = [s for s in specs if first or _engine_method(bundle, s.method) not in DETERMINISTIC]
        outcomes = run_specs(bundle, rep.signals, rep.labels, degraded, todo, seed, batch_size, device,
                             keep_x_hat=first and level == "heavy", lengths=rep.lengths, task=rep.task,
                             signal_seconds=seconds, measurement=measurement, score_estimates=score_estimates)
        if first and level == "heavy":
            examples += _example_rows(name, domain.severity_value(sev), rep, degraded, outcomes, {s.label: s.method for s in todo}, n_examples,
                                      domain.example_panel, example_labels)
        for spec in todo:
            r = outcomes[spec.label]
            records.append({"method": spec.label, "base_method": spec.method, "settings": dict(spec.options),
                            "corruption": name, "severity": domain.severity_value(sev), "level": level, "seed": seed,
                            "condition": domain.condition_fields(sev),
                            **{k: v for k, v in r.items() if k not in ("x_hat", "pred")}})
    return records, examples


def _example_rows(name, sev, data, degraded, outcomes, methods: dict, n, panel, shown=None):
    """Items where a coupled method's answer differs from sequential's: clean / degraded / sequential's x_hat and
    that of each label of `shown` that ran (default: the coupled ones), each drawn by the domain's `panel`
    (signal -> picture)."""
    seq = outcomes.get("sequential")
    coupled = [label for label, m in methods.items() if m in COUPLED]
    shown = coupled if shown is None else [label for label in dict.fromkeys(shown) if label in outcomes and label != "sequential"]
    if seq is None:
        return []
    changed = np.zeros(len(degraded), dtype=bool)
    for label in coupled:
        changed |= outcomes[label]["pred"] != seq["pred"]
    rows = []
    idx = np.flatnonzero(changed)
    if len(idx) > n:  # evenly spread over the split (stored class by class), not the first n items
        idx = idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]
    for i in idx:
        label = data.labels[i].item() if torch.is_tensor(data.labels) else data.labels[i]
        n_i = None if data.lengths is None else int(data.lengths[i])
        signals = [(f"clean ({label})", data.signals[i, ..., :n_i]), (f"{name} {sev:g}", degraded[i, ..., :n_i])]
        for m in ("sequential", *shown):
            if outcomes[m]["x_hat"] is not None:
                pred = outcomes[m]["pred"][i].item() if hasattr(outcomes[m]["pred"][i], "item") else outcomes[m]["pred"][i]
                signals.append((f"{m}: {pred}{'' if pred == label else ' (wrong)'}", outcomes[m]["x_hat"][i][..., :n_i]))
        # the pictures for the report's grid, and the signals themselves (`Domain.example_files`, e.g. speech's WAVs)
        rows.append({"title": f"item {i}, label {label}", "panels": [(c, panel(x)) for c, x in signals],
                     "signals": signals})
    return rows
