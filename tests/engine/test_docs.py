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
