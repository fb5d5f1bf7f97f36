"""Shapes, configs, conditioning paths, batch independence and trainability of the image-domain networks."""

import json

import pytest
import torch

from coupled.domains.image.networks import (
    ClassifierConfig,
    DigitClassifier,
    LogitNet,
    LogitNetConfig,
    SignalUNet,
    SignalUNetConfig,
    count_parameters,
)
from coupled.errors import CoupledError

B, K = 5, 10
# small widths keep the suite fast; the structure (levels, odd 7x7 bottom) is that of the default
SMALL_UNET = SignalUNetConfig(channels=(8, 16), time_dim=32)
SMALL_LOGIT = LogitNetConfig(hidden=32, feature_dim=8, time_dim=16, encoder_channels=(4, 8))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _inputs(batch=B, size=28, channels=1):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, channels, size, size, generator=g) * 2 - 1
    obs = torch.rand(batch, channels, size, size, generator=g) * 2 - 1
    t = torch.rand(batch, generator=g)
    logits = torch.randn(batch, K, generator=g) * 3
    return x, obs, t, logits


def _perturb_zero_init(net):
    """Give the zero-initialised output layers random weights, so outputs depend on every input."""
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    return net


# ----------------------------------------------------------------------------------------------- shapes


def test_output_shapes():
    x, obs, t, logits = _inputs()
    assert DigitClassifier().eval()(x).shape == (B, K)
    assert SignalUNet(SMALL_UNET)(x, t, obs, logits).shape == x.shape
    assert SignalUNet(SMALL_UNET)(x, t, obs, None).shape == x.shape
    net = LogitNet(SMALL_LOGIT)
    assert net(logits, t, logits, x).shape == (B, K)
    assert net(logits, t, logits, None).shape == (B, K)
    assert LogitNet(LogitNetConfig(use_features=False, hidden=32))(logits, t, logits, x).shape == (B, K)


def test_default_configs_and_other_sizes_build_and_run():
    x, obs, t, logits = _inputs(batch=2)
    for net in (SignalUNet(), LogitNet(), DigitClassifier()):
        assert count_parameters(net) > 0
    assert SignalUNet()(x, t, obs, logits).shape == x.shape
    # odd sizes at every level (27 -> 14 -> 7 -> 4) and RGB inputs
    cfg = SignalUNetConfig(in_channels=3, image_size=27, channels=(8, 8, 16), time_dim=16)
    x3, o3, t3, _ = _inputs(batch=2, size=27, channels=3)
    assert SignalUNet(cfg)(x3, t3, o3).shape == x3.shape
    assert DigitClassifier(ClassifierConfig(in_channels=3, image_size=27, width=8))(x3).shape == (2, K)


def test_zero_initialised_unet_outputs_zero_and_scalar_time_broadcasts():
    x, obs, t, logits = _inputs()
    net = SignalUNet(SMALL_UNET)
    assert torch.equal(net(x, t, obs, logits), torch.zeros_like(x))
    _perturb_zero_init(net)
    assert torch.allclose(net(x, torch.tensor(0.3), obs), net(x, torch.full((B,), 0.3), obs))


def test_count_parameters():
    net = torch.nn.Linear(3, 4)
    assert count_parameters(net) == 16
    net.bias.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 12


# ----------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("cls", [ClassifierConfig, SignalUNetConfig, LogitNetConfig])
def test_config_round_trip(cls):
    cfg = cls()
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(CoupledError) as err:
        cls.from_dict({**cfg.to_dict(), "bogus": 1})
    msg = str(err.value)
    assert "\n" not in msg and "bogus" in msg and "num_classes" in msg


def test_config_round_trip_keeps_non_defaults():
    cfg = SignalUNetConfig(channels=[8, 16, 32], dropout=0.1)
    assert cfg.channels == (8, 16, 32)
    assert SignalUNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "make",
    [
        lambda: SignalUNetConfig(channels=()),
        lambda: SignalUNetConfig(channels=(8, 0)),
        lambda: SignalUNetConfig(time_dim=31),
        lambda: SignalUNetConfig(image_size=3, channels=(8, 8)),
        lambda: LogitNetConfig(dropout=1.0),
        lambda: ClassifierConfig(width=0),
        # a field of the wrong type fails when the config is made, not at the first forward pass (issue 17)
        lambda: SignalUNetConfig(time_scale="abc"),
        lambda: LogitNetConfig(use_center="maybe"),
        lambda: LogitNetConfig(time_scale=float("inf")),
        lambda: SignalUNetConfig(dropout="0.1"),
    ],
)
def test_bad_config_values_are_rejected(make):
    with pytest.raises(CoupledError):
        make()


