"""Load a checkpoint folder of any domain into a `Coupling`: the `Bundle` strategies run on.

A checkpoint folder holds `classifier`, `signal` and `logits` (each `.safetensors` + `.json`) and
`pipeline.json` (the sampling settings validated as best). Nothing is pickled; no flags are retyped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .defaults import DEFAULT_DOMAIN
from .domains.registry import get_domain
from .engine import (
    Chain, Coupling, Denoiser, FrozenClassifier, GuidedLogits, process_from_dict,
)
from .classifiers import check_fingerprint
from .engine.conditioning import check_sampling
from .engine.guidance import ClassifierGradient
from .errors import CoupledError
from .methods import (
    BUNDLE_CHECKS, METHOD_NETS, REFERENCE_METHODS, SIGNAL_NETS, check_predictive_options, zero_shot_sampler_options,
)
from .checkpoint import STAGE_OUTPUTS, load_state, load_weights, read_json

ROLES = ("classifier", "signal", "logits")


def build_net(kind: str, net_cfg: dict, domain=None, arch: str | None = None):
    """A fresh network of `kind` ('classifier', 'signal' or 'logits') from its config dict, built by `domain`
    (a name or Domain; default image) with architecture `arch` (default: the domain's for that role)."""
    if kind not in ROLES:
        raise CoupledError(f"unknown network kind {kind!r}; choose classifier, signal or logits")
    return get_domain(domain).build_network(kind, arch, net_cfg)


def wrap_denoiser(kind: str, net, meta: dict) -> Denoiser:
    """The x0_hat denoiser of a trained network, from the JSON metadata saved beside its weights."""
    process = process_from_dict(meta["process"])
    if kind == "signal":  # clipped to the data range its training recorded ([-1, 1] for bundles that record none)
        clip = meta.get("clip", [-1.0, 1.0])
        return Denoiser(net, process, meta["prediction"], clip=None if clip is None else tuple(clip))
    return Denoiser(net, process, meta["prediction"], pass_center=process.kind == "centred")


class NullObservation(torch.nn.Module):
    """An observation-conditioned signal network run as a prior: every call sees the null observation (zeros, what
    benchmarks/train_prior.py trains it on), whatever the strategy passes (`observation=d`). An unconditional prior
    also sees the null logit token always; a class-conditional one (`logits=True`: trained on the frozen
    classifier's logits with logit dropout, `train_prior.py --logits`) sees the logits the strategy passes (the
    logit chain's estimate: coupling's channel into a zero-shot chain), the null token where it passes none."""

    def __init__(self, net, logits: bool = False):
        super().__init__()
        self.net, self.logits = net, bool(logits)
        self.cfg = getattr(net, "cfg", None)

    def forward(self, x_t, t, observation=None, logits=None, **conditioning):
        if not self.logits:
            logits = None
            conditioning.pop("logits_mask", None)
        return self.net(x_t, t, observation=torch.zeros_like(x_t), logits=logits, **conditioning)


def load_net(folder, name: str, kind: str | None = None, domain=None):
    """Load `<folder>/<name>` into a fresh network; returns (net in eval mode, its JSON metadata). The network is
    built by the domain and architecture its JSON records (`domain`, `arch`), else by `domain` (default image), or
    by the user's `factory` it records (a classifier of your own: its module is imported)."""
    tensors, meta = load_weights(folder, name)
    kind = kind or meta.get("kind", name)
    path = Path(folder) / f"{name}.json"
    if meta.get("factory") is not None:  # a user's classifier, rebuilt by its factory (a bundle is code too)
        from .classifiers import build_classifier

        try:
            net = build_classifier(meta["factory"], meta.get("net"))
        except CoupledError as e:
            raise CoupledError(f"{path}: {e}") from None
        load_state(net, tensors, str(path.with_suffix(".safetensors")))
        return net.eval().requires_grad_(False), meta
    if "net" not in meta:
        raise CoupledError(f"{path} has no 'net' config; re-create it with `coupled train`")
    where = meta.get("domain_spec") or meta.get("domain", domain)  # a plug-in's module, imported when not yet
    net = build_net(kind, meta["net"], where, meta.get("arch"))
    declared = ", ".join(f"net.{k}={meta['net'][k]!r}" for k in get_domain(where).shape_keys
                         if k in meta["net"])
    load_state(net, tensors, str(path.with_suffix(".safetensors")), *(
        [f"{path} declares {declared}: restore the values the weights were trained with and re-seal with "
         f"`coupled manifest {folder}`, or re-create the bundle with `coupled train`"] if declared else []))
    return net.eval().requires_grad_(False), meta


def check_signal_shapes(folder, domain, nets: dict, reference: str) -> None:
    """Every network of `nets` (file name -> built network) declares the signal shape `nets[reference]` does
    (the domain's `shape_keys` of their configs); else one line naming the file, the key and the fix."""
    folder, ref = Path(folder), getattr(nets[reference], "cfg", None)
    for name, net in nets.items():
        for key in get_domain(domain).shape_keys:
            want, got = getattr(ref, key, None), getattr(getattr(net, "cfg", None), key, None)
            if want is not None and got is not None and got != want:
                raise CoupledError(
                    f"{folder / name}.json: net.{key} is {got!r} but {reference}.json has {want!r}, and the networks of "
                    f"a bundle must take the same signals; set net.{key} to {want!r} and re-seal with "
                    f"`coupled manifest {folder}`, or re-create the bundle with `coupled train`")


def _check_classifier_takes(classifier: FrozenClassifier, shape: tuple, folder: Path, domain) -> None:
    """A user's classifier must take one signal of the `shape` the bundle's signal network declares."""
    param = next(classifier.module.parameters(), None)
    probe = torch.zeros((1, *shape), **({} if param is None else {"device": param.device, "dtype": param.dtype}))
    try:
        classifier.raw(probe)
    except CoupledError as e:
        keys = ", ".join(f"net.{k}" for k in get_domain(domain).shape_keys)
        raise CoupledError(f"{folder / 'signal.json'} declares signals of shape {tuple(shape)} ({keys}) but the classifier "
                           f"passed cannot take them ({e}); pass a classifier for that shape, or a checkpoint trained "
                           "for yours") from None


@dataclass
class Bundle:
    """A loaded checkpoint folder: what strategies need, plus the sampling settings saved with it."""

    coupling: Coupling
    sampling: dict
    meta: dict
    signal_net: torch.nn.Module | None = None  # the unguided signal network inside coupling.signal_denoiser
    folder: Path | None = None
    domain: str = DEFAULT_DOMAIN  # the registered domain whose networks these are
    _extra: dict = field(default_factory=dict, repr=False)  # lazily loaded baseline networks, by file name
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def to(self, device):
        self.device = torch.device(device)
        for part in (self.coupling.classifier, self.coupling.signal_denoiser, self.coupling.logit_denoiser,
                     *self._extra.values()):
            if part is not None:
                part.to(device)
        return self

    @property
    def reference_methods(self) -> dict:
        """Reference method -> the engine method it runs: the library's (`methods.REFERENCE_METHODS`) and those of
        the bundle's domain (`Domain.reference_methods`)."""
        own = get_domain(self.domain).reference_methods
        return {**REFERENCE_METHODS, **{name: spec[0] for name, spec in own.items()}}

    @property
    def method_nets(self) -> dict:
        """Method -> the network file of the folder it needs beyond the bundle's own three (`methods.METHOD_NETS`
        and the domain's reference methods' files)."""
        own = get_domain(self.domain).reference_methods
        return {**METHOD_NETS, **{name: spec[1] for name, spec in own.items()}}

    def _net(self, name: str, kind: str):
        """A baseline network of the folder (loaded once), with its metadata."""
        if name not in self._extra:
            if self.folder is None or not (self.folder / f"{name}.safetensors").is_file():
                own = {spec[1]: spec[2] for spec in get_domain(self.domain).reference_methods.values()}
                stage = next((s for s, outs in STAGE_OUTPUTS.items() if name in outs), "signal")
                how = own.get(name, "coupled train CONFIG --stages " + stage).replace("FOLDER", str(self.folder))
                raise CoupledError(f"{self.folder} has no {name}.safetensors; train it with `{how}`")
            net, meta = load_net(self.folder, name, kind, self.domain)
            check_signal_shapes(self.folder, self.domain, {"signal": self.signal_net, name: net}, "signal")
            self._extra[name] = net.to(self.device)
            self.meta[name] = meta
        return self._extra[name], self.meta[name]

    def _zero_shot(self, coupling: Coupling, spec: dict) -> Coupling:
        """`coupling` with its signal chain a zero-shot sampler (`spec`: methods.ZERO_SHOT_KEYS) over the prior
        in `spec['prior']` (loaded once); the chain keeps the signal chain's step count."""
        BUNDLE_CHECKS["zero_shot"]("zero_shot", spec)
        key = f"prior:{spec['prior']}"
        if key not in self._extra:
            folder = Path(spec["prior"])
            if not (folder / "prior.safetensors").is_file():
                raise CoupledError(f"{folder} has no prior.safetensors; train an unconditional prior with "
                                   f"benchmarks/train_prior.py --out {folder}")
            net, meta = load_net(folder, "prior", "signal", self.domain)
            self._extra[key] = NullObservation(net, logits=meta.get("logits") == "classifier").to(self.device)
            self.meta[key] = meta
        net, meta = self._extra[key], self.meta[key]
        options = zero_shot_sampler_options(spec)
        if "guidance" in spec and not net.logits:  # classifier-free guidance needs a class-conditional prior
            raise CoupledError(f"zero_shot.guidance needs a class-conditional prior, and {spec['prior']} is "
                               "unconditional (its prior.json has no 'logits: classifier'); drop guidance or train "
                               "one with benchmarks/train_prior.py --logits")
        if spec["sampler"] == "pigdm" and "clip" not in options:  # the guided x0_hat in the prior's data range
            clip = meta.get("clip", [-1.0, 1.0])
            options["clip"] = None if clip is None else tuple(clip)
        chain = Chain(process_from_dict(meta["process"]), coupling.signal_chain.steps, spec["sampler"], **options)
        return replace(coupling, signal_denoiser=guided_signal_denoiser(net, spec.get("guidance", 1.0), meta),
                       signal_chain=chain)

    def prepare(self, method: str, options: dict) -> tuple[Coupling, str, dict]:
        """The coupling `method` runs with, the engine method that runs it, and the strategy's options.

        Bundle-level options: `signal_guidance` (a method's own weight overrides the global one, never the
        ablation `signal_logits: false`), `signal_net` ('joint', 'pretrained' or 'sequential': which trained
        signal denoiser; baselines may pick theirs on validation), `signal_eta` (the signal chain's eta).
        `classifier_gradient` (a number >= 0: gradient guidance through the frozen classifier, `ClassifierGradient`).
        `observation_weight` (a in [0, 1]: observation adding, the classifier readout hears x_hat + a (d - x_hat)).
        `card` runs with the CARD logit net, `predictive` with the predictive enhancer (signal_predictive, none of
        signal_net, signal_guidance, signal_eta, zero_shot), `finetuned_classifier` is `noisy` with the fine-tuned
        classifier.
        `zero_shot` ({sampler, prior, options}): the signal chain becomes that zero-shot posterior sampler over
        the unconditional prior of the folder `prior` (the evaluation binds each batch's measurement).
        """
        options = dict(options)
        references = self.reference_methods
        if self.coupling.signal_denoiser is None and method not in references and method != "card":
            # a classifier alone (no denoisers): the methods that need one fail in the engine, in one line
            return self.coupling, method, options
        check_sampling(self.meta["signal"].get("conditioning"), method, options, f"options of {method!r}")
        coupling = self.coupling
        if method == "predictive":  # its own regression net, shown d alone: no other net, chain or guidance applies
            check_predictive_options(options, "option ")
            net, meta = self._net(METHOD_NETS["predictive"], "signal")
            coupling = replace(coupling, signal_denoiser=wrap_denoiser("signal", net, meta),
                               signal_chain=replace(coupling.signal_chain, process=process_from_dict(meta["process"])))
        net_name = options.pop("signal_net", "joint")
        if net_name not in SIGNAL_NETS:
            raise CoupledError(f"unknown signal_net {net_name!r}; choose one of: {', '.join(SIGNAL_NETS)}")
        w = options.pop("signal_guidance", None)
        if net_name != "joint" or w is not None:
            net, meta = (self.signal_net, self.meta["signal"]) if net_name == "joint" else self._net(SIGNAL_NETS[net_name], "signal")
            weight = signal_guidance({**self.sampling, **({} if w is None else {"signal_guidance": w})})
            coupling = replace(coupling, signal_denoiser=guided_signal_denoiser(net, weight, meta).to(self.device))
        eta = options.pop("signal_eta", None)
        if eta is not None:
            coupling = replace(coupling, signal_chain=replace(coupling.signal_chain, eta=eta))
        zero_shot = options.pop("zero_shot", None)
        if zero_shot is not None:  # a zero-shot posterior sampler around an unconditional prior (issue 18)
            coupling = self._zero_shot(coupling, zero_shot)
        weight = options.pop("observation_weight", None)
        if weight is not None:
            BUNDLE_CHECKS["observation_weight"]("observation_weight", weight)
            coupling = replace(coupling, observation_weight=float(weight))
        grad = options.pop("classifier_gradient", None)
        if grad is not None:  # gradient guidance through the frozen classifier (beyond the paper)
            if isinstance(grad, bool) or not isinstance(grad, (int, float)) or not 0 <= grad < float("inf"):
                raise CoupledError(f"classifier_gradient must be a number >= 0 (RMS step of x0_hat), got {grad!r}")
            coupling = replace(coupling, signal_denoiser=ClassifierGradient(coupling.signal_denoiser, coupling.classifier, grad))
        if method == "card":
            net, meta = self._net(METHOD_NETS["card"], "logits")
            coupling = replace(coupling, logit_denoiser=wrap_denoiser("logits", net, meta),
                               logit_chain=replace(coupling.logit_chain, process=process_from_dict(meta["process"])))
        if method in references:
            net, _ = self._net(self.method_nets[method], "classifier")
            c = coupling.classifier
            net = get_domain(self.domain).wrap_classifier(net, self.meta.get("signal"))
            coupling = replace(coupling, classifier=FrozenClassifier(net, c.num_classes, c.logit_scale))
            method = references[method]
        return coupling, method, options


def signal_guidance(sampling: dict) -> float:
    """The guidance weight of a `sampling` section (`signal_logits: false` means 0)."""
    w = sampling.get("signal_guidance", 1.0)
    if not isinstance(w, (int, float)) or isinstance(w, bool) or w != w or w < 0:
        raise CoupledError(f"sampling.signal_guidance must be a number >= 0 (1 = plain conditioning), got {w!r}")
    return 0.0 if not sampling.get("signal_logits", True) else float(w)


def guided_signal_denoiser(net, guidance: float, meta: dict) -> Denoiser:
    """The x0_hat denoiser of signal network `net` sampled with guidance weight `guidance` (1: the net as is)."""
    return wrap_denoiser("signal", net if guidance == 1.0 else GuidedLogits(net, guidance), meta)


def chains_from_sampling(signal_process, logit_process, sampling: dict) -> tuple[Chain, Chain]:
    """The two chain recipes of a `sampling` config section."""

    def chain(process, opts):
        opts = dict(opts)
        return Chain(process, opts.pop("steps"), opts.pop("sampler"), **opts)

    return chain(signal_process, sampling["signal"]), chain(logit_process, sampling["logits"])


def load_bundle(folder, sampling: dict | None = None, classifier=None, num_classes: int | None = None,
                domain=None) -> Bundle:
    """Load classifier, signal and logit denoisers from `folder` (the user may pass their own classifier module).
    `domain`: the domain whose networks the folder holds when its JSON does not say (default image). A classifier
    other than the one the denoisers were trained on (their JSON's `classifier_fingerprint`) gets a
    `ClassifierMismatchWarning`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CoupledError(f"no such checkpoint folder: {folder}; pass a folder written by `coupled train`")
    pipeline = read_json(folder / "pipeline.json") if (folder / "pipeline.json").is_file() else {}
    sampling = sampling or pipeline.get("sampling")
    domain = get_domain(domain).name
    own = classifier is None
    if own:
        classifier, cmeta = load_net(folder, "classifier", "classifier", domain)
        domain = get_domain(cmeta.get("domain_spec") or cmeta.get("domain", domain)).name
        scale = cmeta.get("logit_scale", 0.8)
        num_classes = cmeta.get("num_classes") or cmeta["net"].get("num_classes", num_classes)
    else:
        scale = pipeline.get("logit_scale", 0.8)
    if not (folder / "signal.json").is_file() and not (folder / "logits.json").is_file():
        # a classifier alone (no denoisers trained yet): the methods that need none (noisy) run on it
        frozen = FrozenClassifier(classifier, num_classes, scale)
        return Bundle(Coupling(frozen), sampling or {}, {"pipeline": pipeline, "signal": {}, "logits": {}}, None, folder,
                      domain)
    if sampling is None:
        raise CoupledError(f"{folder} has no pipeline.json with sampling settings; run `coupled train` to completion")
    # the user's module (passed in, or built by the factory the folder records) has no config declaring its shape
    users = not own or cmeta.get("factory") is not None
    sig_net, smeta = load_net(folder, "signal", "signal", domain)
    log_net, lmeta = load_net(folder, "logits", "logits", domain)
    domain = smeta.get("domain", domain)
    # the classifier's weights fix the shape it takes; the signal and logit nets' configs must say the same
    nets = {"signal": sig_net, "logits": log_net} if users else {"classifier": classifier, "signal": sig_net, "logits": log_net}
    check_signal_shapes(folder, domain, nets, "signal" if users else "classifier")
    shape = get_domain(domain).signal_shape(sig_net)
    if users and shape is not None:
        _check_classifier_takes(FrozenClassifier(classifier, num_classes, scale), shape, folder, domain)
    # the denoisers learnt one classifier's logits: warn when this one is another (no check for older bundles)
    width = check_fingerprint(lmeta.get("classifier_fingerprint"), classifier, folder)
    num_classes = num_classes if num_classes is not None else width
    if num_classes is not None and lmeta["net"].get("num_classes") not in (None, num_classes):
        raise CoupledError(
            f"the logit denoiser in {folder} was trained for {lmeta['net']['num_classes']} classes but the classifier "
            f"has {num_classes}; use the checkpoint trained with this classifier"
        )
    for method, opts in sampling.get("methods", {}).items():  # as the nets were trained, or one line
        check_sampling(smeta.get("conditioning"), method, {"signal_guidance": sampling.get("signal_guidance", 1.0), **opts},
                       f"sampling.methods.{method} for {folder}")
    signal = guided_signal_denoiser(sig_net, signal_guidance(sampling), smeta)
    logits = wrap_denoiser("logits", log_net, lmeta)
    sc, lc = chains_from_sampling(signal.process, logits.process, sampling)
    # the classifier as the chains call it: adapted by the domain to what they run on (e.g. a representation)
    frozen = FrozenClassifier(get_domain(domain).wrap_classifier(classifier, smeta), num_classes, scale)
    coupling = Coupling(frozen, signal, logits, sc, lc)
    return Bundle(coupling, sampling, {"pipeline": pipeline, "signal": smeta, "logits": lmeta}, sig_net, folder, domain)


def default_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def checkpoint_domain(folder):
    """The registered domain whose networks a checkpoint folder holds (its classifier JSON's `domain`; image
    for folders written before it was recorded, or without a readable classifier JSON)."""
    folder = Path(folder)
    meta = {}
    if (folder / "classifier.json").is_file():
        try:
            meta = read_json(folder / "classifier.json")
        except CoupledError:
            meta = {}  # the command that loads the folder names the problem
    if not isinstance(meta, dict):
        return get_domain(None)
    return get_domain(meta.get("domain_spec") or meta.get("domain"))
