"""Where a relative path is read from when a command runs outside the clone: the project home.

A relative path that a command reads (a config file, a checkpoint folder, a picks file, a weights file named in a
config) is taken from the current directory when it exists there, else from the project home: `$COUPLED_HOME`
when it is set, else the clone the package was installed from (`pip install -e .`: the folder above `src/`
that holds `configs/`). So `coupled evaluate configs/mnist.yaml` finds the bundled config and, through its
`output: checkpoints/mnist`, the bundled models from any directory. Paths a command writes (`train`'s `output`,
`--out`) stay relative to the current directory. When a path is in neither place, the error names both.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CoupledError

HOME_ENV = "COUPLED_HOME"


def project_home() -> Path | None:
    """`$COUPLED_HOME`, else the clone this package runs from (None for an installed copy without one)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    clone = Path(__file__).resolve().parents[2]  # src/coupled/home.py -> the clone's root
    return clone if (clone / "configs").is_dir() and (clone / "src" / "coupled").is_dir() else None


def locate(path) -> Path:
    """`path` as given when it is absolute or exists from the current directory, else under the project home when
    it exists there, else `path` as given (the caller reports it, or writes there)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    home = project_home()
    return home / p if home is not None and (home / p).exists() else p


def find(path, what: str, hint: str = "") -> Path:
    """`locate(path)`, or a one-line error naming both places it was looked for (`what`: "config file", ...)."""
    found = locate(path)
    if found.exists():
        return found
    p = Path(path).expanduser()
    home = project_home()
    if p.is_absolute():
        places = ""
    elif home is None:
        places = (f" (not in the current directory {Path.cwd()}, and no project home to look in: set {HOME_ENV} "
                  "to the clone's folder)")
    else:
        source = f"${HOME_ENV}" if os.environ.get(HOME_ENV) else "the clone the package runs from"
        places = f" (not in the current directory {Path.cwd()}, nor in the project home {home}, {source})"
    raise CoupledError(f"no such {what}: {path}{places}{'; ' + hint if hint else ''}")
