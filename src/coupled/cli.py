"""The `coupled` command: thin; it parses arguments and delegates."""

from __future__ import annotations

import argparse
import sys

from .errors import CoupledError


def _overrides(args) -> list:
    """`--set` overrides, then `--device` (the config's `device` key) where the command has it."""
    return [*args.set, *([("device", args.device)] if getattr(args, "device", None) else [])]


def cmd_demo(args) -> None:
    from .commands import run
    from .domains.registry import get_domain

    domain = get_domain(args.domain)
    config = args.config or domain.demo_config or "configs/mnist.yaml"
    out = args.out or ("runs/demo" if domain.name == "image" else f"runs/demo-{domain.name}")
    print(run(domain, "demo", config=config, overrides=_overrides(args), items=args.items,
              seed=args.seed, steps=args.steps, out=out, progress=not args.quiet))


def _config(args, reads: bool = False) -> dict:
    """The command's config: its file, `--set` overrides and `--device`, then the checkpoint folder (`--output`
    of train and reproduce, `--checkpoint` of evaluate, tune and calibrate) as its `output`. A command that
    `reads` the folder finds it from the current directory or else the project home (`coupled.home`); train
    writes it relative to the current directory."""
    from .config import load_config, readable_output

    cfg = load_config(args.config, _overrides(args))
    folder = getattr(args, "output", None) or getattr(args, "checkpoint", None)
    if folder:
        cfg["output"] = folder
    if reads:
        cfg["output"] = readable_output(cfg)
        if getattr(args, "checkpoint", None):
            args.checkpoint = cfg["output"]
    return cfg


def _domain(cfg: dict, command: str):
    """The config's domain, checked to serve `command`."""
    from .domains.registry import domain_of

    domain = domain_of(cfg)
    domain.check_command(command)
    return domain


def cmd_train(args) -> None:
    from .commands import run

    cfg = _config(args)
    for line in run(_domain(cfg, "train"), "train", cfg, stages=args.stages, resume=args.resume, devices=args.devices,
                    accelerator=args.accelerator, max_steps=args.max_steps, progress=not args.quiet):
        print(line)


def cmd_evaluate(args) -> None:
    from .commands import run
    from .config import checkpoint_sampling

    cfg = _config(args, reads=True)
    if "sampling" in cfg:  # a domain whose checkpoints store sampling settings: the folder's, with --set on top
        cfg["sampling"] = checkpoint_sampling(cfg, args.set, args.checkpoint)
    if args.prior and not args.zero_shot:
        raise CoupledError("--prior is the zero-shot samplers' prior; add --zero-shot SAMPLER, or drop --prior")
    extra = {"zero_shot": args.zero_shot, "prior": args.prior} if args.zero_shot else {}
    print(run(
        _domain(cfg, "evaluate"), "evaluate", cfg, checkpoint=args.checkpoint, split=args.split, out=args.out,
        max_items=args.max_items, corruptions=args.corruptions, levels=args.levels, methods=args.methods,
        seeds=args.seeds, picks=args.picks, results_path=args.results, headline_only=args.headline_only,
        progress=not args.quiet, **extra))


def cmd_tune(args) -> None:
    from .commands import run
    from .config import checkpoint_sampling

    cfg = _config(args, reads=True)
    if "sampling" in cfg:
        cfg["sampling"] = checkpoint_sampling(cfg, args.set, args.checkpoint)
    print(run(_domain(cfg, "tune"), "tune", cfg, checkpoint=args.checkpoint, out=args.out, max_items=args.max_items,
              nets=args.nets, budget_ms=args.budget_ms, corruptions=args.corruptions, wide=args.wide,
              progress=not args.quiet))


