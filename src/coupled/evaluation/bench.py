"""`coupled bench`: what sampling costs, measured on the bundled models, and a page from it (`runs/bench/`; with
`--publish`, `docs/performance.md`).

Four measurements, all in one command so their figures share one machine state:
  - engine overhead: every network call (signal denoiser, logit denoiser, classifier) is timed by a wrapper
    around the coupling's callables; the overhead is the share of a method's wall time spent outside them
    (a second timer around the bare forward passes also charges the x0_hat conversions to the engine);
  - cost ratios to `sequential`: seconds per item of each method over sequential's, methods interleaved batch
    by batch in one run (`runner.run_specs`, which also gives the accuracies);
  - accuracy against network passes and against seconds, for every method at several step counts, on a
    fixed subset of the validation split at the heavy severity;
  - throughput and peak memory at several batch sizes, each batch size in a fresh subprocess (so a larger
    earlier batch cannot mask a smaller one): on the CPU that process's `ru_maxrss`, and, since importing
    torch and loading already peak higher than sampling a small batch, also `VmHWM` after resetting it
    (`/proc/self/clear_refs`) once the bundle is loaded; on a GPU (when present) `torch.cuda.max_memory_allocated`.
Timing figures are only as quiet as the machine: the JSON records the date, the load average and the threads.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..errors import CoupledError
from ..methods import available_methods  # noqa: F401  (the bench's name for it, kept for its users)

# --quick: a few minutes on 2 cores; the full bench adds items, step counts, batch sizes and corruptions
PROFILES = {
    "quick": {"items": 200, "steps": (1, 2, 5), "batch_size": 50, "corruptions": ("gaussian_noise",),
              "throughput_batches": (1, 16, 64), "throughput_methods": ("sequential", "parallel"),
              "throughput_seconds": 2.0},
    "full": {"items": 500, "steps": (1, 2, 5, 10, 20), "batch_size": 125,
             "corruptions": ("pixel_noise", "gaussian_noise", "gaussian_blur"),
             "throughput_batches": (1, 8, 32, 128, 250), "throughput_methods": ("sequential", "parallel", "nested"),
             "throughput_seconds": 5.0},
}
NETWORKS = ("signal", "logits", "classifier")
STEP_OPTIONS = ("signal_steps", "logit_steps")


class _Timed:
    """A network callable of a `Coupling` that adds its wall time to `clock[key]` (synchronised on CUDA).

    Everything else (`passes`, `num_classes`, `to`, ...) is the wrapped object's, so strategies see no change."""

    def __init__(self, fn, clock: dict, key: str, cuda: bool):
        self._fn, self._clock, self._key, self._cuda = fn, clock, key, cuda

    def _time(self, fn, args, kwargs):
        import torch

        if self._cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        if self._cuda:
            torch.cuda.synchronize()
        self._clock[self._key] += time.perf_counter() - started
        return out

    def __call__(self, *args, **kwargs):
        return self._time(self._fn, args, kwargs)

    def raw(self, *args, **kwargs):  # FrozenClassifier.raw: what sequential_ensemble averages
        return self._time(self._fn.raw, args, kwargs)

    def __getattr__(self, name):
        return getattr(self._fn, name)


def _timed_module(module, clock: dict, key: str, cuda: bool):
    """`module` inside an `nn.Module` that times its forward passes (attributes read through)."""
    import torch

    class TimedForward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *args, **kwargs):
            return _Timed(self.inner, clock, key, cuda)(*args, **kwargs)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self._modules["inner"], name)

    return TimedForward()


def timed_coupling(coupling, clock: dict, cuda: bool = False, forwards: dict | None = None):
    """`coupling` with its classifier and denoisers wrapped by `_Timed` (seconds add up in `clock`).

    With `forwards` (a dict), the networks' own forward passes are timed there too, for the denoisers and the
    classifier the engine provides (`Denoiser`, `FrozenClassifier`): `clock` minus `forwards` is then the
    parameterisation's conversions and the input checks."""
    from ..engine import Denoiser, FrozenClassifier

    for key in NETWORKS:
        clock.setdefault(key, 0.0)
    parts = {"classifier": coupling.classifier, "signal": coupling.signal_denoiser, "logits": coupling.logit_denoiser}
    if forwards is not None:
        for key in NETWORKS:
            forwards.setdefault(key, 0.0)
        for key, fn in parts.items():
            if isinstance(fn, Denoiser):
                parts[key] = Denoiser(_timed_module(fn.net, forwards, key, cuda), fn.process, fn.prediction,
                                      fn.clip, fn.pass_center)
            elif isinstance(fn, FrozenClassifier):
                parts[key] = FrozenClassifier(_timed_module(fn.module, forwards, key, cuda), fn.num_classes,
                                              fn.logit_scale, fn.eps)
    wrap = {k: None if fn is None else _Timed(fn, clock, k, cuda) for k, fn in parts.items()}
    return replace(coupling, classifier=wrap["classifier"], signal_denoiser=wrap["signal"], logit_denoiser=wrap["logits"])


