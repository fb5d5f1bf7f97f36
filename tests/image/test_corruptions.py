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


# ---------------------------------------------------------------------------------------------- issue 20
# occlusion / occlusion_noise (severity: the box side in pixels) and downsample (severity: the factor)
NEW = {"occlusion": 9, "occlusion_noise": 9, "downsample": 3.5}


@pytest.mark.parametrize("name, severity", NEW.items())
def test_new_corruptions_seeded_per_item_and_independent_of_batching(name, severity):
    x = _images(n=10, c=1, h=28, w=28).double()  # float64 in, float32 out
    whole = C.corrupt(x, name, severity, seed=7)
    assert whole.dtype == torch.float32 and whole.shape == x.shape
    assert torch.equal(whole, C.corrupt(x, name, severity, seed=7))
    split = torch.cat([C.corrupt(x[:4], name, severity, seed=7), C.corrupt(x[4:], name, severity, seed=7, first_index=4)])
    assert torch.equal(whole, split)
    fn = C.get_corruption(name)
    assert torch.equal(fn(x, severity, torch.Generator().manual_seed(3)), fn(x, severity, torch.Generator().manual_seed(3)))
    if name != "downsample":  # the box's position (and fill) come from the item's generator
        assert not torch.equal(whole, C.corrupt(x, name, severity, seed=8))
        assert not torch.equal(whole[1], C.corrupt(x[1:2], name, severity, seed=7)[0])
        # each item draws its own position: not all boxes in one place
        moved = (whole != x.float()).flatten(1).float().argmax(1)
        assert len(set(moved.tolist())) > 1


@pytest.mark.parametrize("name", ["occlusion", "occlusion_noise"])
@pytest.mark.parametrize("h, w, side", [(28, 28, 0), (28, 28, 1), (28, 28, 7), (28, 28, 20), (28, 28, 28), (12, 20, 12)])
def test_occlusion_box_inside_the_image_and_of_the_requested_size(name, h, w, side):
    ones = torch.ones(300, 2, h, w)
    y = C.get_corruption(name)(ones, side, torch.Generator().manual_seed(0))
    assert y.shape == ones.shape and y.dtype == torch.float32
    changed = y != 1
    assert torch.equal(changed.all(dim=1), changed.any(dim=1))  # a box covers all channels
    mask = changed[:, 0]
    assert (mask.flatten(1).sum(1) == side * side).all()  # the whole box is inside the image: no pixel is cut off
    if side == 0:
        return
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    assert (rows.sum(1) == side).all() and (cols.sum(1) == side).all()  # a square: side rows by side columns
    top, left = rows.float().argmax(1), cols.float().argmax(1)
    # every position where the box fits is drawn, the last one included
    assert set(top.tolist()) == set(range(h - side + 1)) and set(left.tolist()) == set(range(w - side + 1))
    inside = y[changed]
    if name == "occlusion":
        assert (inside == -1).all()  # the background
    else:
        assert inside.min() >= -1 and inside.max() < 1 and abs(inside.mean().item()) < 0.1
        assert inside.min() < -0.9 and inside.max() > 0.9  # uniform over [-1, 1], not a constant


def test_occlusion_noise_fills_the_box_occlusion_blanks():
    x = _images(n=6, c=1, h=28, w=28)
    a = C.occlusion(x, 10, torch.Generator().manual_seed(5))
    b = C.occlusion_noise(x, 10, torch.Generator().manual_seed(5))
    box = a != x
    assert torch.equal(a[~box], b[~box]) and not torch.equal(a[box], b[box])
    assert torch.equal(C.occlusion(x, 28, torch.Generator()), torch.full_like(x, -1.0))
    assert torch.equal(C.occlusion(x, 0, torch.Generator()), x)


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.0, 3.3, 4.0, 7.0, 13.0, 28.0])
def test_downsample_keeps_a_constant_image(factor):
    const = torch.full((2, 3, 28, 28), -0.37)
    y = C.downsample(const, factor)
    assert y.shape == const.shape and torch.allclose(y, const, atol=1e-6)


def test_downsample_identity_checkerboard_blocks_and_whole_image():
    x = _images(n=4, c=2, h=28, w=28)
    assert torch.equal(C.downsample(x, 1.0), x)
    assert torch.equal(C.downsample(x, 1.01), x)  # round(28 / 1.01) = 28: nothing averaged
    board = ((torch.arange(28)[:, None] + torch.arange(28)) % 2 * 2 - 1).float().expand(1, 1, 28, 28)
    assert C.downsample(board, 2.0).abs().max().item() < 1e-6  # every 2 x 2 block averages to 0
    assert C.downsample(board, 1.0).abs().min().item() == 1
    # factor 4: 7 x 7 blocks of 4 x 4 pixels, each its own block's mean
    y = C.downsample(x, 4.0)
    means = x.unfold(2, 4, 4).unfold(3, 4, 4).mean(dim=(-1, -2))
    assert torch.allclose(y, means.repeat_interleave(4, 2).repeat_interleave(4, 3), atol=1e-6)
    # the whole image's side: one pixel, the image's mean
    assert torch.allclose(C.downsample(x, 28.0), x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-6)
    # round(28 / f) pixels per side: 28 / 3.5 = 8 blocks, so 8 distinct values per row of an image of distinct columns
    ramp = torch.arange(28.0).div(27).mul(2).sub(1).expand(1, 1, 28, 28)
    assert C.downsample(ramp, 3.5)[0, 0, 0].unique().numel() == 8
    assert C.downsample(ramp, 3.2)[0, 0, 0].unique().numel() == 9  # 8.75 rounds to 9


def test_damage_grows_with_box_side_and_factor():
    x = _images(n=32, c=1, h=28, w=28)
    for name, levels in (("occlusion", [0, 4, 8, 14, 20, 28]), ("occlusion_noise", [0, 4, 8, 14, 20, 28]),
                         ("downsample", [1.0, 2.0, 4.0, 7.0, 14.0])):
        mse = [((C.corrupt(x, name, s, seed=0) - x) ** 2).mean().item() for s in levels]
        assert mse[0] == 0.0 and all(a < b for a, b in zip(mse, mse[1:])), (name, mse)


def test_new_corruptions_severity_errors():
    x = _images(n=2, c=1, h=28, w=28)
    for name in ("occlusion", "occlusion_noise"):
        assert ">= 0" in _one_line_error(C.corrupt, x, name, -1, seed=0)
        assert "at most the image side 28" in _one_line_error(C.corrupt, x, name, 29, seed=0)
        assert "at most the image side 12" in _one_line_error(C.get_corruption(name), x[..., :12, :], 13, torch.Generator())
        assert "finite number" in _one_line_error(C.corrupt, x, name, float("nan"), seed=0)
    assert ">= 1" in _one_line_error(C.corrupt, x, "downsample", 0.5, seed=0)
    assert ">= 0" in _one_line_error(C.corrupt, x, "downsample", -2.0, seed=0)
    assert "at most the image side 28" in _one_line_error(C.corrupt, x, "downsample", 28.5, seed=0)
    assert "finite number" in _one_line_error(C.corrupt, x, "downsample", float("nan"), seed=0)
    assert "finite number" in _one_line_error(C.downsample, x, float("inf"))