def cmd_reproduce(args) -> None:
    import json
    import time

    from .atomic import atomic_write_json
    from .commands import run
    from .evaluation.api import evaluate_config
    from .training.stages import STAGES

    cfg = _config(args)
    domain = _domain(cfg, "reproduce")
    t0 = time.time()
    # every stage through the domain's dispatch: a domain that trains its classifier with its own code (speech's
    # recogniser, which builds its corpus first) runs that as the classifier stage, the generic trainer the rest
    wanted = list(cfg["train"].get("stages") or STAGES)  # the stages the config's bundle is built from
    unknown = [s for s in wanted if s not in STAGES]
    if unknown or len(set(wanted)) < len(wanted):
        raise CoupledError(f"config key train.stages must list distinct stages of: {', '.join(STAGES)}; got "
                           f"{wanted}; fix it in the config file")
    stages = run(domain, "train", cfg, stages=wanted, resume=args.resume, devices=args.devices,
                 accelerator=args.accelerator, progress=not args.quiet)
    t_train = time.time() - t0
    for s in stages:  # a user's frozen classifier is installed, not trained: no steps
        steps = f"{s['steps']} steps" if "steps" in s else f"frozen ({s.get('frozen', 'installed')})"
        print(f"stage {s['stage']}: {steps}, {s.get('wall_seconds', 0):.0f} s", flush=True)
    # the training's timing is written before the evaluation starts (evaluate_seconds null until it ends), so an
    # evaluation stopped part-way still leaves the training's measured seconds
    timing = {"stages": [{k: s.get(k) for k in ("stage", "steps", "wall_seconds", "skipped")} for s in stages],
              "train_seconds": round(t_train, 1), "evaluate_seconds": None}
    atomic_write_json(f"{cfg['output']}/reproduce_timing.json", timing)
    evaluate_config(cfg, out=args.out, progress=not args.quiet, max_items=args.max_items,
                    corruptions=args.corruptions, levels=args.levels, methods=args.methods, picks=args.picks,
                    headline_only=args.headline_only)
    timing["evaluate_seconds"] = round(time.time() - t0 - t_train, 1)
    atomic_write_json(f"{cfg['output']}/reproduce_timing.json", timing)
    print(json.dumps(timing, indent=2))


def cmd_calibrate(args) -> None:
    from .commands import run

    cfg = _config(args, reads=True)
    print(run(_domain(cfg, "calibrate"), "calibrate", cfg, progress=not args.quiet))


def cmd_classify(args) -> None:
    from .bundle import checkpoint_domain
    from .commands import run

    from .home import find

    args.checkpoint = str(find(args.checkpoint, "checkpoint folder", "pass a folder written by `coupled train`"))
    domain = checkpoint_domain(args.checkpoint)
    domain.check_command("classify")
    extra = {"allow_clipped": True} if args.allow_clipped else {}
    if args.picks is not None or args.pick_for is not None:
        from .evaluation.api import load_picks
        from .evaluation.fair import pick_for

        if args.picks is None:
            raise CoupledError("--pick-for goes with --picks FILE; add the picks file (coupled tune writes one)")
        if args.method is not None:
            raise CoupledError("--picks chooses the method; drop --method, or drop --picks")
        args.method, readout, options = pick_for(load_picks(args.picks, domain.name), args.pick_for)
        extra.update(readout=readout, options=options)
    failures = run(domain, "classify", args.files, args.checkpoint, corruption=args.corruption, severity=args.severity,
                   method=args.method, seed=args.seed, input_range=args.input_range, polarity=args.polarity,
                   device=args.device, **extra)
    if failures == len(args.files):  # nothing to show: a bad input, one line and exit 2 (each file's problem is on stdout)
        raise CoupledError(f"none of the {len(args.files)} file(s) could be classified; see each file's problem above")
    print(f"{len(args.files) - failures} of {len(args.files)} files classified", file=sys.stderr)
    if failures:
        raise SystemExit(1)


def cmd_manifest(args) -> None:
    from .checkpoint import MANIFEST, seal

    files = seal(args.folder)
    print(f"wrote {args.folder}/{MANIFEST}: sha256 of {len(files)} files")


def cmd_data(args) -> None:
    from .domains.registry import get_domain

    print(get_domain(args.domain).run_data(config=args.config, root=args.root, workers=args.workers,
                                           progress=not args.quiet))


# where `coupled bench` writes: runs/bench/ by default, the published figures with --publish
BENCH_OUT = {False: ("runs/bench/bench.json", "runs/bench/performance.md"),
             True: ("benchmarks/results/bench.json", "docs/performance.md")}


def _bench_json(path: str, domain: str) -> str:
    """Where another domain's bench JSON goes beside the image one's: bench.json -> bench_<domain>.json."""
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(f"{p.stem}_{domain}{p.suffix}"))


