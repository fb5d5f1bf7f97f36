import math

import pytest
import torch

from coupled.domains.image import corruptions as C
from coupled.errors import CoupledError

BUILTINS = ["pixel_noise", "gaussian_noise", "gaussian_blur"]


def _images(n=8, c=3, h=32, w=32, seed=0):
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def invert_corruption(images, severity, generator):
    """A user corruption named from a config as 'module:function'."""
    return -images * severity


@pytest.fixture
def user_corruption():
    name = "test_user_shift"

    @C.register_corruption(name)
    def shift(images, severity, generator):
        return images + severity * torch.rand(images.shape[:2] + (1, 1), generator=generator)

    yield name
    C.CORRUPTIONS.pop(name, None)


@pytest.mark.parametrize("name", BUILTINS)
def test_corrupt_deterministic_per_seed(name):
    x = _images()
    a, b = C.corrupt(x, name, 0.5, seed=1), C.corrupt(x, name, 0.5, seed=1)
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b)
    if name != "gaussian_blur":  # blur draws no randomness
        assert not torch.equal(a, C.corrupt(x, name, 0.5, seed=2))


@pytest.mark.parametrize("name", BUILTINS)
def test_corruption_deterministic_per_generator_state(name):
    x = _images(n=2)
    fn = C.get_corruption(name)
    assert torch.equal(fn(x, 0.4, torch.Generator().manual_seed(3)), fn(x, 0.4, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", BUILTINS)
def test_corrupt_independent_of_batching(name):
    x = _images(n=10, h=16, w=16)
    whole = C.corrupt(x, name, 0.3, seed=7)
    split = torch.cat([C.corrupt(x[:4], name, 0.3, seed=7), C.corrupt(x[4:], name, 0.3, seed=7, first_index=4)])
    assert torch.equal(whole, split)
    # The global index, not the position in the call, picks an item's noise.
    if name != "gaussian_blur":
        assert not torch.equal(whole[1], C.corrupt(x[1:2], name, 0.3, seed=7)[0])


@pytest.mark.parametrize("name", BUILTINS)
def test_damage_grows_with_severity(name):
    x = _images(n=16)
    levels = sorted(C.DEFAULT_SEVERITIES[name].values())
    mse = [((C.corrupt(x, name, s, seed=0) - x) ** 2).mean().item() for s in [0.0] + levels]
    assert mse[0] == 0.0
    assert all(a < b for a, b in zip(mse, mse[1:])), mse


def test_pixel_noise_fraction_and_untouched_pixels():
    x = _images(n=64, h=64, w=64)
    for p in (0.15, 0.5):
        y = C.pixel_noise(x, p, torch.Generator().manual_seed(0))
        changed = (y != x).any(dim=1)  # a location is replaced in all channels at once
        assert abs(changed.float().mean().item() - p) < 0.02
        assert torch.equal((y != x).all(dim=1), changed)
        assert torch.equal(y.permute(0, 2, 3, 1)[~changed], x.permute(0, 2, 3, 1)[~changed])
        # Replacements are N(0, 1), not clamped to [-1, 1].
        vals = y.permute(0, 2, 3, 1)[changed]
        assert abs(vals.std().item() - 1) < 0.02 and vals.abs().max() > 1


def test_blur_keeps_constant_and_covers_three_sigma():
    const = torch.full((2, 3, 24, 24), 0.37)
    assert torch.allclose(C.gaussian_blur(const, 2.0, None), const, atol=1e-6)
    x = _images(n=2)
    assert torch.equal(C.gaussian_blur(x, 0.0, None), x)
    for sigma in (1.0, 1.5):
        r, c = math.ceil(3 * sigma), 20
        delta = torch.zeros(1, 1, 41, 41)
        delta[..., c, c] = 1.0
        y = C.gaussian_blur(delta, sigma, None)[0, 0]
        assert y.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert y[c, c + math.floor(3 * sigma)] > 0 and y[c + r, c] > 0
        assert y[c, c + r + 1] == 0 and y[c + r + 1, c] == 0 and y[c + r + 1, c + r + 1] == 0


def test_gaussian_noise_std():
    x = _images(n=16)
    for sigma in (0.3, 0.8):
        d = C.gaussian_noise(x, sigma, torch.Generator().manual_seed(0)) - x
        assert d.std().item() == pytest.approx(sigma, rel=0.02)
        assert abs(d.mean().item()) < 0.01


def test_user_registered_corruption(user_corruption):
    x = _images(n=4)
    fn = C.get_corruption(user_corruption)
    assert C.corruption_from_config(user_corruption) is fn
    y = C.corrupt(x, user_corruption, 0.5, seed=0)
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.equal(y, C.corrupt(x, user_corruption, 0.5, seed=0))
    with pytest.raises(CoupledError, match="already registered"):
        C.register_corruption(user_corruption)(fn)
    C.register_corruption(user_corruption, overwrite=True)(C.gaussian_noise)
    assert C.get_corruption(user_corruption) is C.gaussian_noise


def test_module_function_spec():
    spec = f"{__name__}:invert_corruption"
    assert C.corruption_from_config(spec) is invert_corruption
    x = _images(n=3)
    assert torch.equal(C.corrupt(x, spec, 1.0, seed=0), -x)
    with pytest.raises(CoupledError, match="cannot import module"):
        C.corruption_from_config("no_such_module_xyz:f")
    with pytest.raises(CoupledError, match="no attribute"):
        C.corruption_from_config(f"{__name__}:no_such_function")


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(CoupledError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_errors():
    x = _images(n=2)
    msg = _one_line_error(C.get_corruption, "pixel_nosie")
    assert "unknown corruption 'pixel_nosie'" in msg and all(n in msg for n in BUILTINS)
    assert all(n in _one_line_error(C.corrupt, x, "pixel_nosie", 0.1, seed=0) for n in BUILTINS)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert "images contain NaN" in _one_line_error(C.corrupt, bad, "gaussian_noise", 0.1, seed=0)
    assert ">= 0" in _one_line_error(C.corrupt, x, "gaussian_blur", -1.0, seed=0)
    assert "<= 1" in _one_line_error(C.corrupt, x, "pixel_noise", 1.5, seed=0)
    assert "<= 1" in _one_line_error(C.pixel_noise, x, 1.5, torch.Generator())
    _one_line_error(C.corrupt, x, "gaussian_noise", float("inf"), seed=0)
    _one_line_error(C.corrupt, x[0], "gaussian_noise", 0.1, seed=0)
    _one_line_error(C.corrupt, x, "gaussian_noise", 0.1, seed=-1)
    _one_line_error(C.gaussian_blur, torch.zeros(1, 1, 8, 8), 3.0, None)  # radius 9 > image
    # a huge sigma (--set corruptions.severities.gaussian_blur.heavy=1e308) is the same one line, not an OverflowError
    assert "at most 2.33" in _one_line_error(C.gaussian_blur, torch.zeros(1, 1, 8, 8), 1e308, None)
    assert torch.isfinite(C.gaussian_blur(torch.zeros(1, 1, 8, 8), 7 / 3, None)).all()  # radius 7: the largest an 8x8 image takes
