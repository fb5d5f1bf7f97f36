"""The domain registry: the built-in domains register themselves, old import paths keep working, and each
built-in answers the interface the generic code asks of it."""

import pytest
import torch

from coupled.domains.registry import Domain, domain_names, get_domain, register_domain
from coupled.errors import CoupledError


def test_builtin_domains_are_registered_in_order():
    assert domain_names()[:4] == ["image", "speech", "gaussian", "gmm"]
    assert domain_names("demo")[:3] == ["image", "speech", "gaussian"] and "speech" in domain_names("data")
    with pytest.raises(CoupledError, match=r"^unknown domain 'sonar'; valid: image, speech, gaussian"):
        get_domain("sonar")
    with pytest.raises(CoupledError, match="already registered"):
        register_domain(type(get_domain("image"))())
    with pytest.raises(CoupledError, match="takes a coupled.domains.registry.Domain"):
        register_domain(object())


def test_image_domain_answers_the_interface():
    image = get_domain()
    assert image.name == "image" and get_domain("image") is image
    net = image.build_network("classifier", None, {"width": 8})
    assert image.arch_of("classifier", net) == "digit_cnn"
    with pytest.raises(CoupledError, match="valid: digit_cnn"):
        image.build_network("classifier", "resnet")
    with pytest.raises(CoupledError, match="valid: classifier, signal, logits"):
        image.build_network("vocoder")
    assert set(image.signal_metrics) == {"psnr", "ssim"}
    assert image.readout(torch.tensor([[0.1, 2.0, -1.0]])).tolist() == [1]
    assert image.task_score("digits", [1, 2], [1, 3]) == 0.5
    with pytest.raises(CoupledError, match="already registered"):
        image.corruptions.register("pixel_noise", lambda x, s, g: x)
    x = torch.zeros(2, 1, 28, 28)
    from coupled.domains.image.corruptions import corrupt

    assert torch.equal(image.corrupt_set(x, "pixel_noise", 0.3, 5), corrupt(x, "pixel_noise", 0.3, 5))
    assert image.example_panel(x[0]).shape == (28, 28)
    with pytest.raises(CoupledError, match="no `coupled data`"):
        image.check_command("data")


def test_the_speech_domain_is_registered():
    assert isinstance(get_domain("speech"), Domain) and get_domain("speech").task_metric("digits") == "wer"

def test_a_signal_net_is_clipped_to_the_range_its_training_recorded():
    from torch import nn

    from coupled.bundle import wrap_denoiser

    class Echo(nn.Module):  # predicts x0 = x_t
        def forward(self, x_t, t):
            return x_t

    meta = {"process": {"kind": "vp", "num_train_steps": 10, "schedule": "cosine"}, "prediction": "x0"}
    x = torch.full((1, 4), 3.0)
    assert wrap_denoiser("signal", Echo(), meta)(x, torch.tensor(0.5)).max() == 1.0  # bundles that record none
    assert wrap_denoiser("signal", Echo(), {**meta, "clip": None})(x, torch.tensor(0.5)).max() == 3.0
    assert get_domain("speech").signal_range is None and get_domain("image").signal_range == (-1.0, 1.0)


def test_the_network_contracts_example_in_docs_runs_in_the_engine():
    """docs/domains.md's minimal signal and logit networks, as the engine calls them: every method runs."""
    import re
    from dataclasses import asdict, dataclass
    from pathlib import Path

    from torch import nn

    from coupled.engine import (METHODS, CentredProcess, Chain, Coupling, Denoiser, FrozenClassifier, VPProcess,
                                item_generators, run_method)

    text = (Path(__file__).parents[1] / "docs" / "domains.md").read_text()
    block = re.search(r"## The networks' contracts.*?```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "docs/domains.md", "exec"), scope)

    @dataclass
    class Cfg:
        length: int = 6
        num_classes: int = 3

        def to_dict(self):
            return asdict(self)

    torch.manual_seed(0)
    vp, centred = VPProcess(num_train_steps=50), CentredProcess()
    coupling = Coupling(FrozenClassifier(nn.Linear(6, 3), num_classes=3),
                        Denoiser(scope["SignalNet"](Cfg()), vp, "eps"),
                        Denoiser(scope["LogitNet"](Cfg()), centred, "x0", pass_center=True),
                        Chain(vp, 2), Chain(centred, 2, sampler="pc"))
    d = torch.randn(4, 6)
    for method in METHODS:
        res = run_method(method, coupling, d, item_generators(range(4)))
        assert res.classifier_logits.shape == (4, 3) and (res.y_hat is None or res.y_hat.shape == (4, 3))
