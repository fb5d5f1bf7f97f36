"""coupled-diffusion: coupled diffusion of signals and logits for a frozen classifier."""
__version__ = "0.1.0"