def cmd_bench(args) -> None:
    from .config import load_config, readable_output
    from .domains.registry import get_domain
    from .errors import CoupledError
    from .evaluation import bench

    chosen = get_domain(args.domain) if args.domain else None
    config = args.config or (chosen.demo_config if chosen else None) or "configs/mnist.yaml"
    cfg = load_config(config, args.set)
    domain = _domain(cfg, "bench")
    if chosen is not None and domain.name != chosen.name:
        raise CoupledError(f"--domain {chosen.name} but {config} is a {domain.name} config; drop --domain or the config")
    checkpoint = readable_output(cfg, args.checkpoint)
    named = [] if args.config is None else [args.config] if args.config != "configs/mnist.yaml" else []
    command = " ".join(["coupled bench", *(["--domain", args.domain] if args.domain and not named else named),
                        *(["--quick"] if args.quick else []), *(f"--set {k}={v}" for k, v in args.set),
                        *(f"--{k} {getattr(args, k)}" for k in ("checkpoint", "threads") if getattr(args, k)),
                        *([f"--batch-sizes {' '.join(map(str, args.batch_sizes))}"] if args.batch_sizes else []),
                        *(["--publish"] if args.publish else [])])
    out, doc = BENCH_OUT[args.publish]
    if domain.name != get_domain(None).name:  # the image bench's JSON stays; the page gets this domain's section
        out = _bench_json(out, domain.name)
    out, doc = args.out or out, args.doc or doc
    results = bench.run_bench(cfg, quick=args.quick, checkpoint=checkpoint, out=out, doc=doc,
                              threads=args.threads, batch_sizes=args.batch_sizes, command=command,
                              progress=not args.quiet)
    print(f"wrote {out} and {doc} in {results['bench_seconds']:.0f} s")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coupled-diffusion")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _add_selection(sp) -> None:
    """The flags that choose what an evaluation runs: `coupled evaluate`'s, and `coupled reproduce`'s after training."""
    from .cli_checks import count
    from .domains.registry import domain_names, get_domain
    from .engine import METHODS
    from .methods import REFERENCE_METHODS

    sp.add_argument("--max-items", type=count(), default=None,
                    help="evaluate a fixed random subset of this many items (default: the config's, else all)")
    sp.add_argument("--corruptions", nargs="+", metavar="CORRUPTION",
                    help="only these corruptions of the config (default: all of them)")
    sp.add_argument("--levels", nargs="+", choices=["light", "medium", "heavy"],
                    help="only these severity levels (default: all three)")
    # the library's reference methods and every registered domain's own (a domain's run only on its bundles)
    references = [*REFERENCE_METHODS, *dict.fromkeys(m for d in domain_names() for m in get_domain(d).reference_methods)]
    sp.add_argument("--methods", nargs="+", choices=[*METHODS, *references], metavar="METHOD",
                    help=f"methods to run (default: the paper's six); any of: {', '.join((*METHODS, *references))}")
    sp.add_argument("--picks", help="validation picks (docs/results/fair_val.json): run each method as tuned, "
                                    "add the cost-matched headline")
    sp.add_argument("--headline-only", action="store_true",
                    help="with --picks: run only noisy, tuned sequential and the cost-matched headline's two rows")


