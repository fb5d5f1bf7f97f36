"""The Python API's inputs: every bad argument is a one-line CoupledError; ranges, chunks, seeds, global state."""

import pytest
import torch
from torch import nn

from coupled import CoupledPipeline
from coupled.engine import FrozenClassifier
from coupled.errors import CoupledError

from .conftest import BUNDLE


@pytest.fixture(scope="module")
def pipe():
    return CoupledPipeline.from_pretrained(BUNDLE, device="cpu")


@pytest.fixture(scope="module")
def digits():
    from coupled.domains.image.data import load_mnist5k

    return load_mnist5k()["test"].signals[:4]


BAD_CALLS = {
    "empty_batch": (lambda x: (x[:0], "noisy"), {}, "empty batch"),
    "string_input": (lambda x: ("digit.png", "noisy"), {}, "must be a torch.Tensor or numpy array"),
    "list_input": (lambda x: (x.tolist(), "noisy"), {}, "must be a torch.Tensor or numpy array"),
    "wrong_shape": (lambda x: (x[:, :, :20], "noisy"), {}, "expects"),
    "five_dims": (lambda x: (x[None], "noisy"), {}, "expects"),
    "unknown_method": (lambda x: (x, "magic"), {}, "unknown method"),
    "unknown_readout": (lambda x: (x, "noisy"), {"readout": "softmax"}, "unknown readout"),
    "logits_readout_without_chain": (lambda x: (x, "sequential"), {"readout": "logits"}, "has no logit chain"),
    "seed_fraction": (lambda x: (x, "noisy"), {"seed": 1.5}, "seed must be an integer"),
    "seed_negative": (lambda x: (x, "noisy"), {"seed": -1}, "seed must be an integer"),
    "seed_huge": (lambda x: (x, "noisy"), {"seed": 2**70}, "seed must be an integer"),
    "seed_bool": (lambda x: (x, "noisy"), {"seed": True}, "seed must be an integer"),
    "item_seeds_count": (lambda x: (x, "noisy"), {"item_seeds": [1, 2]}, "item_seeds has 2 seeds for 4"),
    "item_seeds_huge": (lambda x: (x, "noisy"), {"item_seeds": [1, 2, 3, 2**64]}, r"each of item_seeds must be an integer in \[0, 18446744073709551615\]"),
    "batch_size_0": (lambda x: (x, "noisy"), {"batch_size": 0}, "batch_size"),
    "nan": (lambda x: (x * float("nan"), "noisy"), {}, "NaN"),
    "uint8_without_range": (lambda x: (((x + 1) * 127.5).to(torch.uint8), "noisy"), {}, "input_range='0..255'"),
    "float_0_255": (lambda x: ((x + 1) * 127.5, "noisy"), {}, r"values in \[0, 255\] but the expected range is \[-1, 1\]; pass input_range='0..255'"),
    "float_0_1": (lambda x: ((x + 1) / 2, "noisy"), {}, r"looks like 0..1"),
    "declared_range_wrong": (lambda x: ((x + 1) * 127.5, "noisy"), {"input_range": "0..1"}, r"expected range is \[0, 1\]"),
    "bad_range_spec": (lambda x: (x, "noisy"), {"input_range": "1..0"}, "input_range must be"),
    "unknown_option": (lambda x: (x, "parallel"), {"rounds": 2}, "unknown option"),
}