def test_wrong_input_shapes_and_kwargs_are_rejected():
    """Each bad input is refused by its own check, with the one line that names it (not by another check)."""
    x, obs, t, logits = _inputs()
    net = SignalUNet(SMALL_UNET)
    with pytest.raises(CoupledError, match=r"^observation must have shape \[5, 1, 28, 28\], got \[5, 1, 14, 28\]$"):
        net(x, t, obs[:, :, :14], logits)
    with pytest.raises(CoupledError, match=r"^logits must have shape \[5, 10\], got \[5, 3\]$"):
        net(x, t, obs, logits[:, :3])
    with pytest.raises(CoupledError, match=r"^logits_mask must be a bool tensor \(True = use the logits\), got torch\.float32$"):
        net(x, t, obs, logits, logits_mask=torch.ones(B))  # not bool
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'observation'$"):
        LogitNet(SMALL_LOGIT)(logits, t, logits, x, observation=x)


# ----------------------------------------------------------------------------------------------- conditioning


def test_null_token_differs_from_logits_and_mask_mixes_per_item():
    x, obs, t, logits = _inputs()
    net = _perturb_zero_init(SignalUNet(SMALL_UNET)).eval()
    with torch.no_grad():
        net.null_logits.normal_()
        given = net(x, t, obs, logits)
        null = net(x, t, obs, None)
        assert not torch.allclose(given, null, atol=1e-4)
        mask = torch.tensor([True, False, True, False, False])
        mixed = net(x, t, obs, logits, logits_mask=mask)
    torch.testing.assert_close(mixed[mask], given[mask], rtol=0, atol=1e-5)
    torch.testing.assert_close(mixed[~mask], null[~mask], rtol=0, atol=1e-5)
    with torch.no_grad():
        all_true = net(x, t, obs, logits, logits_mask=torch.ones(B, dtype=torch.bool))
    torch.testing.assert_close(all_true, given, rtol=0, atol=1e-6)


def test_logit_net_uses_features_of_the_signal():
    x, _, t, logits = _inputs()
    net = _perturb_zero_init(LogitNet(SMALL_LOGIT)).eval()
    with torch.no_grad():
        assert not torch.allclose(net(logits, t, logits, x), net(logits, t, logits, None))
        blind = _perturb_zero_init(LogitNet(LogitNetConfig(use_features=False, hidden=32))).eval()
        torch.testing.assert_close(blind(logits, t, logits, x), blind(logits, t, logits, None))


# ----------------------------------------------------------------------------------------------- batch independence


def test_batch_independence_in_eval_mode():
    x, obs, t, logits = _inputs()
    mask = torch.tensor([True, False, True, True, False])
    unet = _perturb_zero_init(SignalUNet(SMALL_UNET)).eval()
    lnet = _perturb_zero_init(LogitNet(SMALL_LOGIT)).eval()
    clf = DigitClassifier().eval()
    calls = [
        lambda s: unet(x[s], t[s], obs[s], logits[s]),
        lambda s: unet(x[s], t[s], obs[s], None),
        lambda s: unet(x[s], t[s], obs[s], logits[s], logits_mask=mask[s]),
        lambda s: lnet(logits[s], t[s], logits[s], x[s]),
        lambda s: clf(x[s]),
    ]
    with torch.no_grad():
        for call in calls:
            torch.testing.assert_close(call(slice(0, 1)), call(slice(0, B))[:1], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------- trainability


def _grads_reach_everything(net, loss):
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reached {missing}"


def test_zero_initialised_output_layers_get_gradient():
    x, obs, t, logits = _inputs()
    unet, lnet = SignalUNet(SMALL_UNET), LogitNet(SMALL_LOGIT)
    (unet(x, t, obs, logits) - x).pow(2).mean().backward()
    (lnet(logits, t, logits, x) - logits).pow(2).mean().backward()
    assert unet.conv_out.weight.grad.abs().sum() > 0 and unet.conv_out.bias.grad.abs().sum() > 0
    assert lnet.out[-1].weight.grad.abs().sum() > 0 and lnet.out[-1].bias.grad.abs().sum() > 0


def test_gradients_reach_every_parameter():
    x, obs, t, logits = _inputs()
    unet = _perturb_zero_init(SignalUNet(SMALL_UNET)).train()
    mask = torch.tensor([True, False, True, False, True])  # both the logit MLP and the null token are used
    _grads_reach_everything(unet, (unet(x, t, obs, logits, logits_mask=mask) - x).pow(2).mean())
    lnet = _perturb_zero_init(LogitNet(SMALL_LOGIT)).train()
    _grads_reach_everything(lnet, (lnet(logits, t, logits, x) - logits).pow(2).mean())


def test_classifier_overfits_random_images():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, K, (64,), generator=g)
    net = DigitClassifier().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