class _TimedBundle:
    """A `Bundle` whose `prepare` hands out timed couplings, one clock per prepared spec (in order)."""

    def __init__(self, bundle, cuda: bool):
        self.bundle, self.cuda, self.clocks = bundle, cuda, []

    def prepare(self, method, options):
        coupling, engine_method, options = self.bundle.prepare(method, options)
        clock, forwards = dict.fromkeys(NETWORKS, 0.0), dict.fromkeys(NETWORKS, 0.0)
        self.clocks.append((clock, forwards))
        return timed_coupling(coupling, clock, self.cuda, forwards), engine_method, options

    def __getattr__(self, name):  # the bundle's domain, meta, ...: what the runner reads besides `prepare`
        return getattr(self.bundle, name)


def bench_specs(methods, method_options: dict, steps, default_steps: int):
    """One spec per method and step count (`method@N` sets its signal and logit steps to N); methods without
    steps (noisy, one_step, the fine-tuned classifier) run once, labelled by their name."""
    from ..engine import METHODS, method_options as options_of
    from .runner import MethodSpec

    specs = []
    for m in methods:
        base = dict(method_options.get(m, {}))
        takes = [o for o in STEP_OPTIONS if m in METHODS and o in options_of(m)]
        if not takes:
            specs.append(MethodSpec(m, m, base))
            continue
        for n in sorted({*steps, default_steps}):
            specs.append(MethodSpec(f"{m}@{n}", m, {**base, **dict.fromkeys(takes, n)}))
    return specs


def _passes(calls: dict) -> int:
    return int(calls["signal_passes"] + calls["logits_passes"] + calls["classifier"])


def accuracy_run(bundle, data, corruption: str, severity, specs, batch_size: int, device, seed: int = 0,
                 progress: bool = True, corruption_seed: int | None = None):
    """Every spec over `data` degraded once, interleaved batch by batch; rows with the task score (accuracy, or
    the domain's metric, e.g. WER), passes, seconds per item, cost ratios to sequential and the engine overhead
    (share of wall time outside the networks).

    Each batch is one `run_specs` call (sampling seed `seed` + batch index), with the order of the methods
    rotated from batch to batch, so no method always runs first and the bar can show batches. Items of
    different lengths (`data.lengths`) are degraded each over its own length, seeded by its id, then
    represented as the bundle's chains take them (`runner.represent`); `severity` is anything the domain's
    `corrupt_set` takes (a number, or a labelled condition)."""
    import numpy as np
    from tqdm.auto import tqdm

    from ..domains.registry import get_domain
    from ..scores import get_metric
    from .runner import CORRUPTION_SEED, represent, represent_split, run_specs

    domain = get_domain(bundle.domain)
    corruption_seed = CORRUPTION_SEED if corruption_seed is None else corruption_seed
    if data.lengths is None:  # the image bench's subset: item i of the subset seeded by i, as it was published
        degraded = domain.corrupt_set(data.signals, corruption, severity, corruption_seed)
    else:
        degraded = domain.corrupt_set(data.signals, corruption, severity, corruption_seed, lengths=data.lengths,
                                      indices=data.ids)
    degraded, _ = represent(bundle, degraded, data.lengths)  # identity for a domain without a representation
    rep = represent_split(bundle, data)
    metric = get_metric(domain.task_metric(rep.task))
    per_second = domain.samples_per_second if data.lengths is not None else None
    clocks = {s.label: (dict.fromkeys(NETWORKS, 0.0), dict.fromkeys(NETWORKS, 0.0)) for s in specs}
    acc = {s.label: {"classifier": [], "logits": [], "seconds": 0.0, "calls": None} for s in specs}
    starts = range(0, len(data), batch_size)
    for b, i in enumerate(tqdm(starts, desc=f"{corruption}: batches", unit="batch", disable=not progress)):
        order = specs[b % len(specs):] + specs[:b % len(specs)]
        timed = _TimedBundle(bundle, device.type == "cuda")
        sl = slice(i, i + batch_size)
        lens = None if rep.lengths is None else rep.lengths[sl]
        audio = None if per_second is None else float(data.lengths[sl].sum()) / per_second
        out = run_specs(timed, rep.signals[sl], rep.labels[sl], degraded[sl], order, seed + b, batch_size, device,
                        lengths=lens, task=rep.task, signal_seconds=audio, score_estimates=False)
        if len(timed.clocks) != len(order):
            raise CoupledError("the runner prepared methods in an unexpected way; the bench cannot attribute network time")
        for spec, pair in zip(order, timed.clocks):
            r, a = out[spec.label], acc[spec.label]
            for total, part in zip(clocks[spec.label], pair):
                for k in NETWORKS:
                    total[k] += part[k]
            a["seconds"] += r["seconds_per_item"] * len(rep.signals[sl])
            a["calls"] = r["calls"]
            for ro in ("classifier", "logits"):
                if r[f"score_{ro}"] is not None:
                    a[ro].append(r[f"score_{ro}"])
    outcomes = {s.label: {"seconds_per_item": acc[s.label]["seconds"] / len(data), "calls": acc[s.label]["calls"],
                          **{f"score_{ro}": np.concatenate(acc[s.label][ro]) if acc[s.label][ro] else None
                             for ro in ("classifier", "logits")}} for s in specs}
    rows = []
    for spec in specs:
        r, (clock, forwards) = outcomes[spec.label], clocks[spec.label]
        wall = r["seconds_per_item"] * len(data)
        network = sum(clock.values())
        steps = next((spec.options[o] for o in STEP_OPTIONS if o in spec.options), None)
        score = {ro: metric.value(r[f"score_{ro}"]) for ro in ("classifier", "logits") if r[f"score_{ro}"] is not None}
        rows.append({
            "label": spec.label, "method": spec.method, "steps": steps, "options": spec.options,
            "readouts": list(score), metric.name: score, "calls": r["calls"], "passes": _passes(r["calls"]),
            "seconds_per_item": r["seconds_per_item"], "wall_seconds": wall,
            "network_seconds": dict(clock), "overhead": (wall - network) / wall if wall > 0 else None,
            "forward_seconds": dict(forwards),
            "overhead_outside_forwards": (wall - sum(forwards.values())) / wall if wall > 0 else None,
            **({"seconds_per_signal_second": wall / (float(data.lengths.sum()) / per_second)} if per_second else {}),
        })
    by_label = {r["label"]: r for r in rows}
    for r in rows:
        ref = by_label.get(f"sequential@{r['steps']}") if r["steps"] is not None else None
        r["cost_ratio_same_steps"] = r["seconds_per_item"] / ref["seconds_per_item"] if ref else None
    setting = {"items": len(data), "corruption": corruption, "severity": domain.severity_value(severity),
               "batch_size": batch_size}
    if isinstance(severity, dict):  # a labelled condition (speech: its SNR, RT60)
        setting["condition"] = domain.condition_fields(severity)
    if per_second:
        setting["signal_seconds"] = float(data.lengths.sum()) / per_second
    return rows, setting