@pytest.mark.parametrize("row", sorted(BAD_CALLS))
def test_bad_call_is_one_line(pipe, digits, row):
    make, kwargs, message = BAD_CALLS[row]
    with pytest.raises(CoupledError, match=message) as e:
        pipe(*make(digits), **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("device, message", [("cuda", "no CUDA device"), ("tpu", "device"), ("cuda:7", "CUDA")])
def test_unavailable_device_is_one_line(device, message):
    with pytest.raises(CoupledError, match=message):
        CoupledPipeline.from_pretrained(BUNDLE, device=device)


@pytest.mark.parametrize("spec, scale", [("0..255", lambda x: (x + 1) * 127.5), ("0..1", lambda x: (x + 1) / 2),
                                         ((0, 255), lambda x: ((x + 1) * 127.5).round().to(torch.uint8)),
                                         ("-1..1", lambda x: x)])
def test_input_range_converts(pipe, digits, spec, scale):
    ref = pipe(digits, "noisy")
    out = pipe(scale(digits), "noisy", input_range=spec)
    assert torch.equal(out["predictions"], ref["predictions"])
    torch.testing.assert_close(out["probabilities"], ref["probabilities"], atol=2e-3, rtol=0)


def test_chunks_do_not_change_results_and_state_is_left_alone(pipe, digits):
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()
    whole = pipe(digits, "parallel", seed=3)
    chunked = pipe(digits, "parallel", seed=3, batch_size=3)
    assert torch.equal(whole["predictions"], chunked["predictions"])
    torch.testing.assert_close(whole["enhanced"], chunked["enhanced"], atol=1e-5, rtol=0)
    assert torch.get_num_threads() == threads and torch.is_grad_enabled() == grad
    assert torch.get_default_dtype() == torch.float32


def test_an_images_answer_does_not_depend_on_its_position(pipe):
    """Each image's draws come from the seed and the image, not its place: reversing or shuffling the batch
    (or sending an image alone) gives every image the same enhanced digit and the same answer."""
    from coupled.domains.image.corruptions import corrupt
    from coupled.domains.image.data import load_mnist5k

    noisy = corrupt(load_mnist5k()["test"].signals[:8], "pixel_noise", 0.6, 12345)
    ref = pipe(noisy, "sequential", seed=0)
    for order in (list(range(7, -1, -1)), [3, 6, 0, 5, 1, 7, 2, 4]):
        out = pipe(noisy[order], "sequential", seed=0)
        torch.testing.assert_close(out["enhanced"], ref["enhanced"][order], atol=1e-5, rtol=0)
        assert torch.equal(out["predictions"], ref["predictions"][order])
        torch.testing.assert_close(out["probabilities"], ref["probabilities"][order], atol=1e-5, rtol=0)
    alone = pipe(noisy[5:6], "sequential", seed=0)
    torch.testing.assert_close(alone["enhanced"], ref["enhanced"][5:6], atol=1e-5, rtol=0)
    assert not torch.allclose(pipe(noisy, "sequential", seed=1)["enhanced"], ref["enhanced"], atol=1e-3)


def test_repeated_images_share_their_draws_and_item_seeds_choose_them(pipe, digits):
    twice = torch.cat([digits[:1], digits[:1]])
    default = pipe(twice, "sequential", seed=0)
    assert torch.equal(default["enhanced"][0], default["enhanced"][1])  # documented: seeded by the image
    chosen = pipe(twice, "sequential", item_seeds=[7, 8])
    assert not torch.equal(chosen["enhanced"][0], chosen["enhanced"][1])
    assert torch.equal(pipe(twice, "sequential", item_seeds=[7, 2**64 - 1])["enhanced"][0], chosen["enhanced"][0])


def test_item_seeds_reproduce_an_evaluations_draws(pipe, digits):
    """`coupled evaluate --seeds s` seeds item i of a split by (s, i); the pipeline seeds by content, and
    `item_seeds=coupled.seeds.item_seeds("sampling", s, 0, n)` gives it the evaluation's draws."""
    from coupled.evaluation.runner import MethodSpec, run_specs
    from coupled.seeds import item_seeds

    options = pipe.bundle.sampling.get("methods", {}).get("parallel", {})
    labels = torch.zeros(len(digits), dtype=torch.long)
    ran = run_specs(pipe.bundle, digits, labels, digits, [MethodSpec("parallel", "parallel", options)], seed=5,
                    batch_size=3, device=torch.device("cpu"), keep_x_hat=True)["parallel"]
    out = pipe(digits, "parallel", item_seeds=item_seeds("sampling", 5, 0, len(digits)))
    torch.testing.assert_close(out["enhanced"], ran["x_hat"], atol=1e-5, rtol=0)
    assert not torch.allclose(pipe(digits, "parallel", seed=5)["enhanced"], ran["x_hat"], atol=1e-3)


def test_the_ensembles_probabilities_are_its_averaged_posterior(pipe, digits):
    """sequential_ensemble predicts from the K trajectories' averaged probabilities; `probabilities` are those,
    not the last trajectory's."""
    from coupled.domains.image.corruptions import corrupt
    from coupled.domains.image.data import load_mnist5k
    from coupled.engine import item_generators, run_method

    noisy = corrupt(load_mnist5k()["test"].signals[::125], "pixel_noise", 0.7, 12345)  # uncertain: trajectories differ
    coupling, method, opts = pipe.bundle.prepare("sequential_ensemble", {"k": 3})
    res = run_method(method, coupling, noisy, item_generators(range(len(noisy))), **opts)
    out = pipe(noisy, "sequential_ensemble", item_seeds=list(range(len(noisy))), k=3)
    torch.testing.assert_close(out["probabilities"], res.classifier_logits.exp(), atol=1e-5, rtol=0)
    assert torch.equal(out["probabilities"].argmax(-1), out["predictions"])


def test_frozen_classifier_runs_in_eval_and_restores_the_callers_mode():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    frozen = FrozenClassifier(module, 3)
    module.train()  # the caller uses the module elsewhere, in training mode
    x = torch.randn(5, 4)
    a, b = frozen.raw(x), frozen.raw(x)
    assert torch.equal(a, b), "dropout was active during a frozen call"
    assert all(m.training for m in module.modules()), "the caller's training flags were not restored"
    module.eval()
    frozen.raw(x)
    assert not any(m.training for m in module.modules())


def test_nan_logits_from_finite_inputs_blame_the_weights():
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        module[1].weight[0, 0] = float("nan")
    with pytest.raises(CoupledError, match="on finite inputs; its weights"):
        FrozenClassifier(module, 3).raw(torch.ones(2, 4))
