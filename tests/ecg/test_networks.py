"""The ECG networks keep the denoisers' contracts: shapes, zero output untrained, per-item results, config round trip."""

import pytest
import torch

from coupled.domains.registry import get_domain
from coupled.errors import CoupledError

L = 2500


@pytest.mark.parametrize("role", ["classifier", "signal", "logits"])
def test_each_role_builds_from_its_config_and_round_trips(role):
    dom = get_domain("ecg")
    net = dom.build_network(role, None, {"num_classes": 3})
    again = dom.build_network(role, dom.arch_of(role, net), net.cfg.to_dict())
    assert again.cfg == net.cfg and dom.signal_shape(net) == (1, L)
    with pytest.raises(CoupledError, match="unknown .* option"):
        dom.build_network(role, None, {"num_classes": 3, "widht": 3})


def test_shapes_zero_init_and_batch_independence():
    dom = get_domain("ecg")
    torch.manual_seed(0)
    sig, lg, cls = (dom.build_network(r, None, {"num_classes": 3}) for r in ("signal", "logits", "classifier"))
    x, d, t = torch.randn(3, 1, L), torch.randn(3, 1, L), torch.rand(3)
    y, e = torch.randn(3, 3), torch.randn(3, 3)
    assert torch.equal(sig(x, t, observation=d), torch.zeros(3, 1, L))
    assert torch.equal(lg(y, t, evidence=e, signal=x), torch.zeros(3, 3))
    for p in (*sig.parameters(), *lg.parameters()):  # a trained-looking net: not zero any more
        p.data.add_(0.01 * torch.randn_like(p))
    cls.eval()
    full = sig(x, t, observation=d, logits=y, logits_mask=torch.tensor([True, False, True]))
    one = sig(x[1:2], t[1:2], observation=d[1:2], logits=None)
    assert full.shape == (3, 1, L) and torch.allclose(full[1:2], one, atol=1e-5)
    assert torch.allclose(lg(y, t, evidence=e, signal=x)[2:], lg(y[2:], t[2:], evidence=e[2:], signal=x[2:]), atol=1e-5)
    assert cls(x).shape == (3, 3) and torch.allclose(cls(x)[:1], cls(x[:1]), atol=1e-5)
    with pytest.raises(CoupledError, match=r"must have shape \[2, 1, 2500\]"):
        sig(x[:2, :, :100], t[:2], observation=d[:2])
