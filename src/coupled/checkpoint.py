"""The checkpoint folder format: safetensors weights beside a JSON config, written atomically and sealed by
digests; never pickles.

A bundle folder holds `<name>.safetensors` and `<name>.json` per network, `pipeline.json`, and `manifest.json`,
which names every one of those files with its sha256. Each file is written atomically (`coupled.atomic`); the
manifest is rewritten last, so it is the commit point: a crash between two files leaves a folder whose manifest
still describes the previous complete state, and loading refuses any file that does not match it (one line
naming the file and the fix). A folder without a manifest (written by an older version) still loads,
unchecked; `coupled manifest DIR` seals it. Training's resumable state is in `coupled.training.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from .atomic import atomic_write, atomic_write_json
from .errors import CoupledError

# what each training stage leaves in a bundle folder: the networks' file stems
STAGE_OUTPUTS = {"classifier": ["classifier"], "signal": ["signal_pretrained"], "logits": ["logits_pretrained"],
                 "joint": ["signal", "logits"], "card": ["card"], "finetuned": ["classifier_finetuned"],
                 "sequential": ["signal_sequential"], "predictive": ["signal_predictive"]}

__all__ = ["MANIFEST", "sha256_file", "seal", "verify_file", "read_json", "save_weights", "load_weights",
           "record_in_manifest", "verify_outputs", "load_state", "parse_weights"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "coupled-manifest/1"


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
    atomic_write_json(folder / MANIFEST, {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))})


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
    atomic_write_json(folder / MANIFEST, {"format": MANIFEST_FORMAT, "files": files})
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


def parse_weights(path: Path, raw: bytes) -> dict[str, torch.Tensor]:
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
    atomic_write(folder / f"{name}.safetensors", lambda tmp: save_file(clean, tmp))
    atomic_write_json(folder / f"{name}.json", config, sort_keys=True)
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
    return parse_weights(path, raw), config


def verify_outputs(folder, names) -> str | None:
    """None when every `<name>.*` pair of `folder` loads and matches the manifest, else the one-line problem."""
    try:
        for name in names:
            load_weights(folder, name)
    except CoupledError as e:
        return str(e)
    return None



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
