"""`coupled classify` on inputs saved the ways users save digits: ink in a PNG's alpha channel, a .npy batch,
dark ink on white. Each is read as the digit it shows, or refused in one line."""

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import BUNDLE, one_line_error

pytestmark = pytest.mark.skipif(not (BUNDLE / "pipeline.json").is_file(), reason="bundled models not built")


@pytest.fixture(scope="module")
def digits():
    from coupled.domains.image.data import load_mnist5k

    test = load_mnist5k()["test"]
    return ((test.signals[:5, 0].numpy() + 1) * 127.5).round().astype(np.uint8)  # light ink on black, 0..255


def _classify(cli, *argv, method="noisy"):
    code, out, err = cli("classify", *argv, "--checkpoint", BUNDLE, "--method", method)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("# file\tclass\tp = "), lines[0]  # the header says what p is
    return [line.split("\t") for line in lines[1:]], err


@pytest.mark.parametrize("method, words", [
    ("noisy", "the frozen classifier's softmax probability on the input itself"),
    ("sequential", "the frozen classifier's softmax probability on the enhanced input x_hat"),
    ("sequential_ensemble", "softmax probabilities on the K enhanced trajectories, averaged"),
    ("logits_only", "the softmax of the logit chain's final logits y_hat"),
])
def test_the_header_says_what_p_is(cli, tmp_path, digits, method, words):
    np.save(tmp_path / "d.npy", digits[0])
    code, out, err = cli("classify", tmp_path / "d.npy", "--checkpoint", BUNDLE, "--method", method, "--seed", "3")
    assert code == 0, err
    header = out.splitlines()[0]
    assert header.startswith("# file\tclass\tp = ") and words in header and f"({method}, seed 3)" in header


@pytest.mark.parametrize("corrupt", [[], ["--corruption", "pixel_noise", "--severity", "0.5"]])
def test_reordering_the_files_changes_no_answer(cli, tmp_path, digits, corrupt):
    """Each file's draws (sampling, and --corruption's) come from the seed and the image, not its position:
    reversing or shuffling the files gives every file the same line."""
    from coupled.domains.image.corruptions import corrupt as corrupt_images

    noisy = corrupt_images(torch.as_tensor(digits[:, None] / 127.5 - 1, dtype=torch.float32), "pixel_noise", 0.6, 12345)
    files = []
    for i, image in enumerate(noisy[:, 0].numpy()):
        Image.fromarray(((image.clip(-1, 1) + 1) * 127.5).round().astype(np.uint8), "L").save(tmp_path / f"n{i}.png")
        files.append(tmp_path / f"n{i}.png")
    lines = {}
    for order in (files, files[::-1], [files[i] for i in (2, 4, 0, 3, 1)]):
        rows, _ = _classify(cli, *order, *corrupt, method="sequential")
        assert [r[0] for r in rows] == [str(f) for f in order]
        for name, *rest in rows:
            assert lines.setdefault(name, rest) == rest, f"{name} changed with the order of the files"


def test_rgba_png_with_the_ink_in_the_alpha_channel_reads_as_the_digit(cli, tmp_path, digits):
    Image.fromarray(digits[0], "L").save(tmp_path / "grey.png")
    for name, colour in (("black_ink.png", 0), ("white_ink.png", 255)):  # one colour, the strokes in alpha
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., :3], rgba[..., 3] = colour, digits[0]
        Image.fromarray(rgba, "RGBA").save(tmp_path / name)
    rows, _ = _classify(cli, tmp_path / "grey.png", tmp_path / "black_ink.png", tmp_path / "white_ink.png")
    assert rows[0][1:] == rows[1][1:] == rows[2][1:]


def test_npy_batch_classifies_each_item(cli, tmp_path, digits):
    np.save(tmp_path / "batch.npy", digits)  # (5, 28, 28) uint8
    singles = []
    for i, digit in enumerate(digits):
        np.save(tmp_path / f"d{i}.npy", digit)
        singles.append(tmp_path / f"d{i}.npy")
    rows, _ = _classify(cli, tmp_path / "batch.npy")
    single_rows, _ = _classify(cli, *singles)
    assert [r[0] for r in rows] == [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(5)]
    assert [r[1:] for r in rows] == [r[1:] for r in single_rows]


def test_dark_ink_on_white_is_inverted_and_said(cli, tmp_path, digits):
    Image.fromarray(digits[1], "L").save(tmp_path / "light_on_dark.png")
    Image.fromarray(255 - digits[1], "L").save(tmp_path / "dark_on_light.png")
    rows, err = _classify(cli, tmp_path / "light_on_dark.png", tmp_path / "dark_on_light.png")
    assert rows[0][1:] == rows[1][1:]
    assert "dark_on_light.png: light border" in err and "--polarity as-is" in err and "light_on_dark" not in err
    _, err = _classify(cli, tmp_path / "dark_on_light.png", "--polarity", "as-is")
    assert "light border" not in err
    inverted, _ = _classify(cli, tmp_path / "light_on_dark.png", "--polarity", "invert")
    as_is, _ = _classify(cli, tmp_path / "dark_on_light.png", "--polarity", "as-is")
    assert inverted[0][1:] == as_is[0][1:]


@pytest.mark.parametrize("shape, message", [((0, 28, 28), "shape (0, 28, 28)"), ((5, 27, 28), "shape (5, 27, 28)"),
                                            ((2, 5, 28, 28), "shape (2, 5, 28, 28)")])
def test_npy_that_is_no_image_or_batch_is_refused(cli, tmp_path, shape, message):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    code, out, err = cli("classify", tmp_path / "x.npy", "--checkpoint", BUNDLE, "--method", "noisy")
    one_line_error(code, err)
    assert message in out and "batch (N, 1, 28, 28)" in out
