"""Image data loaders: each on tiny files written in the real on-disk format, plus the bundled MNIST-5k split."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from coupled.domains.image.data import (
    load_cifar,
    load_dataset,
    load_idx,
    load_image_folder,
    load_mnist5k,
    load_npz,
    stratified_split,
)
from coupled.domains.registry import LabelledSignals, check_num_classes
from coupled.errors import CoupledError

RNG = np.random.default_rng(0)


def one_line_error(fn, *args, match=None, **kwargs) -> str:
    """Call fn expecting a CoupledError with a one-line 'problem; fix' message; return the message."""
    with pytest.raises(CoupledError, match=match) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and ";" in msg, msg
    return msg


def check_pixels(data: LabelledSignals, shape):
    assert tuple(data.signals.shape) == shape
    assert data.signals.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.signals.min() >= -1 and data.signals.max() <= 1
    assert len(data) == shape[0]


def write_idx(path, array, magic, gz=False):
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_cifar(path, data, labels, label_key=b"labels", protocol=2):
    # Same layout as the official python-version batches (bytes keys, list labels, uint8 [N, 3072] data).
    batch = {b"batch_label": b"training batch 1 of 5", label_key: list(labels), b"data": data,
             b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return path


def planar(n, side=32):
    return RNG.integers(0, 256, size=(n, 3 * side * side), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_plain_and_gz(tmp_path, gz):
    pixels = RNG.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255
    labels = np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8)
    sfx = ".gz" if gz else ""
    data = load_idx(write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", pixels, 2051, gz),
                    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, 2049, gz))
    check_pixels(data, (6, 1, 28, 28))
    assert data.signals[0, 0, 0, 0] == -1 and data.signals[0, 0, 0, 1] == 1
    torch.testing.assert_close(data.signals[:, 0], torch.from_numpy(pixels).float() / 127.5 - 1)
    assert data.labels.tolist() == labels.tolist() and data.num_classes == 10
    assert data.name == "train-images-idx3-ubyte"


# ------------------------------------------------------------------------------------------------ CIFAR


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_single_batch(tmp_path, protocol):
    data = planar(5)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 0, 255, 0  # image 0 is pure green: planar R, G, B
    got = load_cifar(write_cifar(tmp_path / "data_batch_1", data, [3, 1, 4, 1, 5], protocol=protocol))
    check_pixels(got, (5, 3, 32, 32))
    assert got.signals[0, 0].eq(-1).all() and got.signals[0, 1].eq(1).all() and got.signals[0, 2].eq(-1).all()
    assert got.labels.tolist() == [3, 1, 4, 1, 5] and got.num_classes == 10 and got.name == "cifar10"


def test_cifar10_folder_train_and_test(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in (1, 2, 10):  # numeric, not lexicographic, order: 1, 2, 10
        write_cifar(folder / f"data_batch_{i}", planar(2), [i % 10, i % 10])
    write_cifar(folder / "test_batch", planar(3), [7, 8, 9])
    train = load_cifar(folder, split="train")
    check_pixels(train, (6, 3, 32, 32))
    assert train.labels.tolist() == [1, 1, 2, 2, 0, 0]
    assert load_cifar(tmp_path, split="test").labels.tolist() == [7, 8, 9]  # parent of the extracted folder


def test_cifar100_folder(tmp_path):
    write_cifar(tmp_path / "train", planar(4), [0, 99, 50, 2], label_key=b"fine_labels")
    write_cifar(tmp_path / "test", planar(2), [5, 6], label_key=b"fine_labels")
    train, test = load_cifar(tmp_path), load_cifar(tmp_path, split="test")
    check_pixels(train, (4, 3, 32, 32))
    assert train.labels.tolist() == [0, 99, 50, 2] and test.labels.tolist() == [5, 6]
    assert train.num_classes == 100 and train.name == "cifar100"


# ------------------------------------------------------------------------------------------------ npz


def test_npz_file_one_based_labels(tmp_path):
    np.savez(tmp_path / "val_data.npz", data=planar(4, side=8), labels=np.array([1, 2, 1000, 3]))
    got = load_npz(tmp_path / "val_data.npz")
    check_pixels(got, (4, 3, 8, 8))
    assert got.labels.tolist() == [0, 1, 999, 2] and got.num_classes == 1000
    assert load_npz(tmp_path / "val_data.npz", label_offset=0).labels.tolist() == [1, 2, 1000, 3]
    one_line_error(load_npz, tmp_path / "val_data.npz", label_offset=2, match="negative")
    one_line_error(load_npz, tmp_path / "val_data.npz", label_offset="one", match="integer or 'auto'")


def test_npz_folder_zero_based_labels_kept(tmp_path):
    np.savez(tmp_path / "train_data_batch_1.npz", data=planar(2, side=4), labels=np.array([0, 5]), mean=np.zeros(48))
    np.savez(tmp_path / "train_data_batch_2.npz", data=planar(3, side=4), labels=np.array([1, 2, 3]))
    got = load_npz(tmp_path)
    check_pixels(got, (5, 3, 4, 4))
    assert got.labels.tolist() == [0, 5, 1, 2, 3]


# ------------------------------------------------------------------------------------------------ image folder


def write_image(path, mode, size=(6, 5)):
    channels = {"L": (), "RGB": (3,)}[mode]
    Image.fromarray(RNG.integers(0, 256, size=(size[1], size[0], *channels), dtype=np.uint8), mode).save(path)


def test_folder_grayscale_png(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 1), ("empty", 0)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            write_image(tmp_path / cls / f"{i}.png", "L")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    got = load_image_folder(tmp_path)
    check_pixels(got, (3, 1, 5, 6))
    assert got.labels.tolist() == [0, 2, 2] and got.num_classes == 3  # ant, empty, zebra


def test_folder_mixed_png_jpeg_becomes_rgb(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
    write_image(tmp_path / "cat" / "a.png", "RGB")
    write_image(tmp_path / "cat" / "b.JPG", "L")
    write_image(tmp_path / "dog" / "c.jpeg", "RGB")
    got = load_image_folder(tmp_path)
    check_pixels(got, (3, 3, 5, 6))
    assert got.labels.tolist() == [0, 0, 1]
    gray = got.signals[1]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # grey replicated into R, G, B
    png = np.array(Image.open(tmp_path / "cat" / "a.png")).transpose(2, 0, 1)
    torch.testing.assert_close(got.signals[0], torch.from_numpy(png).float() / 127.5 - 1)  # PNG is lossless


# ------------------------------------------------------------------------------------------------ MNIST-5k, splits


@pytest.fixture(scope="module")
def mnist():
    return load_mnist5k(seed=0)


def test_mnist5k_sizes_and_format(mnist):
    assert set(mnist) == {"train", "val", "test"}
    assert sum(len(s) for s in mnist.values()) == 5000
    assert [len(mnist[k]) for k in ("train", "val", "test")] == [3500, 500, 1000]
    check_pixels(mnist["train"], (3500, 1, 28, 28))
    assert mnist["train"].signals.min() == -1 and mnist["train"].signals.max() == 1
    assert all(s.num_classes == 10 and s.name == "mnist5k" for s in mnist.values())


def test_mnist5k_stratified(mnist):
    for key, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        counts = torch.bincount(mnist[key].labels, minlength=10)
        assert (counts - 500 * frac).abs().max() <= 1, (key, counts)


def test_mnist5k_deterministic_and_disjoint(mnist):
    again, other = load_mnist5k(seed=0), load_mnist5k(seed=1)
    for key in mnist:
        assert torch.equal(mnist[key].signals, again[key].signals) and torch.equal(mnist[key].labels, again[key].labels)
    assert not torch.equal(mnist["test"].signals, other["test"].signals)
    # The splits are index sets of the full 5,000 (cached, so no second CSV parse): disjoint and covering.
    from coupled.domains.image.data import _mnist5k_all

    full = _mnist5k_all()
    parts = stratified_split(full.labels, (0.7, 0.1, 0.2), seed=0)
    assert len(np.unique(np.concatenate(parts))) == 5000
    for key, idx in zip(("train", "val", "test"), parts):
        assert torch.equal(mnist[key].signals, full.signals[idx]) and torch.equal(mnist[key].labels, full.labels[idx])


def test_stratified_split_indices(mnist):
    labels = np.repeat(np.arange(3), [10, 7, 4])
    parts = stratified_split(labels, (0.5, 0.5), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(21))
    for part in parts:
        assert all(abs((labels[part] == c).sum() - n / 2) <= 1 for c, n in enumerate((10, 7, 4)))
    assert all(np.array_equal(a, b) for a, b in zip(parts, stratified_split(labels, (0.5, 0.5), seed=3)))
    one_line_error(stratified_split, labels, (0.5, 0.6), 0, match="sum to 1")


def test_subset_and_dispatch(tmp_path, mnist):
    part = mnist["val"].subset([0, 2])
    assert torch.equal(part.signals[1], mnist["val"].signals[2]) and part.num_classes == 10
    one_line_error(mnist["val"].subset, [10_000], match="subset indices")
    np.savez(tmp_path / "b.npz", data=planar(2, side=4), labels=np.array([0, 1]))
    assert len(load_dataset("npz", path=tmp_path / "b.npz")) == 2
    assert set(load_dataset("mnist5k", seed=0)) == {"train", "val", "test"}
    one_line_error(load_dataset, "npz", folder=tmp_path, match="bad arguments")


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("call", [
    lambda p: load_idx(p / "train-images-idx3-ubyte", p / "train-labels-idx1-ubyte"),
    lambda p: load_cifar(p / "cifar-10-batches-py"),
    lambda p: load_npz(p / "val_data.npz"),
    lambda p: load_image_folder(p / "images"),
])
def test_missing_path(tmp_path, call):
    assert "no such file" in one_line_error(call, tmp_path)


def test_idx_truncated_corrupt_and_wrong_magic(tmp_path):
    pixels, labels = np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.uint8)
    good_labels = write_idx(tmp_path / "labels", labels, 2049)
    images = write_idx(tmp_path / "images", pixels, 2051)
    images.write_bytes(images.read_bytes()[:-5])
    assert "truncated" in one_line_error(load_idx, images, good_labels)
    images.write_bytes(b"\x00\x00")
    assert "truncated" in one_line_error(load_idx, images, good_labels)
    bad_gz = tmp_path / "images.gz"
    bad_gz.write_bytes(gzip.compress(b"x" * 100)[:20])
    assert "images.gz" in one_line_error(load_idx, bad_gz, good_labels)
    write_idx(images, pixels.reshape(3, 16), 0x0802)  # a 2-D IDX file where the 3-D images file is expected
    assert "magic number 2050" in one_line_error(load_idx, images, good_labels)
    assert "swapped" in one_line_error(load_idx, good_labels, write_idx(tmp_path / "i2", pixels, 2051))
    short_labels = write_idx(tmp_path / "short", labels[:2], 2049)
    assert "3 images but 2 labels" in one_line_error(load_idx, tmp_path / "i2", short_labels)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_with_disallowed_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2))
    assert "refusing to unpickle" in one_line_error(load_cifar, path)
    assert not marker.exists()


def test_cifar_bad_files(tmp_path):
    garbage = tmp_path / "data_batch_1"
    garbage.write_bytes(b"this is not a pickle at all")
    assert "cannot read" in one_line_error(load_cifar, garbage)
    write_cifar(garbage, planar(2), [0, 1])
    garbage.write_bytes(garbage.read_bytes()[:100])  # truncated pickle
    assert "cannot read" in one_line_error(load_cifar, garbage)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(pickle.dumps({b"pixels": planar(1), b"labels": [0]}))
    assert "lacks" in one_line_error(load_cifar, wrong)
    assert "no CIFAR test batches" in one_line_error(load_cifar, tmp_path, split="test")
    one_line_error(load_cifar, wrong, split="val", match="unknown CIFAR split")


def test_npz_bad_files(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.zeros((2, 100), np.uint8), labels=np.array([0, 1]))
    assert "3*H*W" in one_line_error(load_npz, tmp_path / "a.npz")
    (tmp_path / "a.npz").write_bytes(b"PK\x03\x04 broken zip")
    assert "cannot read" in one_line_error(load_npz, tmp_path / "a.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .npz files" in one_line_error(load_npz, empty)


def test_folder_mismatched_size_and_unreadable(tmp_path):
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "a" / "1.png", "L", size=(6, 5))
    write_image(tmp_path / "a" / "2.png", "L", size=(7, 5))
    msg = one_line_error(load_image_folder, tmp_path)
    assert "2.png is 7x5" in msg and "1.png is 6x5" in msg
    (tmp_path / "a" / "2.png").write_bytes(b"not a png")
    assert "2.png" in one_line_error(load_image_folder, tmp_path, match="cannot read")
    assert "no PNG" in one_line_error(load_image_folder, tmp_path / "a")


def test_unknown_kind():
    msg = one_line_error(load_dataset, "imagenet")
    assert all(k in msg for k in ("mnist5k", "idx", "cifar", "npz", "folder"))


def test_class_count_mismatch():
    data = LabelledSignals(torch.zeros(2, 3, 4, 4), torch.tensor([0, 99]), 100, "cifar100")
    check_num_classes(data, 100)
    msg = one_line_error(check_num_classes, data, 10)
    assert "has 100 classes but the classifier outputs 10" in msg and "100 outputs" in msg
    one_line_error(check_num_classes, data, 0, match="positive integer")
