"""The ECG report panel: the trace as a line, and the demo wired to the ECG config."""

import numpy as np

from coupled.domains.ecg.domain import ECG


def test_panel_draws_the_trace_as_a_connected_line():
    t = np.linspace(0, 10, 2500, dtype=np.float32)
    img = ECG.example_panel(np.sin(2 * np.pi * 0.5 * t)[None])
    assert img.shape == (120, 313) and set(np.unique(img)) == {-1.0, 1.0}
    assert ((img < 0).sum(axis=0) >= 1).all()  # every column has ink
    top = np.argmax(img < 0, axis=0)
    # the first 2.5 s, every 2nd sample: crest (+1) at t = 0.5 s (column 62), trough (-1) at 1.5 s (column 187);
    # the line is 3 pixels thick (one above the curve's row)
    assert top[62] == 19 and top[187] == 98


def test_panel_clips_large_excursions():
    img = ECG.example_panel(np.full(2500, 9.0, dtype=np.float32))
    assert (img[:2] < 0).all() and (img[2:] > 0).all()


def test_demo_reads_the_ecg_config():
    assert "demo" in ECG.commands and ECG.demo_config == "configs/ecg.yaml"
