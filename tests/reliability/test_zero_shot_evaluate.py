"""`coupled evaluate --zero-shot` on the bundled image models with a corruption they were never trained on
(issue 18, item 1): the zero-shot rows run beside the trained ones, with their own labels and settings."""

import json

import pytest

from coupled.config import load_config
from coupled.errors import CoupledError
from coupled.evaluation.api import evaluate_config

from .conftest import BUNDLE, ROOT

PRIOR = ROOT / "checkpoints" / "mnist_prior"


@pytest.mark.slow
@pytest.mark.skipif(not (PRIOR / "prior.safetensors").is_file(), reason="no bundled prior")
def test_zero_shot_rows_on_an_untrained_corruption(tmp_path):
    cfg = load_config(ROOT / "configs" / "mnist_occlusion.yaml")
    cfg["sampling"]["signal"]["steps"] = 2
    cfg["sampling"]["logits"]["steps"] = 2
    results = evaluate_config(cfg, checkpoint=BUNDLE, out=tmp_path, max_items=6, corruptions=["occlusion"],
                              levels=["heavy"], methods=["noisy", "sequential", "parallel"],
                              seeds_for_level=lambda level: [0], zero_shot=["ddnm", "dps:weight=2"], prior=PRIOR,
                              progress=False)
    rows = {(r["method"], r["readout"]): r for r in results["rows"]}
    for label in ("sequential+ddnm", "parallel+ddnm", "sequential+dps:weight=2", "parallel+dps:weight=2"):
        assert (label, "classifier") in rows, sorted(rows)
    assert rows[("parallel+ddnm", "logits")]["calls"]["signal"] == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert any(r["method"] == "sequential+ddnm" for r in saved["rows"])
    with pytest.raises(CoupledError, match="not a linear-Gaussian measurement"):
        evaluate_config(cfg, checkpoint=BUNDLE, out=tmp_path, max_items=2, corruptions=["pixel_noise"],
                        levels=["heavy"], methods=["sequential"], seeds_for_level=lambda level: [0],
                        zero_shot=["ddnm"], prior=PRIOR, progress=False)