def network_calls(bundle, data, seconds: float, repeats: int, device, method: str = "parallel",
                  options: dict | None = None) -> dict:
    """Milliseconds of one call of each network (its bare forward pass, `timed_coupling`'s forwards clock) on one
    item `seconds` long: the validation item nearest that length, cut or zero-padded to it, represented as the
    chains take it, run through `method` (by default Parallel, which calls all three) `repeats` times after a
    warm-up; the median over runs of each network's forward seconds over its calls."""
    import numpy as np
    import torch

    from ..domains.registry import get_domain
    from ..engine import item_generators, run_method
    from ..seeds import item_seeds
    from .runner import represent

    domain = get_domain(bundle.domain)
    n = int(round(seconds * domain.samples_per_second))
    pick = int(np.argmin(np.abs(data.lengths.numpy() - n)))
    raw = data.signals[pick:pick + 1, ..., :min(n, int(data.lengths[pick]))]
    raw = torch.nn.functional.pad(raw, (0, n - raw.shape[-1]))
    x, lens = represent(bundle, raw, torch.tensor([n]))
    coupling, engine_method, opts = bundle.prepare(method, options or {})
    per_call = {k: [] for k in NETWORKS}
    calls = None
    with torch.no_grad():
        for run in range(repeats + 1):
            clock, forwards = dict.fromkeys(NETWORKS, 0.0), dict.fromkeys(NETWORKS, 0.0)
            timed = timed_coupling(coupling, clock, device.type == "cuda", forwards)
            res = run_method(engine_method, timed, x.to(device), item_generators(item_seeds("sampling", run, 0, 1)),
                             lengths=lens.to(device), **opts)
            calls = dict(res.calls)
            if run:  # the first run warms up
                for k in NETWORKS:
                    if calls.get(k):
                        per_call[k].append(forwards[k] / calls[k])
    return {"seconds": seconds, "method": method, "options": options or {}, "repeats": repeats, "item_frames": int(lens[0]),
            "calls": {k: calls.get(k, 0) for k in NETWORKS},
            "ms_per_call": {k: 1000 * float(np.median(v)) if v else None for k, v in per_call.items()}}


def length_sweep(bundle, data, corruption: str, severity, specs, groups: dict, per_group: int, device,
                 corruption_seed: int, progress: bool = True) -> list[dict]:
    """Seconds per item of each spec against item length: `per_group` items of each length group (the domain's
    `length_groups`, a fixed random choice), degraded at `severity`, each run alone (batch size 1: no padding),
    methods interleaved item by item. One row per (group, spec) with the mean seconds of signal too."""
    import numpy as np
    from tqdm.auto import tqdm

    from ..domains.registry import get_domain
    from .runner import represent, represent_split, run_specs

    domain = get_domain(bundle.domain)
    rows = []
    for g, (label, idx) in enumerate(tqdm(groups.items(), desc="cost against length", unit="group", disable=not progress)):
        chosen = np.sort(np.random.default_rng(g).permutation(np.asarray(idx))[:per_group])
        part = data.subset(chosen)
        degraded = domain.corrupt_set(part.signals, corruption, severity, corruption_seed, lengths=part.lengths,
                                      indices=part.ids)
        degraded, _ = represent(bundle, degraded, part.lengths)
        rep = represent_split(bundle, part)
        out = run_specs(bundle, rep.signals, rep.labels, degraded, specs, 0, 1, device, lengths=rep.lengths,
                        task=rep.task, score_estimates=False)
        signal = float(part.lengths.float().mean()) / domain.samples_per_second
        for spec in specs:
            rows.append({"group": label, "items": len(part), "signal_seconds": signal, "label": spec.label,
                         "method": spec.method, "seconds_per_item": out[spec.label]["seconds_per_item"],
                         "calls": out[spec.label]["calls"]})
    return rows


