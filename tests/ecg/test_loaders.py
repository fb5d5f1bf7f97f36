"""The real-data loaders on tiny fixtures written in each layout, and one-line errors for bad records."""

import numpy as np
import pytest
import torch

from coupled.domains.ecg import loaders, synth
from coupled.domains.registry import get_domain
from coupled.errors import CoupledError


def _trace(seconds, rate, label=0, seed=0):
    """A synthetic record of `seconds` at `rate` Hz in mV (the 250-Hz model resampled)."""
    from scipy.signal import resample

    rng = synth.patient_rng(seed, 7)
    p = synth._patient(rng, label)
    x = np.concatenate([synth.segment(rng, p) for _ in range(int(np.ceil(seconds / synth.SECONDS)))])
    x = x[: int(seconds * synth.RATE)]
    return resample(x, int(round(len(x) * rate / synth.RATE)))


def write_cinc(folder, records):
    """records: [(name, label, trace in mV, rate)] -> a CinC 2017 folder (.mat int16 x1000 + .hea + REFERENCE.csv)."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    for name, _, x, rate in records:
        val = np.round(np.asarray(x) * 1000).astype(np.int16)[None, :]
        savemat(folder / f"{name}.mat", {"val": val})
        (folder / f"{name}.hea").write_text(f"{name} 1 {rate} {val.shape[1]} 05:05:15 1/05/2000\n"
                                            f"{name}.mat 16+24 1000/mV 16 0 {val[0, 0]} 0 0 ECG\n")
    (folder / "REFERENCE.csv").write_text("".join(f"{n},{lab}\n" for n, lab, _, _ in records))


def write_wfdb(folder, records):
    """records: [(name, label, trace in mV, rate)] -> WFDB records (.hea + .dat, MIT-BIH's format 212) + labels.csv."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    for name, _, x, rate in records:
        wfdb.wrsamp(name, fs=rate, units=["mV"], sig_name=["MLII"], p_signal=np.asarray(x)[:, None], fmt=["212"],
                    write_dir=str(folder))
    (folder / "labels.csv").write_text("record,label\n" + "".join(f"{n},{lab}\n" for n, lab, _, _ in records))


def test_cinc2017_folder_loads_resampled_and_segmented(tmp_path):
    recs = [("A00001", "N", _trace(30, 300, 0, 1), 300), ("A00002", "A", _trace(21, 300, 1, 2), 300),
            ("A00003", "O", _trace(12, 300, 2, 3), 300), ("A00004", "~", _trace(12, 300, 0, 4), 300)]
    write_cinc(tmp_path / "cinc", recs)
    x, y, rec, names = loaders.load_records("cinc2017", tmp_path / "cinc")
    assert names == ["A00001", "A00002", "A00003"]  # the noisy record (~) is skipped
    assert x.shape == (3 + 2 + 1, 1, synth.LENGTH) and y.tolist() == [0, 0, 0, 1, 1, 2]
    assert np.abs(x).max() <= 1 and rec.tolist() == [0, 0, 0, 1, 1, 2]
    # the first segment matches the 250-Hz trace it was made from, up to resampling and int16 rounding
    ref = synth.robust_scale(_trace(30, 250, 0, 1)[: synth.LENGTH])
    assert np.corrcoef(ref, x[0, 0])[0, 1] > 0.98


def test_wfdb_records_load_through_the_wfdb_package(tmp_path):
    recs = [("100", "N", _trace(20, 360, 0, 1), 360), ("201", "A", _trace(10, 360, 1, 2), 360)]
    write_wfdb(tmp_path / "mitdb", recs)
    x, y, rec, names = loaders.load_records("wfdb", tmp_path / "mitdb", "labels.csv")
    assert names == ["100", "201"] and x.shape == (3, 1, synth.LENGTH) and y.tolist() == [0, 0, 1]
    ref = synth.robust_scale(_trace(20, 250, 0, 1)[: synth.LENGTH])
    assert np.corrcoef(ref, x[0, 0])[0, 1] > 0.98


def test_a_config_splits_a_folder_by_record(tmp_path):
    recs = [(f"A{i:05d}", "NAO"[i % 3], _trace(20, 300, i % 3, i), 300) for i in range(10)]
    write_cinc(tmp_path / "cinc", recs)
    cfg = get_domain("ecg").config_defaults() | {"data": {"kind": "cinc2017", "root": str(tmp_path / "cinc"), "seed": 0}}
    splits = get_domain("ecg").load_splits(cfg)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [14, 2, 4]  # 7 / 1 / 2 records of 2 segments
    assert all(s.signals.shape[1:] == (1, synth.LENGTH) for s in splits.values())
    seen = [set(map(tuple, s.signals[:, 0, :4].tolist())) for s in splits.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2])


@pytest.mark.parametrize("bad, message", [
    (lambda x: (x, 50), "sampling rate 50 Hz is below 100 Hz"),
    (lambda x: (x, "abc"), "sampling rate 'abc' is not a number"),
    (lambda x: (np.where(np.arange(len(x)) == 7, np.nan, x), 300), "1 samples are NaN or infinite"),
    (lambda x: (np.zeros_like(x), 300), "is a flat line"),
    (lambda x: (x[:2000], 300), "shorter than one 10-s segment"),
])
def test_bad_records_fail_in_one_line_naming_the_record(bad, message):
    x, rate = bad(_trace(12, 300))
    with pytest.raises(CoupledError) as e:
        loaders.segments("A00042", x, rate)
    text = str(e.value)
    assert "\n" not in text and "A00042" in text and message in text


def test_bad_cinc_folders_fail_in_one_line(tmp_path):
    write_cinc(tmp_path / "c", [("A00001", "X", _trace(12, 300), 300)])
    with pytest.raises(CoupledError, match="unknown label 'X'"):
        loaders.load_records("cinc2017", tmp_path / "c")
    with pytest.raises(CoupledError, match="no such folder"):
        loaders.load_records("cinc2017", tmp_path / "missing")
    with pytest.raises(CoupledError, match="needs data.labels"):
        loaders.load_records("wfdb", tmp_path / "c")


def test_read_input_reads_npy_and_records(tmp_path):
    np.save(tmp_path / "t.npy", _trace(10, 250).astype(np.float32))
    x = get_domain("ecg").read_input(tmp_path / "t.npy")
    assert isinstance(x, torch.Tensor) and x.shape == (1, 1, synth.LENGTH)
    write_cinc(tmp_path / "c", [("A00009", "N", _trace(20, 300), 300)])
    assert get_domain("ecg").read_input(tmp_path / "c" / "A00009.mat").shape == (2, 1, synth.LENGTH)
