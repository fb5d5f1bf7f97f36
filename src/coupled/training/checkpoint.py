"""Checkpoints: safetensors weights beside a JSON config, written atomically; never pickles.

A checkpoint folder holds `<name>.safetensors` and `<name>.json`. Optimiser state for resuming is stored
the same way: its tensors in safetensors, its scalars and hyper-parameters in the JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CoupledError

__all__ = ["atomic_write_text", "save_weights", "load_weights", "read_json", "flatten_optimizer", "unflatten_optimizer"]


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared checkpoint from other users
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: a reader sees the old file or the new one, never half
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path` atomically."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_weights(folder, name: str, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write `<folder>/<name>.safetensors` then `<name>.json`, each atomically (the JSON last marks it complete)."""
    folder = Path(folder)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(folder / f"{name}.safetensors", lambda tmp: save_file(clean, tmp))
    atomic_write_text(folder / f"{name}.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_json(path) -> dict:
    """Read a JSON file with one-line errors for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CoupledError(f"no such file: {path}; pass a checkpoint folder written by `coupled train`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CoupledError(f"corrupt JSON in {path} ({e.msg if hasattr(e, 'msg') else e}); re-create it with `coupled train`") from None


def load_weights(folder, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read `<name>.safetensors` and `<name>.json` from `folder`, with one-line errors for missing or corrupt files."""
    folder = Path(folder)
    config = read_json(folder / f"{name}.json")
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise CoupledError(f"no such file: {path}; the checkpoint is incomplete, re-create it with `coupled train`")
    try:
        return load_file(str(path)), config
    except (SafetensorError, OSError, ValueError) as e:
        raise CoupledError(f"corrupt weights file {path} ({str(e).splitlines()[0][:120]}); re-create it with `coupled train`") from None


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load `tensors` into `module`, naming missing or unexpected keys in a one-line error."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    bad = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or extra or bad:
        raise CoupledError(
            f"weights in {where} do not fit the network (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {bad[:3]}); the JSON config and the weights must come from the same run"
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