def _picked_specs(cfg: dict, corruption: str, methods) -> tuple[list, str | None]:
    """Each method's validation pick for `corruption` (`fair.test_specs` of the config's `demo.picks` file), kept to
    the methods the bundle can run (the cost-matched baseline as `<method>@matched` when it is another configuration);
    ([], None) when the config names no picks file or it lacks the corruption."""
    from ..home import locate
    from .fair import test_specs

    path = (cfg.get("demo") or {}).get("picks")
    if not path:
        return [], None
    path = locate(path)
    if not Path(path).is_file():
        return [], None
    picks = json.loads(Path(path).read_text())["picks"]
    if corruption not in picks:
        return [], None
    # not `sequential@5`, the image comparison's published baseline (DDIM options a speech sampler does not take):
    # sequential's own pick is there
    return [s for s in test_specs(picks, corruption) if s.method in methods and s.label != "sequential@5"], str(path)


# ------------------------------------------------------------------------------------------ throughput worker


def _throughput_worker(job: dict) -> dict:
    """Run in a fresh process: items/s, peak memory and overhead of one method at one batch size."""
    import resource

    import torch

    import numpy as np

    from ..bundle import load_bundle
    from ..engine import item_generators, run_method
    from ..seeds import item_seeds
    from ..threads import use_threads

    use_threads(job["threads"])
    device = torch.device(job["device"])
    cuda = device.type == "cuda"
    bundle = load_bundle(job["checkpoint"], sampling=job["sampling"]).to(device)
    b = job["batch_size"]
    items = torch.from_numpy(np.load(job["degraded"]))
    pick = torch.arange(b) % len(items)
    d, lens = items[pick], None
    if job.get("lengths"):  # items of different lengths: the batch trimmed to its longest, run with its lengths
        lens = torch.from_numpy(np.load(job["lengths"]))[pick]
        d, lens = d[..., :int(lens.max())], lens.to(device)
    d = d.to(device)
    extra = {} if lens is None else {"lengths": lens}
    clock, forwards = dict.fromkeys(NETWORKS, 0.0), dict.fromkeys(NETWORKS, 0.0)
    coupling, method, options = bundle.prepare(job["method"], job["options"])
    coupling = timed_coupling(coupling, clock, cuda, forwards)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    window = _reset_peak_rss()  # Linux: the peak from here on is the sampling's alone (plus what is resident)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        run_method(method, coupling, d, item_generators(item_seeds("sampling", 0, 0, b)), **extra, **options)  # warm-up
        for k in NETWORKS:
            clock[k] = forwards[k] = 0.0
        runs, wall = 0, 0.0
        while runs < 1 or (wall < job["min_seconds"] and runs < 50):
            if cuda:
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            run_method(method, coupling, d, item_generators(item_seeds("sampling", runs + 1, 0, b)), **extra, **options)
            if cuda:
                torch.cuda.synchronize(device)
            wall += time.perf_counter() - started
            runs += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"method": job["method"], "batch_size": b, "device": device.type, "runs": runs,
           "items_per_second": runs * b / wall, "overhead": (wall - sum(clock.values())) / wall,
           "overhead_outside_forwards": (wall - sum(forwards.values())) / wall,
           "cpu_peak_rss_mb": peak / 1024, "cpu_rss_after_load_mb": rss_loaded / 1024,
           "cpu_sampling_peak_rss_mb": _proc_status_kib("VmHWM") / 1024 if window else None,
           "cpu_resident_before_sampling_mb": window / 1024 if window else None}
    if cuda:
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Reset the process's peak RSS (Linux `clear_refs` 5); returns the resident KiB then, None if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _proc_status_kib("VmRSS")


