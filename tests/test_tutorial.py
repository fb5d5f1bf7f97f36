"""docs/tutorial.md runs as written: its file blocks (first line `# my_project/NAME`) are written, its `sh` blocks
run in order in one bash script (the real `coupled` command and this interpreter as `python`), then what the page
says is checked: the user's classifier copied into the bundle, the evaluation and classification written, and the
fingerprint warning for the bundled denoisers only."""

import json
import os
import re
import subprocess
import sys

from tests.reliability.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.md"
FILE_LINE = re.compile(r"# (my_project/[\w./]+)\n")


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of a markdown text, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def test_tutorial_runs_as_written(tmp_path):
    found = blocks(TUTORIAL.read_text())
    files = {m.group(1): body for _, body in found if (m := FILE_LINE.match(body))}
    script = "\n".join(body for lang, body in found if lang == "sh")
    assert set(files) == {"my_project/my_classifier.py", "my_project/train_my_classifier.py",
                          "my_project/my_corruption.py", "my_project/tutorial.yaml", "my_project/check_fingerprint.py"}
    assert "coupled train" in script and "coupled evaluate" in script and "coupled classify" in script
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints")  # the clone's bundled models, which `init` names
    bin_dir = tmp_path / "bin"  # `coupled` and `python` as this test runs them
    bin_dir.mkdir()
    for name, command in (("coupled", f'"{sys.executable}" -m coupled.cli'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"the tutorial failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    bundle = tmp_path / "runs" / "tutorial"
    meta = json.loads((bundle / "classifier.json").read_text())
    assert meta["factory"] == "my_classifier:make_mlp" and meta["net"] == {"hidden": 64}
    assert (bundle / "classifier.safetensors").read_bytes() and "'frozen': 'my_classifier:make_mlp'" in proc.stdout
    assert json.loads((bundle / "signal_pretrained.json").read_text())["init"] == "checkpoints/mnist/signal_pretrained.safetensors"
    assert "classifier_fingerprint" in json.loads((bundle / "logits.json").read_text())

    results = json.loads((tmp_path / "runs" / "tutorial_eval" / "results.json").read_text())
    acc = {(r["method"], r["readout"]): r["value"] for r in results["rows"] if r["corruption"] == "my_corruption:scratches"}
    assert set(acc) == {("noisy", "classifier"), ("sequential", "classifier"), ("parallel", "classifier"),
                        ("parallel", "logits")}
    assert acc[("sequential", "classifier")] > acc[("noisy", "classifier")] + 0.1  # the page's point: it helps

    classified = [line for line in proc.stdout.splitlines() if line.startswith("my_project/digits.npy[")]
    assert len(classified) == 4 and all(line.endswith("(parallel)") for line in classified)

    warned = [line for line in proc.stderr.splitlines() if "ClassifierMismatchWarning" in line]
    assert len(warned) == 1 and "denoisers in checkpoints/mnist were trained on another classifier's logits" in warned[0]
    assert "check_fingerprint.py:10:" in warned[0] and "checked" in proc.stdout
