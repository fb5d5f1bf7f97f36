"""The synthetic ECG corpus: deterministic, patients disjoint across splits, balanced classes, fast to build."""

import time

import numpy as np
import pytest

from coupled.domains.ecg import synth


def test_same_seed_same_corpus_other_seed_other_corpus():
    a = synth.make_split("val", 0, patients=6, segments=2)
    b = synth.make_split("val", 0, patients=6, segments=2)
    c = synth.make_split("val", 1, patients=6, segments=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_a_patient_does_not_depend_on_how_many_are_drawn():
    few = synth.make_split("test", 0, patients=3, segments=2)
    more = synth.make_split("test", 0, patients=5, segments=2)
    assert np.array_equal(few[0], more[0][:6])


def test_patients_are_disjoint_across_splits_and_classes_balanced():
    ids = {}
    for split, (first, n, seg) in synth.SPLITS.items():
        ids[split] = set(range(first, first + n))
        assert n % 3 == 0 or split != "train"
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    x, y, pid, kinds = synth.make_split("val", 0, patients=9, segments=2)
    assert set(pid.tolist()) <= ids["val"]
    assert np.bincount(y).tolist() == [6, 6, 6]
    assert all((k != "") == (label == 2) for k, label in zip(kinds, y))


def test_traces_are_in_range_with_the_stated_shape():
    x, y, _, _ = synth.make_split("train", 0, patients=6, segments=1)
    assert x.shape == (6, 1, synth.LENGTH) and x.dtype == np.float32 and synth.LENGTH == 2500
    assert np.abs(x).max() <= 1.0
    med = np.median(x, axis=-1)
    assert np.abs(med).max() < 1e-6  # centred on the median
    q = np.quantile(np.abs(x - med[..., None]), 0.995, axis=-1)
    assert np.allclose(q, synth.SCALE_TARGET, atol=0.02)


def test_af_is_irregular_and_normal_is_not():
    """R peaks found by thresholding: AF's RR intervals vary far more than normal sinus rhythm's."""
    x, y, _, _ = synth.make_split("train", 0, patients=30, segments=1)

    def rr_cv(trace):
        peaks = [i for i in range(1, len(trace) - 1) if trace[i] > 0.45 and trace[i] >= trace[i - 1] and trace[i] > trace[i + 1]]
        rr = np.diff(peaks)
        return rr.std() / rr.mean()

    cv = np.array([rr_cv(t[0]) for t in x])
    assert np.median(cv[y == 1]) > 3 * np.median(cv[y == 0])


def test_the_training_split_builds_in_seconds():
    t = time.perf_counter()
    synth.make_split("train", 0, patients=60, segments=3)
    assert time.perf_counter() - t < 10  # 1,800 traces: about 2 s on one core
