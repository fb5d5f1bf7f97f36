"""Checkpoints: safetensors weights beside a JSON config, written atomically and sealed by digests; never pickles.

A bundle folder holds `<name>.safetensors` and `<name>.json` per network, `pipeline.json`, and `manifest.json`,
which names every one of those files with its sha256. Each file is written to a temporary file, fsynced and
renamed; the manifest is rewritten last, so it is the commit point: a crash between two files leaves a folder
whose manifest still describes the previous complete state, and loading refuses any file that does not match
it (one line naming the file and the fix). A folder without a manifest (written by an older version) still
loads, unchecked; `coupled manifest DIR` seals it.

Training state for resuming (`train_state/<stage>.*`) is versioned instead: the weights go to
`<stage>.step<N>.safetensors`, then `<stage>.json` names that file and its sha256 (the commit point), then the
older weights file is removed. Whatever the moment of a crash, `<stage>.json` names a complete state of one
step, so a resume continues exactly where an uninterrupted run would be.

Fault injection for the crash tests: `COUPLED_FAULT=mid:N` kills the process (SIGKILL) halfway through the
N-th atomic write of the process (a half-written temporary file is left behind), `COUPLED_FAULT=after:N` right
after the N-th rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from ..errors import CoupledError

__all__ = [
    "atomic_write_text", "save_weights", "load_weights", "read_json", "flatten_optimizer", "unflatten_optimizer",
    "MANIFEST", "seal", "verify_file", "remove_stale_temporaries", "save_train_state", "load_train_state",
    "clear_train_state", "rng_states", "check_rng_states", "restore_rng_states",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "coupled-manifest/1"
FAULT_ENV = "COUPLED_FAULT"
_writes = 0  # atomic writes of this process, for the fault-injection hook


def _fault(phase: str, tmp: str | None = None) -> None:
    """The crash tests' hook: kill this process hard at `phase` of the N-th atomic write (COUPLED_FAULT)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want != phase or not n.isdigit() or int(n) != _writes:
        return
    if tmp is not None:  # a write cut off halfway: the temporary file holds half the bytes
        size = os.path.getsize(tmp)
        with open(tmp, "r+b") as fh:
            fh.truncate(size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: Path, write) -> None:
    global _writes
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    _writes += 1
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared checkpoint from other users
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _fault("mid", tmp)
        os.replace(tmp, path)  # atomic on POSIX: a reader sees the old file or the new one, never half
        _fsync_dir(path.parent)
        _fault("after")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` atomically (temporary file, fsync, rename)."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the `.NAME.*.tmp` files an interrupted atomic write left in `folder`; returns them."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ manifest


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        data = None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        raise CoupledError(f"corrupt {path}; if the other files are intact, re-seal the folder with `coupled manifest {folder}`")
    return data["files"]


def _update_manifest(folder: Path, names: list[str]) -> None:
    """Record the current sha256 of `names` in the folder's manifest (written last: the commit point)."""
    files = _read_manifest(folder)
    if files is None:  # the first manifest of a folder written before manifests: take in what is there
        files = {n: sha256_file(folder / n) for n in _sealable(folder) if n not in names}
    files = dict(files)
    files.update({n: sha256_file(folder / n) for n in names})
    atomic_write_text(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))},
                                                    indent=2) + "\n")


def _sealable(folder: Path) -> list[str]:
    names = [n for w in sorted(folder.glob("*.safetensors")) if (folder / f"{w.stem}.json").is_file()
             for n in (w.name, f"{w.stem}.json")]
    return names + (["pipeline.json"] if (folder / "pipeline.json").is_file() else [])


def seal(folder) -> dict:
    """Write `folder/manifest.json` naming every weights file, its JSON and pipeline.json with their sha256.

    For folders written before manifests existed (the command `coupled manifest DIR`); check the files first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CoupledError(f"no such checkpoint folder: {folder}")
    names = []
    for w in sorted(folder.glob("*.safetensors")):
        if not (folder / f"{w.stem}.json").is_file():
            raise CoupledError(f"{w} has no {w.stem}.json beside it; the folder is incomplete, re-create it with `coupled train`")
        load_weights(folder, w.stem, verify=False)  # refuse to seal a file that does not even parse
        names += [w.name, f"{w.stem}.json"]
    if (folder / "pipeline.json").is_file():
        read_json(folder / "pipeline.json", verify=False)
        names.append("pipeline.json")
    if not names:
        raise CoupledError(f"{folder} holds no .safetensors files; pass a checkpoint folder")
    files = {n: sha256_file(folder / n) for n in names}
    atomic_write_text(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2) + "\n")
    return files


def verify_file(path) -> bytes:
    """The bytes of `path`, checked against the sha256 in its folder's manifest (when the folder has one)."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"no such file: {path}; the checkpoint is incomplete, re-create it with `coupled train`")
    data = path.read_bytes()
    files = _read_manifest(path.parent)
    if files is None:
        return data
    want = files.get(path.name)
    if want is None:
        raise CoupledError(f"{path} is not listed in {path.parent / MANIFEST}; delete it, or re-seal the folder with "
                           f"`coupled manifest {path.parent}` if you trust it")
    if hashlib.sha256(data).hexdigest() != want:
        kind = "weights file" if path.suffix == ".safetensors" else "file"
        raise CoupledError(f"corrupt {kind} {path}: it does not match its sha256 in {MANIFEST} (damaged or half-written); "
                           "run `coupled train CONFIG --resume` to rewrite it, or restore the folder from a copy")
    return data


def read_json(path, *, verify: bool = True) -> dict:
    """Read a JSON file with one-line errors for a missing, corrupt or (per the manifest) altered file."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"no such file: {path}; pass a checkpoint folder written by `coupled train`")
    raw = verify_file(path) if verify else path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CoupledError(f"corrupt JSON in {path} ({e.msg if hasattr(e, 'msg') else e}); re-create it with `coupled train`") from None
    if not isinstance(data, dict):
        raise CoupledError(f"corrupt JSON in {path} (a {type(data).__name__}, not an object); re-create it with `coupled train`")
    return data


def _parse_weights(path: Path, raw: bytes) -> dict[str, torch.Tensor]:
    try:
        tensors = load_bytes(raw)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CoupledError(f"corrupt weights file {path} ({str(e).splitlines()[0][:120]}); re-create it with `coupled train`") from None
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CoupledError(f"weights file {path} holds NaN or infinite values in {k!r}; the training diverged or the "
                               "file is damaged, re-create it with `coupled train`")
    return tensors


def save_weights(folder, name: str, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write `<folder>/<name>.safetensors` then `<name>.json`, each atomically, then the folder's manifest."""
    folder = Path(folder)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(folder / f"{name}.safetensors", lambda tmp: save_file(clean, tmp))
    atomic_write_text(folder / f"{name}.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    _update_manifest(folder, [f"{name}.safetensors", f"{name}.json"])


def record_in_manifest(path) -> None:
    """Add an atomically written file (pipeline.json) to its folder's manifest."""
    path = Path(path)
    _update_manifest(path.parent, [path.name])


def load_weights(folder, name: str, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Read `<name>.safetensors` and `<name>.json` from `folder`, checked against the folder's manifest, with
    one-line errors for missing, corrupt or altered files."""
    folder = Path(folder)
    config = read_json(folder / f"{name}.json", verify=verify)
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise CoupledError(f"no such file: {path}; the checkpoint is incomplete, re-create it with `coupled train`")
    raw = verify_file(path) if verify else path.read_bytes()
    return _parse_weights(path, raw), config


def verify_outputs(folder, names) -> str | None:
    """None when every `<name>.*` pair of `folder` loads and matches the manifest, else the one-line problem."""
    try:
        for name in names:
            load_weights(folder, name)
    except CoupledError as e:
        return str(e)
    return None


# ------------------------------------------------------------------------------------------------ training state


def _state_files(folder: Path, stage: str) -> list[Path]:
    pattern = re.compile(rf"{re.escape(stage)}\.step\d+\.safetensors")
    return [p for p in folder.glob(f"{stage}.step*.safetensors") if pattern.fullmatch(p.name)]


def clear_train_state(folder, stage: str) -> None:
    """Remove a stage's resumable state (a fresh run must not be mistaken for a resumable one)."""
    folder = Path(folder)
    for p in [folder / f"{stage}.json", folder / f"{stage}.safetensors", *_state_files(folder, stage)]:
        p.unlink(missing_ok=True)


def save_train_state(folder, stage: str, step: int, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Weights of `step` to `<stage>.step<N>.safetensors`, then `<stage>.json` naming them (the commit point),
    then the older weights files are removed."""
    folder = Path(folder)
    name = f"{stage}.step{step:08d}.safetensors"
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(folder / name, lambda tmp: save_file(clean, tmp, metadata={"stage": stage, "step": str(step)}))
    atomic_write_text(folder / f"{stage}.json", json.dumps(
        {**meta, "step": step, "weights": name, "sha256": sha256_file(folder / name)}, indent=2, sort_keys=True) + "\n")
    for p in _state_files(folder, stage):
        if p.name != name:
            p.unlink(missing_ok=True)
    (folder / f"{stage}.safetensors").unlink(missing_ok=True)  # the unversioned file of older versions


def load_train_state(folder, stage: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The state `<stage>.json` names, checked (digest, step); None when there is none. Stale weights files
    of other steps (a crash between the writes) are removed."""
    folder = Path(folder)
    path = folder / f"{stage}.json"
    fix = f"delete {folder}/{stage}.* to restart the stage from step 0 (or run without --resume)"
    if not path.is_file():
        for p in _state_files(folder, stage):  # weights written, crash before the JSON named them
            p.unlink(missing_ok=True)
        return None
    meta = read_json(path, verify=False)
    if not isinstance(meta.get("step"), int):
        raise CoupledError(f"training state {path} names no step (damaged); {fix}")
    if "weights" not in meta:
        return _load_legacy_train_state(folder, stage, meta, fix)
    if "sha256" not in meta:
        raise CoupledError(f"training state {path} has no weights digest (damaged); {fix}")
    wpath = folder / str(meta["weights"])
    if Path(meta["weights"]).name != meta["weights"] or not wpath.is_file():
        raise CoupledError(f"training state {path} names {wpath}, which is missing; {fix}")
    raw = wpath.read_bytes()
    if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
        raise CoupledError(f"training state {wpath} does not match the sha256 in {path} (corrupt); {fix}")
    try:
        with safe_open(str(wpath), "pt") as fh:
            saved_step = (fh.metadata() or {}).get("step")
    except (SafetensorError, OSError) as e:
        raise CoupledError(f"corrupt training state {wpath} ({str(e).splitlines()[0][:80]}); {fix}") from None
    if saved_step != str(meta["step"]):
        raise CoupledError(f"training state in {folder} mixes steps (weights of step {saved_step}, {path.name} of step "
                           f"{meta['step']}); {fix}")
    tensors = _parse_weights(wpath, raw)
    for p in _state_files(folder, stage):
        if p != wpath:
            p.unlink(missing_ok=True)
    return tensors, meta


def rng_states() -> dict[str, torch.Tensor]:
    """The global RNG states a resume must continue (dropout draws from them): `rng.cpu`, and `rng.cuda.<i>` for
    each CUDA device when CUDA is available."""
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def _cuda_states(states: dict) -> list[torch.Tensor]:
    return [states[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in states))]


def check_rng_states(states: dict, where) -> str | None:
    """Refuse (one line) RNG states saved with another number of CUDA devices than this run has. When only one
    side has CUDA, returns a one-line warning instead (the CPU stream continues, the CUDA streams start afresh)."""
    saved = len(_cuda_states(states))
    now = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if saved == now:
        return None
    if saved and now:
        raise CoupledError(f"training state {where} was saved with {saved} CUDA devices but this run has {now}, so its "
                           f"random streams cannot continue; resume with {saved} visible devices (CUDA_VISIBLE_DEVICES), "
                           "or run without --resume")
    was = f"with {saved} CUDA devices" if saved else "without CUDA"
    return (f"training state {where} was saved {was} and this run has {now or 'no'} CUDA devices: the CPU random "
            "stream continues, the CUDA ones start afresh, so dropout masks differ from an uninterrupted run")


def restore_rng_states(states: dict) -> None:
    """Set the RNG states `rng_states` saved (the CUDA ones only when this run has as many devices)."""
    if "rng.cpu" in states:
        torch.set_rng_state(states["rng.cpu"])
    cuda = _cuda_states(states)
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def _load_legacy_train_state(folder: Path, stage: str, meta: dict, fix: str):
    """State written before versioned files (`<stage>.safetensors` beside `<stage>.json`): usable only when the
    optimiser's own step counters in the weights file agree with the JSON's step (a crash between the two
    renames left weights of a later step)."""
    wpath = folder / f"{stage}.safetensors"
    if not wpath.is_file():
        raise CoupledError(f"training state {folder / (stage + '.json')} has no {wpath.name} beside it; {fix}")
    tensors = _parse_weights(wpath, wpath.read_bytes())
    steps = {int(v.reshape(-1)[0]) for k, v in tensors.items() if k.startswith("opt.") and k.endswith(".step") and v.numel()}
    if steps != {meta["step"]}:
        raise CoupledError(f"training state in {folder} mixes steps (weights of step {sorted(steps) or '?'}, "
                           f"{stage}.json of step {meta['step']}); {fix}")
    return tensors, meta


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str,
               fix: str = "the JSON config and the weights must come from the same run") -> None:
    """Load `tensors` into `module`, naming missing or unexpected keys in a one-line error that ends with `fix`."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    bad = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or bad:
        raise CoupledError(
            f"weights in {where} do not fit the network (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {bad[:3]}); {fix}"
        )
    module.load_state_dict(tensors)


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer `state_dict()` into tensors (for safetensors) and JSON-able metadata."""
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, slots in state["state"].items():
        for key, value in slots.items():
            name = f"opt.{idx}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value
            else:
                meta["scalars"][name] = value
    return tensors, meta


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of `flatten_optimizer`."""
    state: dict = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}