def throughput(checkpoint, sampling: dict, degraded, profile: dict, threads: int | None, devices,
               progress=True, lengths=None, options: dict | None = None) -> list[dict]:
    """One fresh subprocess per (device, method, batch size) on `degraded` items (as the chains take them, with
    their `lengths` when they differ); see `_throughput_worker`. `options`: {method: its options} (default: the
    config's `sampling.methods`)."""
    import tempfile

    import numpy as np
    from tqdm.auto import tqdm

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        items = Path(tmp) / "degraded.npy"
        np.save(items, degraded.numpy())
        extra = {}
        if lengths is not None:
            np.save(Path(tmp) / "lengths.npy", lengths.numpy())
            extra = {"lengths": str(Path(tmp) / "lengths.npy")}
        options = options or {}
        jobs = [{"checkpoint": str(checkpoint), "sampling": sampling, "threads": threads, "device": dev,
                 "method": m, "options": dict(options.get(m, sampling.get("methods", {}).get(m, {}))), "batch_size": b,
                 "degraded": str(items), "min_seconds": profile["throughput_seconds"], **extra}
                for dev in devices for m in profile["throughput_methods"] for b in profile["throughput_batches"]]
        for job in tqdm(jobs, desc="throughput", unit="process", disable=not progress):
            proc = subprocess.run([sys.executable, "-m", "coupled.evaluation.bench"], input=json.dumps(job),
                                  capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise CoupledError(f"the throughput worker failed at batch size {job['batch_size']} ({last})")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


# ------------------------------------------------------------------------------------------------- the bench


def run_bench(cfg: dict, *, quick: bool = False, checkpoint=None, out="runs/bench/bench.json",
              doc="runs/bench/performance.md", threads: int | None = None, batch_sizes=None,
              command: str | None = None, progress: bool = True) -> dict:
    """Run the bench for config `cfg`, write the JSON to `out` and the generated page to `doc` (with a PNG
    beside it), and return the results. `threads`: torch threads (None: the cores torch can use, `coupled.threads`); `batch_sizes`:
    the throughput batch sizes (None: the profile's). The settings are the domain's `bench_profiles` (else
    `PROFILES`); a domain other than the default one writes its own section of the page (`write_doc`)."""
    import numpy as np
    import torch

    from ..atomic import atomic_write_json
    from ..bundle import load_bundle
    from ..domains.registry import domain_of, get_domain
    from ..threads import use_threads
    from .runner import CORRUPTION_SEED, represent

    domain = domain_of(cfg)
    domain.check_command("bench")  # a domain that lists bench among its commands
    use_threads(threads)  # --threads, else the cores torch can use (coupled.threads)
    profile = dict((domain.bench_profiles or PROFILES)["quick" if quick else "full"])
    if batch_sizes:
        profile["throughput_batches"] = tuple(batch_sizes)
    checkpoint = Path(checkpoint or cfg["output"])
    started, load_start = time.time(), os.getloadavg()
    device = torch.device("cpu")  # the accuracy/ratio run is on the CPU; throughput adds the GPU when present
    bundle = load_bundle(checkpoint, sampling=cfg["sampling"]).to(device)
    methods, skipped = available_methods(bundle)
    default_steps = int(cfg["sampling"]["signal"]["steps"])
    specs = bench_specs(methods, cfg["sampling"].get("methods", {}), profile["steps"], default_steps)
    data = domain.load_splits(cfg)["val"]
    n = min(profile["items"], len(data))
    full = data
    data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:n]))  # as `coupled evaluate`
    severities = domain.conditions(cfg, "val")
    missing = [c for c in profile["corruptions"] if "heavy" not in severities.get(c, {})]
    if missing:
        raise CoupledError(f"the config has no severities for {missing}; the bench runs the heavy level of "
                           f"{', '.join(profile['corruptions'])}")
    # the image bench's corrupted items are those it published (CORRUPTION_SEED); a domain with a seed of its own
    # for its degradations (speech: evaluation.corruption_seed) degrades as its evaluation does
    corruption_seed = cfg["evaluation"].get("corruption_seed", CORRUPTION_SEED)
    from tqdm.auto import tqdm

    runs, picks_file, run_specs_of = [], None, {}
    for corruption in tqdm(profile["corruptions"], desc="accuracy and cost", unit="corruption", disable=not progress):
        these = specs
        if profile.get("specs") == "picks":  # each method at its validation pick, when the config names picks
            picked, picks_file = _picked_specs(cfg, corruption, methods)
            these = picked or specs
        run_specs_of[corruption] = these
        rows, setting = accuracy_run(bundle, data, corruption, severities[corruption]["heavy"], these,
                                     min(profile["batch_size"], n), device, progress=progress,
                                     corruption_seed=corruption_seed)
        runs.append({**setting, "rows": rows, **({"specs": "picks"} if these is not specs else {})})
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    first = profile["corruptions"][0]
    heavy = severities[first]["heavy"]
    if data.lengths is None:
        tp_items, tp_lengths = domain.corrupt_set(data.signals, first, heavy, corruption_seed), None
    else:
        tp_items, tp_lengths = represent(bundle, domain.corrupt_set(data.signals, first, heavy, corruption_seed,
                                                                    lengths=data.lengths, indices=data.ids), data.lengths)
    tp = throughput(checkpoint, cfg["sampling"], tp_items, profile, threads, devices, progress, lengths=tp_lengths,
                    options={s.label: s.options for s in run_specs_of[first]})
    results = {
        "command": command or f"coupled bench{' --quick' if quick else ''}",
        "profile": "quick" if quick else "full", "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in profile.items()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "checkpoint": str(checkpoint), "split": "val",
        "default_steps": default_steps, "skipped": skipped,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(), "platform": platform.platform(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "loadavg_start": [round(x, 2) for x in load_start]},
        "accuracy_runs": runs, "throughput": tp,
    }
    if domain.name != get_domain(None).name:  # another domain's results say whose they are and what they score
        results.update(domain=domain.name, metric=domain.task_metric(data.task), picks=picks_file)
    def named(methods):  # a method's pick, or its spec at the config's steps
        return [s for s in run_specs_of[first] if s.label in methods or s.label in {f"{m}@{default_steps}" for m in methods}]

    if profile.get("call_seconds") and domain.samples_per_second:
        results["network_calls"] = network_calls(bundle, full, profile["call_seconds"], profile["call_repeats"], device,
                                                 options=next((s.options for s in named(["parallel"])), None))
    groups = domain.length_groups(full) if profile.get("length_sweep") else None
    if groups:
        sweep = profile["length_sweep"]
        chosen = named(sweep["methods"])
        results["length_sweep"] = {"corruption": first, "per_group": sweep["per_group"],
                                   "rows": length_sweep(bundle, full, first, heavy, chosen, groups, sweep["per_group"],
                                                        device, corruption_seed, progress)}
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["bench_seconds"] = round(time.time() - started, 1)
    out, doc = Path(out), Path(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, results, indent=1, default=_jsonable)
    if doc:
        write_doc(results, doc, out)
    return results


