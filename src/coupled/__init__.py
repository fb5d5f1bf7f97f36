"""coupled-diffusion: coupled diffusion of signals and logits, for a frozen classifier on degraded inputs.

The engine (torch only) is imported eagerly; domain pieces load on first use.
"""

from .engine import *  # noqa: F401,F403
from .engine import __all__ as _engine_all
from .errors import CoupledError

__version__ = "0.1.0"
__all__ = [*_engine_all, "CoupledError", "CoupledPipeline"]


def __getattr__(name):
    if name == "CoupledPipeline":  # lazy: pulls in the image domain
        from .pipeline import CoupledPipeline

        return CoupledPipeline
    raise AttributeError(f"module 'coupled' has no attribute {name!r}")
