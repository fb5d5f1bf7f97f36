"""Training state for resuming, beside the checkpoint folder format it re-exports (`coupled.checkpoint`,
`coupled.atomic`: their old import path keeps working).

Training state (`train_state/<stage>.*`) is versioned: the weights go to `<stage>.step<N>.safetensors`, then
`<stage>.json` names that file and its sha256 (the commit point), then the older weights file is removed.
Whatever the moment of a crash, `<stage>.json` names a complete state of one step, so a resume continues
exactly where an uninterrupted run would be. It holds the optimiser, the EMA and the global RNG states.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_write, atomic_write_json
from ..checkpoint import parse_weights, read_json, sha256_file
from ..errors import CoupledError

__all__ = ["flatten_optimizer", "unflatten_optimizer", "save_train_state", "load_train_state", "clear_train_state", "rng_states", "check_rng_states", "restore_rng_states"]


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
    atomic_write(folder / name, lambda tmp: save_file(clean, tmp, metadata={"stage": stage, "step": str(step)}))
    atomic_write_json(folder / f"{stage}.json", {**meta, "step": step, "weights": name, "sha256": sha256_file(folder / name)},
                      sort_keys=True)
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
    tensors = parse_weights(wpath, raw)
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
    tensors = parse_weights(wpath, wpath.read_bytes())
    steps = {int(v.reshape(-1)[0]) for k, v in tensors.items() if k.startswith("opt.") and k.endswith(".step") and v.numel()}
    if steps != {meta["step"]}:
        raise CoupledError(f"training state in {folder} mixes steps (weights of step {sorted(steps) or '?'}, "
                           f"{stage}.json of step {meta['step']}); {fix}")
    return tensors, meta


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
