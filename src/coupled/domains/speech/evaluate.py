"""Speech evaluation: the frozen recogniser on degraded test speech -> results.json (spec section 6),
report.md with a WER-vs-SNR plot per noise type, and listenable WAV examples.

Only the `noisy` method exists until the speech signal and logit chains land: its readout is the
recogniser on the degraded input (`readout: classifier`). Every condition degrades each item with its own
generator seeded by (evaluation seed, condition, item index), so a condition's degraded set is the same
whatever the batch size, order or subset, and later methods will see exactly these items.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_json, atomic_write_text
from ...errors import CoupledError
from ...seeds import sequence
from ...threads import use_threads
from .audio import write_wav
from .corpus import CorpusConfig, built_corpus, load_split
from .degrade import degrade, room_bank
from .metrics import edit_distance, estoi, normalise_text, pesq_wb, si_sdr

NOISES = ("white_noise", "pink_noise", "babble_noise")


def conditions(cfg: dict, rooms) -> list[dict]:
    """Every (degradation, level) of the config, each with its label fields (snr_db, rt60) and level."""
    out = []
    by_rt = {}
    for r in rooms:
        by_rt.setdefault(round(r.rt60_target, 3), []).append(r)

    def rooms_for(rt):
        key = round(float(rt), 3)
        if key not in by_rt:
            raise CoupledError(f"no simulated rooms for RT60 {rt}; the room bank has {sorted(by_rt)}")
        return by_rt[key]

    for name, spec in cfg["degradations"].items():
        if name in NOISES:
            extra = [v for v in cfg["levels"].get(name, {}).values() if float(v) not in map(float, spec["snr"])]
            for snr in sorted({float(v) for v in [*spec["snr"], *extra]}):
                out.append({"corruption": name, "snr_db": float(snr), "rt60": None, "severity": float(snr),
                            "talkers": spec.get("talkers", 6)})
        elif name == "reverb":
            for rt in spec["rt60"]:
                rs = rooms_for(rt)
                out.append({"corruption": name, "snr_db": None, "rt60_target": float(rt), "rooms": rs,
                            "rt60": float(np.mean([r.rt60 for r in rs])), "severity": float(np.mean([r.rt60 for r in rs]))})
        elif name == "reverb_noise":
            for rt in spec["rt60"]:
                rs = rooms_for(rt)
                for snr in spec["snr"]:
                    out.append({"corruption": name, "snr_db": float(snr), "rt60_target": float(rt), "rooms": rs,
                                "rt60": float(np.mean([r.rt60 for r in rs])), "severity": float(snr)})
        else:
            raise CoupledError(f"the speech evaluation does not know how to sweep '{name}'; valid: "
                               f"{', '.join([*NOISES, 'reverb', 'reverb_noise'])}")
    for c in out:  # a noise's level is an SNR (dB), reverb's a requested RT60 (s)
        for level, value in cfg["levels"].get(c["corruption"], {}).items():
            if c["corruption"] in NOISES and abs(float(value) - c["snr_db"]) < 1e-9:
                c["level"] = level
            elif c["corruption"] == "reverb" and abs(float(value) - c["rt60_target"]) < 1e-9:
                c["level"] = level
    return out


def degrade_item(cond: dict, wave: np.ndarray, seed: int, index: int, babble: list) -> np.ndarray:
    """The degraded version of item `index` under `cond` (its own generator: the "corruption" stream of
    (seed, condition, index) of `coupled.seeds`, the scheme the published speech tables were drawn with)."""
    key = zlib.crc32(json.dumps([cond["corruption"], cond["snr_db"], cond.get("rt60_target")]).encode())
    s = sequence("corruption", int(seed), int(key), int(index))
    name = cond["corruption"]
    if name in NOISES:
        return degrade(name, wave, cond["snr_db"], s, {"babble": babble, "talkers": cond.get("talkers", 6)})
    room = cond["rooms"][index % len(cond["rooms"])]
    if name == "reverb":
        return degrade(name, wave, room, s)
    return degrade(name, wave, (room, cond["snr_db"]), s)


def _bootstrap(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """95% percentile interval of sum(num)/sum(den) over items resampled with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (n_boot, len(num)))
    ratios = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1)
    return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def score(refs: list[str], hyps: list[str], tasks: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Digit WER (corpus level) and keyword accuracy of paired transcripts, each with a bootstrap interval."""
    out = {}
    d = [i for i, t in enumerate(tasks) if t == "digits"]
    k = [i for i, t in enumerate(tasks) if t == "keywords"]
    if d:
        r = [normalise_text(refs[i]).split() for i in d]
        edits = np.array([edit_distance(r_, normalise_text(hyps[i]).split()) for r_, i in zip(r, d)], float)
        words = np.array([len(r_) for r_ in r], float)
        out["wer"] = {"value": float(edits.sum() / words.sum()), "ci95": _bootstrap(edits, words, n_boot, seed),
                      "n_items": len(d), "n_words": int(words.sum())}
    if k:
        ok = np.array([normalise_text(refs[i]) == normalise_text(hyps[i]) for i in k], float)
        out["accuracy"] = {"value": float(ok.mean()), "ci95": _bootstrap(ok, np.ones_like(ok), n_boot, seed),
                           "n_items": len(k)}
    return out


def evaluate_speech(cfg: dict, *, checkpoint=None, split: str | None = None, out="runs/eval", max_items=None,
                    corruptions=None, methods=None, progress: bool = True, results_path=None) -> dict:
    """Evaluate the `noisy` method of a speech config; writes results.json, report.md, plots and examples.

    Args:
        cfg: a speech config (`load_config` on a YAML with `domain: speech`).
        checkpoint: recogniser folder (default: the config's `output`).
        split: val or test (default: the config's evaluation.split).
        out: output folder.
        max_items: items per task (default: all).
        corruptions: limit to these degradations.
        methods: only ["noisy"] is available for speech so far.
        progress: tqdm bars.
        results_path: also write results.json here.
    """
    import torch
    from tqdm import tqdm

    from ...bundle import default_device
    from .loaders import wav_folder
    from .recogniser import load_recogniser, transcribe

    methods = list(methods or ["noisy"])
    if methods != ["noisy"]:
        raise CoupledError(f"speech has only the 'noisy' method so far (asked for {', '.join(methods)}); "
                           "pass --methods noisy")
    ev = cfg["evaluation"]
    use_threads(ev.get("num_threads"))  # 0: the cores torch can use (coupled.threads)
    max_items = max_items if max_items is not None else ev.get("max_items")
    folder = cfg["data"].get("wav_folder")
    if folder:  # a user's own recordings: all of them, no split; babble talkers are the folder's other files
        if split:
            raise CoupledError(f"data.wav_folder ({folder}) is one set of recordings, not split; drop --split")
        items = _first_per_task(wav_folder(folder, cfg["data"]["transcripts"]), max_items)
        split, dataset, babble_from = "all", f"wav_folder {folder}", "the folder's other recordings"
        babble_for = _babble_from_others(items, cfg)
    else:
        split = split or ev["split"]
        root = built_corpus(cfg)
        items = load_split(root, split, max_items=max_items)
        babble_split = "val" if split != "val" else "test"
        babble = [u.wave for u in load_split(root, babble_split, tasks=("digits",), max_items=60)]
        dataset = f"espeak-digits-{CorpusConfig.from_dict(cfg['corpus']).digest()}"
        babble_from = f"the {babble_split} split's digit strings"

        def babble_for(index):
            return babble
    model = load_recogniser(checkpoint or cfg["output"]).to(default_device(cfg["device"]))
    rt60s = sorted({float(r) for n in ("reverb", "reverb_noise") if n in cfg["degradations"]
                    for r in cfg["degradations"][n]["rt60"]})
    rooms = room_bank(rt60s, cfg["rooms"]["per_rt60"], cfg["rooms"]["seed"]) if rt60s else []
    conds = conditions(cfg, rooms)
    if corruptions:
        unknown = set(corruptions) - {c["corruption"] for c in conds}
        if unknown:
            raise CoupledError(f"unknown speech corruption(s) {', '.join(sorted(unknown))}; valid: "
                               f"{', '.join(sorted({c['corruption'] for c in conds}))}")
        conds = [c for c in conds if c["corruption"] in corruptions]
    refs = [u.text for u in items]
    tasks = [u.task for u in items]
    clean = [u.wave for u in items]
    bs = ev["batch_size"]
    n_sig = ev["signal_metrics_items"]
    sig_idx = [i for i, t in enumerate(tasks) if t == "digits"][:n_sig]
    seed = ev["corruption_seed"]
    out = Path(out)
    (out / "examples").mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    clean_hyps = transcribe(model, clean, bs)
    clean_seconds = (time.perf_counter() - t0) / len(items)
    clean_scores = score(refs, clean_hyps, tasks, ev["bootstrap"], seed)
    rows, examples = [], []
    n_ex = ev["examples"]
    ex_idx = sig_idx[:: max(1, len(sig_idx) // max(n_ex, 1))][:n_ex]  # spread over speakers
    ex_conds = _example_conditions(conds)
    for ex in ex_idx:
        write_wav(out / "examples" / f"{_file_id(items[ex])}_clean.wav", clean[ex])
    for cond in tqdm(conds, desc="speech conditions", disable=not progress):
        degraded = [degrade_item(cond, w, seed, i, babble_for(i) if cond["corruption"] == "babble_noise" else None)
                    for i, w in enumerate(clean)]
        t0 = time.perf_counter()
        hyps = transcribe(model, degraded, bs)
        seconds = (time.perf_counter() - t0) / len(items)
        sc = score(refs, hyps, tasks, ev["bootstrap"], seed)
        sdr = [si_sdr(degraded[i], clean[i]) for i in sig_idx]
        est = [estoi(degraded[i], clean[i]) for i in sig_idx]
        pq = [pesq_wb(degraded[i], clean[i]) for i in sig_idx] if _has_pesq() else []
        est_vals = [v for v, _ in est if v is not None]
        signal = {"si_sdr": float(np.mean(sdr)) if sdr else None,
                  "estoi": float(np.mean(est_vals)) if est_vals else None,
                  "estoi_n": len(est_vals), "estoi_too_short": len(est) - len(est_vals),
                  "pesq_wb": float(np.mean([v for v, _ in pq if v is not None])) if any(v is not None for v, _ in pq) else None,
                  "n_signal_items": len(sig_idx)}
        label = _label(cond)
        for metric, s in sc.items():
            row = {"method": "noisy", "corruption": cond["corruption"], "severity": round(cond["severity"], 4),
                   "snr_db": cond["snr_db"], "rt60": None if cond["rt60"] is None else round(cond["rt60"], 3),
                   "metric": metric, "readout": "classifier", "task": "digits" if metric == "wer" else "keywords",
                   "value": s["value"], "ci95": s["ci95"], "delta_vs_sequential": None, "delta_ci95": None,
                   "calls": {"signal": 0, "logits": 0, "classifier": 1}, "seconds_per_item": seconds,
                   "n_items": s["n_items"], "seeds": [seed], **signal}
            if "rt60_target" in cond:
                row["rt60_target"] = cond["rt60_target"]
            if "level" in cond:
                row["level"] = cond["level"]
            rows.append(row)
        for ex in ex_idx if id(cond) in ex_conds else []:
            fname = f"{_file_id(items[ex])}_{label}.wav"
            write_wav(out / "examples" / fname, np.clip(degraded[ex], -1, 1))
            examples.append({"condition": label, "file": f"examples/{fname}", "reference": refs[ex], "heard": hyps[ex]})
    wer, acc = clean_scores.get("wer", {}), clean_scores.get("accuracy", {})  # a user's folder may lack a task
    results = {
        "schema": "coupled-results/1", "domain": "speech", "dataset": dataset, "split": split,
        "clean": {"metric": "wer", "value": wer.get("value"), "ci95": wer.get("ci95"),
                  "accuracy": acc.get("value"), "accuracy_ci95": acc.get("ci95"),
                  "n_items": {"digits": wer.get("n_items", 0), "keywords": acc.get("n_items", 0)},
                  "n_words": wer.get("n_words", 0), "seconds_per_item": clean_seconds},
        "rows": rows, "headline": [],
        "rooms": [{"rt60_target": r.rt60_target, "rt60": round(r.rt60, 3)} for r in rooms],
        "recogniser": str(checkpoint or cfg["output"]), "examples": examples,
        "babble": f"{cfg['degradations'].get('babble_noise', {}).get('talkers', 6)} talkers from {babble_from}",
    }
    write_speech_results(results, out / "results.json")
    if results_path:
        write_speech_results(results, results_path)
    plot_wer_vs_snr(results, out / "wer_vs_snr.png")
    atomic_write_text(out / "report.md", speech_report(results, plots=["wer_vs_snr.png"]))
    return results


def _first_per_task(items: list, max_items) -> list:
    """The first `max_items` items of each task (all of them for None), in their order."""
    if max_items is None:
        return items
    seen: dict = {}
    return [u for u in items if seen.setdefault(u.task, []).append(u) or len(seen[u.task]) <= max_items]


def _babble_from_others(items: list, cfg: dict):
    """Babble talkers for a user's folder: item i's pool is the folder's other recordings (of other speakers
    where the subfolders name them), so a talker is never the target."""
    waves = [u.wave for u in items]
    if "babble_noise" in cfg["degradations"] and len(items) < 2:
        raise CoupledError("babble_noise needs other recordings as talkers, but the WAV folder holds one; add "
                           "recordings or leave it out with --corruptions white_noise pink_noise reverb reverb_noise")

    def pool(index):
        others = [w for j, w in enumerate(waves) if j != index and (not items[index].speaker
                                                                     or items[j].speaker != items[index].speaker)]
        return others or [w for j, w in enumerate(waves) if j != index]

    return pool


def _file_id(item) -> str:
    """An item's id as one file name (a user's folder has subfolders)."""
    return item.id.replace("/", "_")


def _example_conditions(conds: list[dict]) -> set:
    """One condition per degradation to listen to: the SNR nearest 0 dB, the longest reverberation."""
    best = {}
    for c in conds:
        key = (abs(c["snr_db"]) if c["snr_db"] is not None else 0.0, -(c.get("rt60") or 0.0))
        if c["corruption"] not in best or key < best[c["corruption"]][0]:
            best[c["corruption"]] = (key, id(c))
    return {v for _, v in best.values()}


def _has_pesq() -> bool:
    try:
        import pesq  # noqa: F401
    except ImportError:
        return False
    return True


def _label(cond: dict) -> str:
    parts = [cond["corruption"]]
    if cond.get("rt60_target") is not None:
        parts.append(f"rt{cond['rt60_target']:g}")
    if cond["snr_db"] is not None:
        parts.append(f"snr{cond['snr_db']:g}")
    return "_".join(parts)


def write_speech_results(results: dict, path) -> Path:
    """results.json, written atomically."""
    return atomic_write_json(path, results, indent=1)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def speech_report(results: dict, plots=()) -> str:
    """report.md: clean figures, one table per degradation (WER and keyword accuracy with 95% intervals)."""
    c = results["clean"]
    lines = [f"# Speech evaluation ({results['dataset']}, {results['split']} split)", "",
             f"Clean: digit WER {_pct(c['value'])}% [{_pct((c['ci95'] or [None])[0])}, {_pct((c['ci95'] or [None, None])[1])}] "
             f"over {c['n_items']['digits']} strings ({c['n_words']} words); keyword accuracy {_pct(c['accuracy'])}% "
             f"[{_pct((c['accuracy_ci95'] or [None])[0])}, {_pct((c['accuracy_ci95'] or [None, None])[1])}] over "
             f"{c['n_items']['keywords']} words.", ""]
    lines += [f"![WER vs SNR]({p})" for p in plots] + [""]
    by = {}
    for r in results["rows"]:
        key = (r["corruption"], r["snr_db"], r.get("rt60_target"))
        by.setdefault(r["corruption"], {}).setdefault(key, {})[r["metric"]] = r
    for name, conds in by.items():
        lines += [f"## {name}", "", "| SNR dB | RT60 s (measured) | digit WER % [95% CI] | keyword acc % [95% CI] | "
                  "SI-SDR dB | ESTOI (n, too short) |", "|---|---|---|---|---|---|"]
        for key, m in conds.items():
            w, a = m.get("wer"), m.get("accuracy")
            ref = w or a
            cell = lambda r: "-" if r is None else f"{_pct(r['value'])} [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}]"  # noqa: E731
            est = "-" if ref["estoi"] is None else f"{ref['estoi']:.3f}"
            snr = "-" if ref["snr_db"] is None else f"{ref['snr_db']:g}"
            rt = "-" if ref["rt60"] is None else f"{ref['rt60']:.2f}"
            sdr = "-" if ref["si_sdr"] is None else f"{ref['si_sdr']:.1f}"
            lines.append(f"| {snr} | {rt} | {cell(w)} | {cell(a)} | {sdr} | {est} ({ref['estoi_n']}, {ref['estoi_too_short']}) |")
        lines.append("")
    if results.get("examples"):
        lines += ["## Listen", "", "| condition | file | said | heard |", "|---|---|---|---|"]
        lines += [f"| {e['condition']} | [{Path(e['file']).name}]({e['file']}) | {e['reference']} | {e['heard']} |"
                  for e in results["examples"]]
        lines.append("")
    return "\n".join(lines)


def plot_wer_vs_snr(results: dict, path) -> Path:
    """One panel per noise type (and reverb + noise per RT60): digit WER against SNR, 95% intervals shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["metric"] == "wer" and r["snr_db"] is not None]
    groups = {}
    for r in rows:
        label = r["corruption"] if r.get("rt60_target") is None else f"{r['corruption']} (RT60 {r['rt60']:.2f} s)"
        groups.setdefault(r["corruption"], {}).setdefault(label, []).append(r)
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4 * max(len(groups), 1), 3.4), sharey=True, squeeze=False)
    clean = results["clean"]["value"]  # None when no item is a digit string (a user's folder of keywords)
    for ax, (name, series) in zip(axes[0], groups.items()):
        for label, rs in series.items():
            rs = sorted(rs, key=lambda r: r["snr_db"])
            x = [r["snr_db"] for r in rs]
            ax.plot(x, [100 * r["value"] for r in rs], marker="o", label=label if len(series) > 1 else "noisy input")
            ax.fill_between(x, [100 * r["ci95"][0] for r in rs], [100 * r["ci95"][1] for r in rs], alpha=0.2)
        if clean is not None:
            ax.axhline(100 * clean, color="k", ls="--", lw=1, label=f"clean ({100 * clean:.1f}%)")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("SNR (dB, against active speech)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("digit WER (%)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ generic path
def speech_items(cfg: dict, split: str | None):
    """(utterances in corpus order, the split's name, babble_for(index) -> talkers) of a speech config: the
    corpus's split, or a user's WAV folder (`data.wav_folder`: one set named "all")."""
    from .loaders import wav_folder

    folder = cfg["data"].get("wav_folder")
    if folder:
        if split not in (None, "all"):
            raise CoupledError(f"data.wav_folder ({folder}) is one set of recordings, not split; drop --split")
        items = wav_folder(folder, cfg["data"]["transcripts"])
        return items, "all", _babble_from_others(items, cfg)
    root = built_corpus(cfg)
    items = load_split(root, split)
    babble = [u.wave for u in load_split(root, "val" if split != "val" else "test", tasks=("digits",), max_items=60)]
    return items, split, lambda index: babble


def labelled_split(items: list, task: str, name: str):
    """The utterances of one task as a LabelledSignals: zero-padded waveforms [N, T] with their lengths, the
    transcripts as labels, and `ids` their indices in `items` (which seed their degradations, so a task's
    degraded items are those of the mixed list the speech evaluation published)."""
    import torch

    from ..registry import LabelledSignals
    from .recogniser import collate
    from .corpus import WORDS

    keep = [i for i, u in enumerate(items) if u.task == task]
    if not keep:
        raise CoupledError(f"no {task} utterances in {name}; set evaluation.task to one of: "
                           f"{', '.join(sorted({u.task for u in items}))}")
    waves, lengths = collate([items[i].wave for i in keep])
    return LabelledSignals(waves, [items[i].text for i in keep], len(WORDS) + 1, name, lengths, task,
                           torch.tensor(keep, dtype=torch.long))


def condition_sweep(cfg: dict, babble_for) -> dict:
    """{degradation: {label: condition}} of the config's sweep: the calibrated level's name where a condition is
    one ("heavy"), else what it is ("snr 10", "rt60 0.7", "rt60 0.7 snr 0"). A condition is the dict
    `degrade_item` takes, with `babble_for`."""
    rt60s = sorted({float(r) for n in ("reverb", "reverb_noise") if n in cfg["degradations"]
                    for r in cfg["degradations"][n]["rt60"]})
    rooms = room_bank(rt60s, cfg["rooms"]["per_rt60"], cfg["rooms"]["seed"]) if rt60s else []
    out: dict = {}
    for c in conditions(cfg, rooms):
        parts = ([f"rt60 {c['rt60_target']:g}"] if c.get("rt60_target") is not None else []) + \
                ([f"snr {c['snr_db']:g}"] if c["snr_db"] is not None else [])
        out.setdefault(c["corruption"], {})[c.get("level") or " ".join(parts)] = {**c, "babble_for": babble_for}
    return out


def degrade_split(signals, cond: dict, seed: int, lengths, indices):
    """Every item of a zero-padded batch of waveforms degraded over its own length by `degrade_item` (item i
    seeded by `indices[i]`), padded again."""
    import torch

    out = torch.zeros_like(signals)
    for i in range(signals.shape[0]):
        n, index = int(lengths[i]), int(indices[i])
        babble = cond["babble_for"](index) if cond["corruption"] == "babble_noise" else None
        out[i, :n] = torch.from_numpy(degrade_item(cond, signals[i, :n].numpy(), seed, index, babble))
    return out