def _jsonable(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


# ------------------------------------------------------------------------------------------------ the doc


def _mb(v):
    return "-" if v is None else f"{v:.0f}"


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _table(heads, rows) -> str:
    return "\n".join(["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|",
                      *("| " + " | ".join(map(str, r)) + " |" for r in rows)])


def _score_name(results: dict) -> tuple[str, str, str]:
    """(rows' key, the plot's axis name, the tables' short name) of the bench's task score: accuracy unless the
    results name another metric (e.g. speech's WER)."""
    metric = results.get("metric", "accuracy")
    return (metric, "accuracy", "acc") if metric == "accuracy" else (metric, metric.upper(), metric.upper())


def plot_accuracy_seconds(results: dict, path) -> None:
    """Accuracy (or the results' metric) against network passes and against measured seconds per item, one colour
    per method (solid: f(x_hat), dashed: y_hat), points joined in step order; one row of panels per corruption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, axis, _ = _score_name(results)
    noun = results["settings"].get("item_noun", "digits")
    runs = results["accuracy_runs"]
    fig, axes = plt.subplots(len(runs), 2, figsize=(14, 5.2 * len(runs)), squeeze=False)
    cmap = plt.get_cmap("tab20")  # dark shades first, then the light ones: up to 20 distinct methods
    methods = sorted({r["method"] for run in runs for r in run["rows"]})
    colour = {m: cmap((2 * i) % 20 + (2 * i) // 20 % 2) for i, m in enumerate(methods)}
    for row, run in zip(axes, runs):
        lines = {}
        for r in run["rows"]:
            for ro, acc in r[key].items():
                lines.setdefault((r["method"], ro), []).append((r["steps"] or 0, r["passes"], r["seconds_per_item"] * 1000, acc))
        for ax, xi, xlabel in ((row[0], 1, "network passes per item (log scale)"),
                               (row[1], 2, "measured milliseconds per item (log scale)")):
            for (m, ro), pts in sorted(lines.items()):
                pts.sort()
                ax.plot([p[xi] for p in pts], [p[3] for p in pts], color=colour[m], ms=4,
                        marker="o" if ro == "classifier" else "s", ls="-" if ro == "classifier" else "--",
                        label=f"{m} ({'f(x_hat)' if ro == 'classifier' else 'y_hat'})")
                for p in pts:
                    if p[0]:
                        ax.annotate(str(p[0]), (p[xi], p[3]), fontsize=6, xytext=(2, 2), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(axis)
            ax.set_title(f"{run['corruption']} {run['severity']:g} (heavy), {run['items']} validation {noun}", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(
        f"{results['command']}: {axis} vs cost (numbers: steps per chain; load average "
        f"{results['machine']['loadavg_start'][0]:g} on {results['machine']['cpu_count']} cores, so seconds are noisy)",
        140)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_length(results: dict, path) -> None:
    """Seconds per item against the item's seconds of signal, one line per method, log y (`length_sweep`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = results["length_sweep"]
    fig, ax = plt.subplots(figsize=(8, 5))
    by = {}
    for r in sweep["rows"]:
        by.setdefault(r["label"], []).append((r["signal_seconds"], r["seconds_per_item"], r["group"]))
    for label, pts in by.items():
        pts.sort()  # by seconds of audio: a group of more words may be shorter on average
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=label)
        for x, y, g in pts:
            ax.annotate(g.split()[0], (x, y), fontsize=6, xytext=(2, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("mean seconds of audio per utterance of a length (numbers: words in the string)")
    ax.set_ylabel("measured seconds per utterance (log scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(
        f"{results['command']}: cost against length, {sweep['corruption']} (heavy), {sweep['per_group']} "
        f"utterances per length, each alone (load average {results['machine']['loadavg_start'][0]:g})", 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


SECTION = "<!-- coupled bench, domain {}: generated by the command below; rerun it to update this section -->"


def _merge_section(doc: Path, section: str | None, text: str) -> str:
    """The page with `text` as the default domain's part (`section` None: the page's start, up to the first
    domain marker) or as domain `section`'s part (from its marker to the next), keeping every other part."""
    import re

    old = doc.read_text() if doc.is_file() else ""
    marker = re.compile(r"^<!-- coupled bench, domain (\S+):.*-->$", re.M)
    cuts = [(m.start(), m.group(1)) for m in marker.finditer(old)]
    head = old[:cuts[0][0]] if cuts else old
    parts = {name: old[start:(cuts[k + 1][0] if k + 1 < len(cuts) else len(old))] for k, (start, name) in enumerate(cuts)}
    if section is None:
        head = text
    else:
        parts[section] = SECTION.format(section) + "\n\n" + text
    body = head.rstrip("\n") + "\n" if parts else head
    return body + "".join("\n" + parts[name].strip("\n") + "\n" for name in parts)


def write_doc(results: dict, doc: Path, json_path: Path) -> None:
    """docs/performance.md from the bench JSON, each table beside the command that produced it. The default
    domain's bench writes the page from its start; another domain's (results with `domain`) writes its own section
    at the end, marked by `SECTION`, so each command rewrites only its part."""
    from ..atomic import atomic_write_text

    doc = Path(doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    section = results.get("domain")
    stem = doc.stem if section is None else f"{doc.stem}_{section}"
    png = doc.with_name(stem + "_accuracy_seconds.png")
    plot_accuracy_seconds(results, png)
    key, _, short = _score_name(results)
    noun = results["settings"].get("item_noun", "digits")
    cmd, m = results["command"], results["machine"]
    ds = results["default_steps"]
    h = "#" if section is None else "##"  # a domain's section sits one level down
    lines = [
        "# Performance" if section is None else f"# Performance: {section}", "",
        f"Generated by `{cmd}` from `{json_path}` on {results['date']} ({results['bench_seconds']:.0f} s). "
        "Do not edit by hand: rerun the command.", "",
        f"Machine: {m['cpu_count']} CPU cores, torch threads: {m['torch_threads']}, torch {m['torch']}, "
        f"GPU: {m['gpu'] or 'none'}. Load average (1/5/15 min) {m['loadavg_start']} at the start and "
        f"{m['loadavg_end']} at the end. **Timing figures are noisy**: the cores were shared with other heavy "
        "jobs; ratios measured interleaved in one run (sections 1 and 2) are more trustworthy than absolute "
        "seconds.", "",
    ]
    if section is not None:
        lines[0] = f"## Performance: {section}"
        lines += [f"Methods at their validation picks (`{results['picks']}`, each method's configuration chosen on "
                  "validation for the corruption; a method without a pick runs the config's sampling)."
                  if results.get("picks") else
                  "Methods at the config's sampling (no validation picks file: the config's `demo.picks`).", ""]
    if results["skipped"]:
        lines += ["Skipped (the bundle lacks their networks): " + "; ".join(
            f"`{k}` ({v})" for k, v in results["skipped"].items()) + ".", ""]
    for run in results["accuracy_runs"]:
        rows = run["rows"]
        picked = run.get("specs") == "picks"
        at_default = rows if picked else [r for r in rows if r["steps"] in (None, ds)]
        seq = next((r for r in rows if r["label"] == f"sequential@{ds}"), None) or next(
            (r for r in rows if r["label"] == "sequential"), None)
        where = (f"{run['items']} validation {noun}, {run['corruption']} at the heavy severity {run['severity']:g}, "
                 f"batch size {run['batch_size']}, methods interleaved batch by batch")
        steps_text = "each method at its validation pick" if picked else f"{ds} steps per chain (the bundle's)"
        lines += [
            f"{h}# {run['corruption']}", "",
            f"{h}## 1. Engine overhead (target at most 3%)", "",
            f"Command: `{cmd}`; {where}; {steps_text}. Every call of the signal "
            "denoiser, the logit denoiser and the classifier is timed by a wrapper; the overhead is the share of "
            "the method's wall time spent outside them (chains, samplers, strategies, bookkeeping). A second "
            "timer inside each call times the network's forward pass alone; 'outside forwards' adds the "
            "parameterisation's conversions to x0_hat and the classifier's input checks to the overhead.", "",
            _table(["method", "wall s", "signal s", "logits s", "classifier s", "overhead", "outside forwards"],
                   [[r["label"], f"{r['wall_seconds']:.2f}", *(f"{r['network_seconds'][k]:.2f}" for k in NETWORKS),
                     _pct(r["overhead"]), _pct(r["overhead_outside_forwards"])] for r in at_default]), "",
        ]
        if section is not None:  # the networks' shares of the wall time, and seconds per second of signal
            lines += [f"Network shares of each method's wall time (signal U-Net, logit net, recogniser) and its cost "
                      "per second of audio:", "",
                      _table(["method", "s per utterance", "s per s of audio", "signal share", "logits share",
                              "classifier share"],
                             [[r["label"], f"{r['seconds_per_item']:.3f}",
                               "-" if r.get("seconds_per_signal_second") is None else f"{r['seconds_per_signal_second']:.3f}",
                               *(_pct(r["network_seconds"][k] / r["wall_seconds"] if r["wall_seconds"] else None)
                                 for k in NETWORKS)] for r in rows]), ""]
        if seq is not None:
            lines += [
                f"{h}## 2. Cost ratios to sequential", "",
                f"Command: `{cmd}`; {where}. Ratio = the method's seconds per item / `{seq['label']}`'s, both "
                "measured in the same interleaved run; beside it the ratio of network passes (a guided signal call "
                "counts two).", "",
                _table(["method", "ms per item", "time ratio", "passes per item", "passes ratio"],
                       [[r["label"], f"{1000 * r['seconds_per_item']:.2f}", f"{r['seconds_per_item'] / seq['seconds_per_item']:.2f}",
                         r["passes"], f"{r['passes'] / seq['passes']:.2f}"] for r in at_default]), ""]
        noise = (f"On {run['items']} items one standard error of an accuracy is up to "
                 f"{50 / run['items'] ** 0.5:.1f} points: differences of a few points here are noise."
                 if key == "accuracy" else
                 f"{short} of {run['items']} items, no interval: differences of a few points here are noise.")
        lines += [
            f"{h}## 3. {'Accuracy' if key == 'accuracy' else short} against calls and seconds", "",
            f"Command: `{cmd}`; {where}; "
            + ("each method at its validation pick (its steps in the calls column). " if picked else
               "`method@N` runs N steps in each of its chains. ")
            + ("Accuracy of argmax f(x_hat) and of argmax y_hat (the logit chain's readout) where the method has it. "
               if key == "accuracy" else
               f"{short} of the recogniser on x_hat, f(x_hat), and of the logit chain's readout y_hat where the method has it. ")
            + "Calls: signal / logit / classifier calls per item; passes count guided signal calls twice. " + noise, "",
            _table(["method", "calls Dx/Dy/f", "passes", "ms per item", "ratio to same-steps sequential",
                    "overhead", f"{short} f(x_hat)", f"{short} y_hat"],
                   [[r["label"], "{signal}/{logits}/{classifier}".format(**r["calls"]), r["passes"],
                     f"{1000 * r['seconds_per_item']:.2f}",
                     "-" if r["cost_ratio_same_steps"] is None else f"{r['cost_ratio_same_steps']:.2f}",
                     _pct(r["overhead"]), _pct(r[key].get("classifier")), _pct(r[key].get("logits"))]
                    for r in rows]), "",
        ]
    lines += [f"![{'accuracy' if key == 'accuracy' else short} vs seconds per item]({png.name})", "",
              f"Figure: `{cmd}`: {'accuracy' if key == 'accuracy' else short} against network passes (left) and "
              "measured seconds per item (right), log scales; one colour per method, solid f(x_hat), dashed y_hat; "
              "numbers are steps per chain.", "",
              f"{h}# 4. Throughput and peak memory", "",
              f"Command: `{cmd}`; each row is a fresh process running one method on one batch of the heavy "
              f"{results['accuracy_runs'][0]['corruption']} validation {noun} (one warm-up run, then runs for at "
              f"least {results['settings']['throughput_seconds']:g} s). CPU memory, from the kernel: 'process peak' "
              "is `ru_maxrss` (Python, torch, the bundle and the sampling; 'after load' is the same before "
              "sampling, so a sampling peak below the loading peak does not show in it); 'sampling peak' is "
              "`VmHWM` after the peak was reset (`/proc/self/clear_refs`) once the bundle was loaded, beside "
              "what was resident then: their difference is the sampling's own working memory. GPU peak: "
              "`torch.cuda.max_memory_allocated`.", "",
              _table(["device", "method", "batch", "items/s", "overhead", "outside forwards", "process peak MB",
                      "after load MB", "resident before sampling MB", "sampling peak MB", "GPU peak MB"],
                     [[t["device"], t["method"], t["batch_size"], f"{t['items_per_second']:.1f}", _pct(t["overhead"]),
                       _pct(t["overhead_outside_forwards"]),
                       f"{t['cpu_peak_rss_mb']:.0f}", f"{t['cpu_rss_after_load_mb']:.0f}",
                       *(_mb(t.get(k)) for k in ("cpu_resident_before_sampling_mb", "cpu_sampling_peak_rss_mb")),
                       f"{t['gpu_peak_allocated_mb']:.0f}" if "gpu_peak_allocated_mb" in t else "-"]
                      for t in results["throughput"]]), ""]
    if not m["gpu"]:
        lines += ["No GPU on this machine: the GPU rows appear when `torch.cuda.is_available()`.", ""]
    calls = results.get("network_calls")
    if calls:
        lines += [f"{h}# 5. One call of each network on a {calls['seconds']:g}-second utterance", "",
                  f"Command: `{cmd}`; the validation utterance nearest {calls['seconds']:g} s, cut or zero-padded to "
                  f"it ({calls['item_frames']} frames of the chains' representation), run alone through "
                  f"`{calls['method']}` {calls['repeats']} times after a warm-up; the median over runs of each "
                  "network's bare forward seconds over its calls.", "",
                  _table(["network", "calls per run", "ms per call"],
                         [[k, calls["calls"][k], "-" if calls["ms_per_call"][k] is None else f"{calls['ms_per_call'][k]:.1f}"]
                          for k in NETWORKS]), ""]
    sweep = results.get("length_sweep")
    if sweep:
        lpng = doc.with_name(stem + "_length.png")
        plot_length(results, lpng)
        groups = list(dict.fromkeys(r["group"] for r in sweep["rows"]))
        by = {(r["group"], r["label"]): r for r in sweep["rows"]}
        labels = list(dict.fromkeys(r["label"] for r in sweep["rows"]))
        audio = {r["group"]: r["signal_seconds"] for r in sweep["rows"]}
        lines += [f"{h}# 6. Cost against utterance length", "",
                  f"Command: `{cmd}`; {sweep['per_group']} validation utterances of each length (a fixed random "
                  f"choice), {sweep['corruption']} at the heavy level, each utterance run alone (batch size 1: no "
                  "padding), methods interleaved; seconds per utterance (mean over the utterances of a length).", "",
                  _table(["length", "audio s", *labels],
                         [[g, f"{audio[g]:.2f}", *(f"{by[(g, lab)]['seconds_per_item']:.3f}" for lab in labels)]
                          for g in groups]), "",
                  f"![cost against length]({lpng.name})", "",
                  f"Figure: `{cmd}`: measured seconds per utterance against its seconds of audio, one line per "
                  "method (log scale).", ""]
    atomic_write_text(doc, _merge_section(doc, section, "\n".join(lines)))


if __name__ == "__main__":  # the throughput worker: one JSON job on stdin, one JSON line on stdout
    print(json.dumps(_throughput_worker(json.loads(sys.stdin.read()))))
