"""Objects named by "module.path:attr" strings in configs and bundles: a classifier factory, a corruption, a
domain. Importing one runs its module's code: a config is code."""

from __future__ import annotations

import importlib

from .errors import CoupledError

__all__ = ["import_object"]


def import_object(spec: str, what: str, hint: str):
    """The object named by "module.path:attr" (attr may be dotted: "module:Class.method"), imported with
    importlib; `what` names it in errors ("corruption 'x:y'"), `hint` says what it should be."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise CoupledError(f"{what} is not of the form 'module.path:{hint}'; e.g. my_pkg.module:{hint}")
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # an import can fail with anything raised by the user's module body
        raise CoupledError(f"cannot import module {mod_name!r} for {what} ({type(e).__name__}: {e}); check the module is on PYTHONPATH and imports cleanly") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CoupledError(f"module {mod_name!r} has no attribute {attr!r} for {what}; check the {hint} name after ':'")
        obj = getattr(obj, part)
    return obj
