"""The one per-item seed scheme: `coupled evaluate`, the pipeline and the benchmarks all draw item i's noise
from a generator seeded `item_seeds(seed, first_index, n)[i - first_index]`.

Each item's seed depends only on the run's seed and the item's position in its split (or call), never on the
batch size or on the other items, so a result does not change when batches are split differently, and
`pipe(images, seed=s)` on a split gives `coupled evaluate --seeds s` the same per-item draws. The same image at
two positions gets different draws; pass explicit seeds (the pipeline's `item_seeds=`) to tie them.
"""

from __future__ import annotations

import numpy as np


def item_seeds(seed: int, first_index: int, n: int) -> list[int]:
    """Generator seeds of items first_index .. first_index + n - 1 under run seed `seed` (32-bit each)."""
    return [int(np.random.SeedSequence([seed, first_index + i]).generate_state(1)[0]) for i in range(n)]
