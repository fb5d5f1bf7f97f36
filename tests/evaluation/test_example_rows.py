"""Which estimates a report's example rows show (issue 16 item 6: the demo's WAVs are the headline's two)."""

from types import SimpleNamespace

import numpy as np
import torch

from coupled.evaluation.runner import _example_rows


def _rows(shown):
    data = SimpleNamespace(signals=torch.zeros(4, 1, 2, 2), labels=torch.tensor([0, 1, 2, 3]), lengths=None)
    outcomes = {label: {"pred": np.array(pred), "x_hat": torch.full((4, 1, 2, 2), float(i))}
                for i, (label, pred) in enumerate({"sequential": [0, 1, 2, 3], "purification": [0, 1, 2, 0],
                                                   "parallel": [1, 1, 2, 3], "nested": [0, 1, 0, 3]}.items())}
    methods = {"sequential": "sequential", "purification": "purification", "parallel": "parallel", "nested": "nested"}
    return _example_rows("pixel_noise", 0.5, data, torch.zeros(4, 1, 2, 2), outcomes, methods, 3, lambda x: x, shown)


def _captions(row):
    return [c.split(":")[0] for c, _ in row["signals"]][2:]  # after clean and degraded


def test_examples_show_sequential_and_the_coupled_estimates_by_default():
    rows = _rows(None)
    assert [r["title"].split(",")[0] for r in rows] == ["item 0", "item 2"]  # where a coupled answer differs
    assert all(_captions(r) == ["sequential", "parallel", "nested"] for r in rows)


def test_examples_show_the_labels_asked_for_and_skip_those_that_did_not_run():
    rows = _rows(["purification", "parallel", "sequential", "card@matched"])
    assert all(_captions(r) == ["sequential", "purification", "parallel"] for r in rows)
    assert torch.equal(rows[0]["signals"][3][1], torch.full((1, 2, 2), 1.0))  # purification's own estimate
