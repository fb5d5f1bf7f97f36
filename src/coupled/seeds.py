"""Seeds by purpose: the one place every random stream of the library gets its seed.

A stream is named by its purpose ("corruption", "sampling", "training", ...), the run's seed and the item it
serves: an index (item i of a split or of a training step) or the item's content (`content_seeds`). Its seed
is drawn from numpy's `SeedSequence`, whose hash input is built so that two purposes never hash the same
words, whatever the seeds and indices:

- "corruption" keeps the scheme the corrupted data sets were always generated with: entropy
  `[seed, index]` (or `[seed, condition, index]`) and no spawn key, so at most 4 words are hashed. The
  corrupted test sets, the calibrated severities and every noisy figure stay as they were published.
- every other purpose hashes its words (at most 4, each below 2**32) with its purpose word as spawn key:
  numpy pads the entropy to 4 words and appends the spawn key, so the hash input is exactly 5 words and
  ends with the purpose's own non-zero word.
- a stream keyed by an item's content appends a second spawn word, `CONTENT`: 6 words.

Two streams of different purposes therefore always hash different inputs; they can only coincide through a
collision of the hash's output, which for a torch CPU generator (it keeps the low 32 bits of its seed) is a
2**-32 chance per pair of streams, as for two items of one purpose, and no relation between seed values
(equal seeds, shifted indices) makes it likelier. Before this scheme the sampler and the corruption both
hashed `[seed, index]`: equal seeds gave the sampler the very noise that had corrupted its input.

Each stream's seed depends only on its purpose, the run's seed and its item, never on the batch size or on
the other items of a call.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .errors import CoupledError

CORRUPTION = "corruption"
# each purpose's spawn word (never 0, never reused: a new purpose takes a new word). Corruption's is only hashed
# by content-keyed streams: its index-keyed streams keep the published scheme, which has no spawn key.
PURPOSES = {
    CORRUPTION: 1,      # the degradation of an item (the corrupted data sets, `coupled classify --corruption`)
    "sampling": 2,      # the noise of the diffusion chains at evaluation and inference
    "training": 3,      # a training step's draws (times, noise, corruptions, plans)
    "data_order": 4,    # the order training visits its items, per epoch
    "init": 5,          # network initialisation (torch's global generator at the start of a stage)
    "bootstrap": 6,     # resampling of items for confidence intervals
    "data": 7,          # synthetic data (the Gaussian demo's problem and its samples)
}
CONTENT = 1  # second spawn word of a stream keyed by an item's content instead of its index
WORD = 2**32  # every hashed word is below this, so each integer is exactly one word
GENERATOR_SEED_MAX = 2**64 - 1  # the seeds this module returns are 64-bit (torch's CPU generator uses the low 32)


def _words(purpose: str, words) -> list[int]:
    if purpose not in PURPOSES:
        raise CoupledError(f"unknown seed purpose {purpose!r}; choose one of: {', '.join(PURPOSES)}")
    out = []
    for w in words:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or not 0 <= w < WORD:
            raise CoupledError(f"a {purpose} seed word must be an integer in [0, 2**32), got {w!r}")
        out.append(int(w))
    if len(out) > 4:
        raise CoupledError(f"a {purpose} stream is named by at most 4 words, got {len(out)}")
    return out


def sequence(purpose: str, *words: int, by_content: bool = False) -> np.random.SeedSequence:
    """The `SeedSequence` of the stream (`purpose`, `words`): e.g. sequence("bootstrap", seed) or
    sequence("corruption", seed, index). Pass it to `np.random.default_rng` for a numpy stream."""
    entropy = _words(purpose, words)
    if purpose == CORRUPTION and not by_content:
        return np.random.SeedSequence(entropy)  # the published corruption scheme (see the module docstring)
    return np.random.SeedSequence(entropy, spawn_key=(PURPOSES[purpose], CONTENT) if by_content else (PURPOSES[purpose],))


def stream_seed(purpose: str, *words: int, by_content: bool = False) -> int:
    """A 64-bit generator seed for the stream (`purpose`, `words`), e.g. torch.manual_seed(stream_seed("init", seed, 2))."""
    return int(sequence(purpose, *words, by_content=by_content).generate_state(1, np.uint64)[0])


def item_seeds(purpose: str, seed: int, first_index: int, n: int) -> list[int]:
    """Generator seeds of items first_index .. first_index + n - 1 under run seed `seed` for `purpose`."""
    return [stream_seed(purpose, seed, first_index + i) for i in range(n)]


def item_generator(purpose: str, seed: int, index: int, device="cpu"):
    """A `torch.Generator` on `device` for item `index` under run seed `seed` and `purpose`."""
    import torch

    return torch.Generator(device=device).manual_seed(stream_seed(purpose, seed, index))


def content_key(item) -> tuple[int, int, int]:
    """Three words (96 bits of sha256) of an item's float32 values and shape: the same values, the same key."""
    import torch

    if isinstance(item, torch.Tensor):
        item = item.detach().to("cpu", torch.float32).numpy()
    arr = np.ascontiguousarray(np.asarray(item, dtype=np.float32))
    h = hashlib.sha256(repr(arr.shape).encode() + b"\0" + arr.tobytes()).digest()
    return tuple(int.from_bytes(h[4 * k:4 * k + 4], "little") for k in range(3))


def content_seeds(purpose: str, seed: int, items) -> list[int]:
    """One generator seed per item of `items` [N, ...] for `purpose` under run seed `seed`, from the item's
    content (`content_key`), not its position: reordering the items reorders the seeds with them."""
    return [stream_seed(purpose, seed, *content_key(items[i]), by_content=True) for i in range(len(items))]