def build_parser() -> argparse.ArgumentParser:
    from .domains.registry import domain_names
    from .engine import METHODS, ZERO_SHOT

    from .cli_checks import (OneLineParser, accelerator, budget, count, device, folder, output_file, override, seed,
                             severity)

    p = OneLineParser(prog="coupled", description="Coupled diffusion of signals and logits for a frozen classifier.")
    p.add_argument("--version", action="version", version=f"coupled {_version()}",
                   help="print the installed package's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_set(sp):
        sp.add_argument("--set", type=override, action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set signal.steps=100 (repeatable; the value is YAML)")

    def add_device(sp):
        sp.add_argument("--device", type=device, default=None,
                        help="where the networks run: auto, cpu, cuda, cuda:N or mps (default: the config's `device`)")

    def add(name, func, help_text, config=True, reads_checkpoint=False):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            sp.add_argument("config", help="experiment YAML, e.g. configs/mnist.yaml")
            if reads_checkpoint:  # one name per folder: --checkpoint reads a bundle, --output is where train writes
                sp.add_argument("--checkpoint", type=folder, help="checkpoint folder to read (default: the config's "
                                                                   "`output`)")
                sp.add_argument("--output", type=folder, dest="output_alias", help=argparse.SUPPRESS)  # its old name
            else:
                sp.add_argument("--output", type=folder, help="checkpoint folder to write (default: the config's "
                                                               "`output`)")
            add_set(sp)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.set_defaults(func=func)
        return sp

    demo = add("demo", cmd_demo, "evaluate the bundled models on a fixed subset and print the table", config=False)
    demo.add_argument("--domain", choices=domain_names("demo"), default="image",
                      help="image: the bundled MNIST models; speech: the bundled spoken-digit models; gaussian: the "
                           "engine alone with exact denoisers (default: image)")
    demo.add_argument("--config", default=None,
                      help="experiment YAML (default: the domain's: configs/mnist.yaml, configs/speech.yaml)")
    add_set(demo)
    demo.add_argument("--items", type=count(), default=None,
                      help="test items to run (default: the config's demo.items)")
    demo.add_argument("--steps", type=count(1, 10_000), default=20, help="(gaussian) steps per chain")
    demo.add_argument("--seed", type=seed, default=None, help="sampling seed (default: the config's demo.seed)")
    demo.add_argument("--out", type=folder, default=None,
                      help="results folder (default: runs/demo, runs/demo-speech for speech)")
    add_device(demo)

    for name, func, text in (("train", cmd_train, "train the stages of a config"),
                             ("reproduce", cmd_reproduce, "train every stage from scratch, then evaluate")):
        sp = add(name, func, text)
        sp.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        sp.add_argument("--devices", type=count(1, 1024), default=1, help="processes/GPUs for DDP")
        sp.add_argument("--accelerator", type=accelerator, default="auto", help="auto, cpu, gpu (cuda) or mps")
        if name == "train":
            from .training.stages import STAGES

            sp.add_argument("--stages", nargs="+", choices=list(STAGES), metavar="STAGE",
                            help=f"the stages to run, in order (default: all: {' '.join(STAGES)})")
            sp.add_argument("--max-steps", type=count(), default=None, help="override every stage's step count")
        else:
            sp.add_argument("--out", type=folder, default="runs/reproduce",
                            help="evaluation results folder (default: runs/reproduce)")
            _add_selection(sp)

    ev = add("evaluate", cmd_evaluate, "evaluate every method over corruptions and severities", reads_checkpoint=True)
    ev.add_argument("--split", choices=["train", "val", "test"], default=None,
                    help="data split (default: the config's evaluation.split)")
    ev.add_argument("--out", type=folder, default="runs/eval",
                    help="results folder: results.json, report.md, plots (default: runs/eval)")
    _add_selection(ev)
    ev.add_argument("--results", type=output_file, help="also write results.json to this path")
    ev.add_argument("--seeds", nargs="+", type=seed, help="sampling seeds at every level (default: the config's)")
    ev.add_argument("--zero-shot", nargs="+", metavar="SAMPLER",
                    help="also run every method that has a signal chain zero-shot, its signal chain this posterior "
                         f"sampler ({', '.join(ZERO_SHOT)}; options as in dps:weight=2) around the unconditional "
                         "--prior, the measurement being the corruption's linear operator (rows METHOD+SAMPLER)")
    ev.add_argument("--prior", help="the unconditional prior's folder for --zero-shot (prior.safetensors, written by "
                                    "benchmarks/train_prior.py), e.g. checkpoints/mnist_prior")
    add_device(ev)

    tu = add("tune", cmd_tune, "choose each method's configuration on the validation split (every candidate timed in "
             "one interleaved run) and write a picks file for evaluate --picks and classify --picks",
             reads_checkpoint=True)
    tu.add_argument("--out", type=output_file, default="runs/tune/picks.json",
                    help="the picks file to write (default: runs/tune/picks.json)")
    tu.add_argument("--max-items", type=count(), default=None,
                    help="tune on a fixed random subset of this many validation items (default: all)")
    tu.add_argument("--nets", nargs="+", choices=["joint", "pretrained", "sequential"], default=None,
                    help="which signal denoisers' candidates to try (default: every one the folder holds)")
    tu.add_argument("--corruptions", nargs="+", metavar="CORRUPTION",
                    help="tune at the heavy level of these corruptions only (default: every one that has a heavy level)")
    tu.add_argument("--budget-ms", type=budget, default=None, metavar="MS",
                    help="also pick the best configuration whose measured milliseconds per item fit this budget "
                         "(what classify --picks runs)")
    tu.add_argument("--wide", action="store_true",
                    help="also try longer signal chains, larger ensembles and more logit samples (where the one-step "
                         "optimum is not expected: occlusion, downsampling)")
    add_device(tu)

    add("calibrate", cmd_calibrate, "choose light/medium/heavy severities on the validation split",
        reads_checkpoint=True)

    cl = add("classify", cmd_classify, "classify files with a checkpoint: PNG, JPEG or .npy images (a .npy may hold a "
             "batch [N, ...]) for an image bundle, WAV (FLAC, OGG) for a speech bundle", config=False)
    cl.add_argument("files", nargs="+", metavar="FILE", help="PNG, JPEG or .npy files, or WAV files for a speech bundle")
    cl.add_argument("--checkpoint", required=True, help="checkpoint folder, e.g. checkpoints/mnist")
    cl.add_argument("--corruption", default=None,
                    help="corrupt the inputs first (to try the method): a registered name or module.path:function")
    cl.add_argument("--severity", type=severity, default=None, help="the corruption's severity (with --corruption)")
    cl.add_argument("--method", default=None, choices=list(METHODS),
                    help="how to classify (default: parallel; noisy for a bundle with a classifier alone); noisy is the "
                         "classifier alone")
    cl.add_argument("--picks", default=None, metavar="FILE",
                    help="run the configuration a picks file chose (coupled tune; its budget pick when it was tuned "
                         "with --budget-ms, else its coupled pick) instead of --method")
    cl.add_argument("--pick-for", default=None, metavar="CORRUPTION",
                    help="with --picks: the corruption whose pick to run (needed when the file tuned several)")
    cl.add_argument("--allow-clipped", action="store_true",
                    help="audio: take clipped recordings as they are instead of refusing them")
    cl.add_argument("--seed", type=seed, default=0, help="sampling seed (default: 0)")
    cl.add_argument("--input-range", default=None, metavar="LO..HI",
                    help=".npy value range: 0..255, 0..1 or -1..1 (default: uint8 is 0..255, floats 0..1 or -1..1)")
    cl.add_argument("--polarity", choices=["auto", "as-is", "invert"], default="auto",
                    help="the models read light digits on a dark background (MNIST); auto inverts a grey image whose "
                         "border is light (and says so), invert flips every image, as-is none")
    add_device(cl)
    da = add("data", cmd_data, "build a domain's data: the synthetic speech corpus (eSpeak NG)", config=False)
    da.add_argument("domain", choices=domain_names("data"), help="the domain whose data to build: speech")
    da.add_argument("--config", default="configs/speech.yaml", help="its `corpus` and `data.root` keys (if the file exists)")
    da.add_argument("--root", default=None, help="output folder (default: data.root, else ~/.cache/coupled-diffusion)")
    da.add_argument("--workers", type=count(1, 256), default=2, help="synthesis processes")
    mf = add("manifest", cmd_manifest, "seal a checkpoint folder: write manifest.json with every file's sha256",
             config=False)
    mf.add_argument("folder", help="checkpoint folder, e.g. checkpoints/mnist")
    be = add("bench", cmd_bench, "measure engine overhead, cost ratios, accuracy vs cost, throughput and memory",
             config=False)
    be.add_argument("config", nargs="?", default=None,
                    help="experiment YAML (default: configs/mnist.yaml, or the --domain's own config)")
    be.add_argument("--domain", choices=domain_names("bench"), default=None,
                    help="bench this domain's bundled models with its own config (speech: configs/speech.yaml); "
                         "its figures are a section of the page and a JSON of their own (bench_<domain>.json)")
    add_set(be)
    be.add_argument("--quick", action="store_true", help="a small validation subset and fewer settings (under 5 min)")
    be.add_argument("--checkpoint", type=folder, default=None, help="checkpoint folder (default: the config's `output`)")
    be.add_argument("--out", type=output_file, default=None,
                    help=f"results JSON (default: {BENCH_OUT[False][0]}; with --publish {BENCH_OUT[True][0]})")
    be.add_argument("--doc", type=output_file, default=None,
                    help=f"generated page, PNG beside it (default: {BENCH_OUT[False][1]}; with --publish {BENCH_OUT[True][1]})")
    be.add_argument("--publish", action="store_true",
                    help=f"write the published figures, {BENCH_OUT[True][0]} and {BENCH_OUT[True][1]} (from a checkout)")
    be.add_argument("--threads", type=count(1, 1024), default=None, help="torch threads (default: the cores torch can use, min(CPU affinity, torch's default))")
    be.add_argument("--batch-sizes", type=count(1, 100_000), nargs="+", default=None,
                    help="throughput batch sizes (default: 1 16 64 with --quick, else 1 8 32 128 250)")
    return p


def _one_line_warnings() -> None:
    """The library's own warnings (a bundle loaded with another classifier) as one `coupled: warning:` line."""
    import warnings

    from .errors import ClassifierMismatchWarning

    shown = warnings.showwarning
    if getattr(shown, "coupled_one_line", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ClassifierMismatchWarning):
            print(f"coupled: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    show.coupled_one_line = True
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    from .cli_checks import check_args, fail

    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        from .threads import use_threads

        # the user's count (bench --threads), else the cores torch can use, shared among DDP's --devices processes
        use_threads(getattr(args, "threads", None), getattr(args, "devices", 1))
        args.func(args)
    except CoupledError as e:
        return fail(e)
    except OSError as e:  # a disk, permission or path problem met during the work: name it, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return fail(f"{e.strerror or e}{where}; check the path, its permissions and free space")
    except KeyboardInterrupt:
        return fail("interrupted; `coupled train ... --resume` continues a training run", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
