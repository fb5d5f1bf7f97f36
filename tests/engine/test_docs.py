"""The runnable example of docs/engine.md runs as written."""

import re
from pathlib import Path


def test_engine_doc_example_runs(capsys):
    text = (Path(__file__).parents[2] / "docs" / "engine.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/engine.md lost its example"
    for code in blocks:
        exec(compile(code, "docs/engine.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("calls") == 6


def test_engine_doc_states_when_parity_with_diffusers_holds():
    """The conditions `test_samplers.py` establishes, stated where the doc claims parity."""
    text = " ".join((Path(__file__).parents[2] / "docs" / "engine.md").read_text().split())
    assert "agree with diffusers' schedulers to 1e-5" not in text
    for claim in ("when the step count S divides T", "steps from t to t - T // S", "steps to the next grid time",
                  "`use_clipped_model_output=True`, not its default"):
        assert claim in text, claim
