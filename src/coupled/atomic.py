"""The one atomic file writer: a reader sees the old file or the new one, never half of either.

Every write goes to a temporary file beside its target (`.NAME.*.tmp`), is fsynced, renamed over the target
with `os.replace`, and the folder is fsynced, so the rename survives a power cut. Standard library only: any
module may use it, from the engine up.

Fault injection for the crash tests: `COUPLED_FAULT=mid:N` kills the process (SIGKILL) halfway through the
N-th atomic write of the process (a half-written temporary file is left behind), `COUPLED_FAULT=after:N` right
after the N-th rename.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "remove_stale_temporaries",
           "FAULT_ENV"]

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


def atomic_write(path, write: Callable[[str], None]) -> Path:
    """Write `path` atomically through `write(tmp)`, which writes the whole file at the temporary path `tmp`
    (e.g. `lambda tmp: safetensors.torch.save_file(tensors, tmp)`; for numpy's savez, which appends `.npz` to
    a name, open `tmp` and pass the file). Creates missing parent folders; returns the path."""
    global _writes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    _writes += 1
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared checkpoint or result from other users
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _fault("mid", tmp)
        os.replace(tmp, path)  # atomic on POSIX: a reader sees the old file or the new one, never half
        _fsync_dir(path.parent)
        _fault("after")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent: int | None = 2, sort_keys: bool = False, default=None) -> Path:
    """Write `obj` as JSON with a final newline to `path` atomically (`indent`, `sort_keys` and `default` as for
    `json.dumps`)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the `.NAME.*.tmp` files an interrupted atomic write left in `folder`; returns them."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
