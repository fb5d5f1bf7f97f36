"""The bundled ECG classifier (checkpoints/ecg): its clean macro-F1 on the test patients, from the weights."""

import json

import pytest
import torch

from coupled.bundle import load_net
from coupled.domains.ecg.synth import make_split
from coupled.domains.registry import LabelledSignals, get_domain
from tests.reliability.conftest import ROOT

BUNDLE = ROOT / "checkpoints" / "ecg"


@pytest.mark.skipif(not (BUNDLE / "classifier.safetensors").is_file(), reason="no bundled ECG classifier")
def test_bundled_classifier_scores_at_least_095_macro_f1_on_clean_test_patients():
    dom = get_domain("ecg")
    net, meta = load_net(BUNDLE, "classifier", "classifier", dom)
    x, y, _, _ = make_split("test", 0)  # the test patients of configs/ecg.yaml (data seed 0), as load_splits gives them
    test = LabelledSignals(torch.tensor(x), torch.tensor(y), 3, "ecg_synthetic/test")
    with torch.no_grad():  # a context, not torch.set_grad_enabled(False): the switch would leak into later tests
        score = dom.clean_score(net, test)
    logged = [json.loads(line) for line in (BUNDLE / "training_log.jsonl").read_text().splitlines()]
    recorded = next(r["test_macro_f1"] for r in logged if r.get("stage") == "classifier" and "test_macro_f1" in r)
    assert score >= 0.95
    assert abs(score - recorded) < 1e-3  # the weights are the ones training scored
