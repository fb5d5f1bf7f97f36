"""The check every variable-length path shares: a padded batch gives each item the result it gets alone."""

import numpy as np
import torch


def assert_padded_batch_is_each_item_alone(run, n_items: int, lengths, atol: float = 1e-5) -> None:
    """`run(batch_size)` -> run_specs' outcomes; the outcomes of one batch of `n_items` and of batches of one
    must agree item for item: answers, scores, and estimates over each item's `lengths`, zero past its end."""
    together, alone = run(n_items), run(1)
    for label in together:
        a, b = together[label], alone[label]
        assert list(a["pred"]) == list(b["pred"]), label
        for key in ("score_classifier", "score_logits"):
            assert (a[key] is None) == (b[key] is None) and (a[key] is None or np.array_equal(a[key], b[key])), label
        if a["x_hat"] is not None:
            for i, (x, y) in enumerate(zip(a["x_hat"], b["x_hat"])):
                n = int(lengths[i])
                torch.testing.assert_close(x[..., :n], y[..., :n], atol=atol, rtol=1e-4, msg=f"{label} item {i}")
                assert not x[..., n:].any(), f"{label} item {i}: its estimate is not zero past its end"
