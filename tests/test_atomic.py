"""The one atomic writer (`coupled.atomic`): what it guarantees, and that every file writer of the library uses it."""

import ast
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from coupled.atomic import atomic_write, atomic_write_json, atomic_write_text

SRC = Path(__file__).resolve().parents[1] / "src" / "coupled"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.json", "old\n")  # creates the folder
    assert path.read_text() == "old\n" and stat.S_IMODE(path.stat().st_mode) == 0o644

    def half_then_fail(tmp):
        Path(tmp).write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n" and [p.name for p in path.parent.iterdir()] == ["a.json"]
    atomic_write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def _renames(tree: ast.AST) -> list[str]:
    """What in a module renames or stages files itself: os.replace/os.rename, mkstemp, Path.replace(target),
    a '.tmp' name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f, owner = node.func.attr, getattr(node.func.value, "id", "")
            if (owner == "os" and f in ("replace", "rename")) or f in ("mkstemp", "NamedTemporaryFile") or (
                    f == "replace" and len(node.args) == 1 and not node.keywords):
                found.append(f"{f}() at line {node.lineno}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ".tmp" in node.value:
            found.append(f"{node.value!r} at line {node.lineno}")
    return found


def test_every_file_writer_goes_through_coupled_atomic():
    offenders = {str(p.relative_to(SRC)): hits for p in sorted(SRC.rglob("*.py")) if p.name != "atomic.py"
                 for hits in [_renames(ast.parse(p.read_text()))] if hits}
    assert offenders == {}, f"write files with coupled.atomic instead: {offenders}"


def test_domains_and_bundles_load_without_training():
    code = ("import sys; import coupled.bundle, coupled.domains.image.domain, coupled.domains.speech.recogniser, "
            "coupled.domains.speech.evaluate, coupled.pipeline, coupled.checkpoint; "
            "print(sorted(m for m in sys.modules if m.startswith(('coupled.training', 'lightning'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"loading a bundle or a domain also loaded: {out}"
