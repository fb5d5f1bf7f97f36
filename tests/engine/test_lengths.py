"""Variable-length batches through the engine: every method, run on a zero-padded batch with `lengths`, gives
each item exactly what it gets alone (its x_hat, y_hat and classifier logits over its valid extent, zeros
past it), with per-item generators; the noise of an item does not depend on the padding its batch adds."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from coupled.engine import (
    METHODS, CentredProcess, Chain, Coupling, Denoiser, FrozenClassifier, VPProcess, item_generators, run_method,
)
from coupled.engine.processes import MaskedNoise, randn
from coupled.errors import CoupledError

K = 4


def _mask(x, lengths):
    return (torch.arange(x.shape[-1])[None] < lengths[:, None]).to(x.dtype).view(x.shape[0], *[1] * (x.dim() - 2), -1)


class FrameClassifier(nn.Module):
    """[B, C, T] -> frame logits [B, T // 2, K] (stride 2), masked: a padded item sees only its own samples."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, K, 3, padding=1)

    def output_lengths(self, lengths):
        return (lengths + 1) // 2

    def forward(self, x, lengths=None):
        if lengths is not None:
            x = x * _mask(x, lengths)
        return self.conv(x)[..., ::2].transpose(1, 2)


class SignalNet(nn.Module):
    """eps prediction from (x_t, d, per-frame logits upsampled) with a masked 1-D conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv1d(4 + K, 2, 3, padding=1)
        self.null = nn.Parameter(torch.randn(K))

    def forward(self, x_t, t, observation, logits=None, logits_mask=None, lengths=None):
        B, _, T = x_t.shape
        if logits is None:
            cond = self.null[None, :, None].expand(B, K, T)
        else:
            cond = logits.transpose(1, 2).repeat_interleave(2, dim=-1)[..., :T]
        h = torch.cat([x_t, observation, cond], 1)
        if lengths is not None:
            h = h * _mask(h, lengths)
        return self.conv(h) * (1 + t.view(-1, 1, 1))


class LogitNet(nn.Module):
    """x0 prediction over frames [B, F, K], from (y_t, evidence) with a masked temporal conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv1d(2 * K, K, 3, padding=1)

    def forward(self, y_t, t, evidence, signal=None, center=None, lengths=None, signal_lengths=None):
        h = torch.cat([y_t, evidence], -1).transpose(1, 2)
        if lengths is not None:
            h = h * _mask(h, lengths)
        return 0.5 * y_t + self.conv(h).transpose(1, 2)


def _coupling():
    vp = VPProcess(num_train_steps=100)
    return Coupling(
        classifier=FrozenClassifier(FrameClassifier(), num_classes=K),
        signal_denoiser=Denoiser(SignalNet(), vp, "eps"),
        logit_denoiser=Denoiser(LogitNet(), CentredProcess(), "x0", pass_center=True),
        signal_chain=Chain(vp, 3, sampler="ddim", eta=1.0),
        logit_chain=Chain(CentredProcess(), 3, sampler="pc"),
    )


LENGTHS = [5, 12, 9]


def _batch():
    g = torch.Generator().manual_seed(3)
    items = [torch.randn(2, n, generator=g) for n in LENGTHS]
    padded = torch.zeros(len(items), 2, max(LENGTHS))
    for i, x in enumerate(items):
        padded[i, :, : x.shape[-1]] = x
    return items, padded


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_padded_batch_gives_each_item_its_result_alone(method):
    coupling = _coupling()
    items, padded = _batch()
    seeds = [11, 22, 33]
    batch = run_method(method, coupling, padded, item_generators(seeds), lengths=torch.tensor(LENGTHS))
    for i, (x, n) in enumerate(zip(items, LENGTHS)):
        alone = run_method(method, coupling, x[None], item_generators([seeds[i]]), lengths=torch.tensor([n]))
        frames = (n + 1) // 2
        for name in ("x_hat", "y_hat"):
            got, want = getattr(batch, name), getattr(alone, name)
            if want is None:
                assert got is None
                continue
            valid = got[i, ..., :n] if name == "x_hat" else got[i, :frames]
            torch.testing.assert_close(valid, want[0], atol=1e-5, rtol=1e-4, msg=f"{method} {name} item {i}")
            rest = got[i, ..., n:] if name == "x_hat" else got[i, frames:]
            assert not rest.abs().any(), f"{method} {name}: padding of item {i} is not zero"
        torch.testing.assert_close(batch.classifier_logits[i, :frames], alone.classifier_logits[0], atol=1e-5, rtol=1e-4)
        assert not batch.classifier_logits[i, frames:].any(), f"{method} classifier logits: padding of item {i} is not zero"
        # the readout decodes each item's own frames: every method reports them
        assert int(batch.frame_lengths[i]) == frames, f"{method}: no frame lengths"


def test_the_padding_changes_results_without_lengths():
    """The test can fail: without lengths, the padded batch's answers differ from the items' own."""
    coupling = _coupling()
    items, padded = _batch()
    batch = run_method("parallel", coupling, padded, item_generators([11, 22, 33]))
    alone = run_method("parallel", coupling, items[0][None], item_generators([11]))
    assert not torch.allclose(batch.x_hat[0, :, :LENGTHS[0]], alone.x_hat[0], atol=1e-3)


def test_masked_noise_draws_each_item_as_alone():
    g = lambda s: [torch.Generator().manual_seed(s)]  # noqa: E731
    mask = torch.arange(7)[None] < torch.tensor([[4], [7]])
    noise = randn((2, 3, 7), MaskedNoise(g(5) + g(6), mask[:, None]))
    torch.testing.assert_close(noise[0, :, :4], randn((1, 3, 4), g(5))[0])
    torch.testing.assert_close(noise[1], randn((1, 3, 7), g(6))[0])
    assert not noise[0, :, 4:].any()


def test_bad_lengths_are_one_line_errors():
    coupling = _coupling()
    _, padded = _batch()
    gens = item_generators([1, 2, 3])
    with pytest.raises(CoupledError, match=r"lengths must lie in \[1, 12\]"):
        run_method("sequential", coupling, padded, gens, lengths=torch.tensor([5, 13, 9]))
    with pytest.raises(CoupledError, match="3 integers"):
        run_method("sequential", coupling, padded, gens, lengths=torch.tensor([5.0, 12.0, 9.0]))
    with pytest.raises(CoupledError, match="one generator per item"):
        run_method("sequential", coupling, padded, torch.Generator(), lengths=torch.tensor(LENGTHS))


def test_a_complex_state_is_refused_in_one_line():
    """float64 conversions would drop a complex state's imaginary part: the denoiser refuses it instead."""
    den = Denoiser(nn.Identity(), VPProcess(num_train_steps=100), "x0")
    x = torch.randn(2, 3, dtype=torch.complex64)
    with pytest.raises(CoupledError, match="real and imaginary parts of a spectrogram as two channels"):
        den(x, torch.tensor(0.5))
    with pytest.raises(CoupledError, match="diffusion state is complex"):
        den.loss(x, torch.tensor(0.5), torch.randn(2, 3))


@torch.no_grad()
def test_the_masked_training_loss_is_each_items_loss_alone():
    """`Denoiser.loss(mask=)`: the squared error averaged over valid elements only, x0_hat zero past each item's
    end; one item padded gives the loss it gives trimmed, and a padded batch the mean over its valid elements."""
    items, padded = _batch()
    lengths = torch.tensor(LENGTHS)
    mask = (torch.arange(padded.shape[-1])[None] < lengths[:, None])[:, None]
    den = Denoiser(SignalNet(), VPProcess(num_train_steps=100), "eps")
    t = torch.tensor([10.0, 50.0, 90.0])
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(padded.shape, generator=g) * mask
    loss, x0_hat = den.loss(padded, t, noise, mask=mask, observation=padded, lengths=lengths)
    errors, count = 0.0, 0
    for i, n in enumerate(LENGTHS):
        alone, _ = den.loss(items[i][None], t[i:i + 1], noise[i:i + 1, :, :n], observation=items[i][None],
                            lengths=torch.tensor([n]))
        wider, _ = den.loss(F.pad(items[i][None], (0, 4)), t[i:i + 1], F.pad(noise[i:i + 1, :, :n], (0, 4)),
                            mask=(torch.arange(n + 4) < n).view(1, 1, -1),
                            observation=F.pad(items[i][None], (0, 4)), lengths=torch.tensor([n]))
        torch.testing.assert_close(wider, alone)
        errors, count = errors + alone.item() * items[i].numel(), count + items[i].numel()
        assert not x0_hat[i, :, n:].any()
    torch.testing.assert_close(loss.item(), errors / count, rtol=1e-5, atol=1e-7)
    # without a mask: the plain MSE over every element (images)
    plain, _ = den.loss(padded, t, noise, observation=padded)
    want = (den.net(den.process.add_noise(padded, t, noise), den.process.network_time(t), observation=padded) - noise).square().mean()
    torch.testing.assert_close(plain, want)
