"""The layers import downwards only: every import statement of a module (at the top or inside a function)
is checked against the packages its layer may use. No module below training imports it: the generic
`coupled train`, `evaluate` and `demo` live above both, in coupled/commands.py. The image domain's file
readers and signal metrics call up into the pipeline and evaluation on purpose; that is allowed here."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "coupled"
UPPER = {"training", "evaluation", "cli", "cli_checks", "commands", "pipeline", "domains", "bundle", "config", "classifiers"}
# module (path under src/coupled) -> the coupled packages it must not import
RULES = {
    "engine": UPPER | {"checkpoint", "atomic", "schema", "seeds"},
    "errors.py": UPPER | {"engine", "checkpoint", "atomic"},
    "atomic.py": UPPER | {"engine", "checkpoint"},
    "seeds.py": UPPER | {"engine", "checkpoint", "atomic"},
    "checkpoint.py": UPPER | {"engine"},
    "bundle.py": {"training", "evaluation", "cli", "cli_checks", "pipeline", "commands"},
    "domains": {"training", "cli", "cli_checks", "commands"},  # the generic commands live above, in commands.py
}


def _coupled_imports(path: Path, root: Path = SRC.parent) -> set[str]:
    """The top-level coupled packages a module imports, resolving relative imports (`root` holds coupled/)."""
    parts = path.relative_to(root).with_suffix("").parts  # ("coupled", "engine", "chains")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-node.level]) + (node.module.split(".") if node.module else [])
                names = [base] if node.module else [base + [a.name] for a in node.names]
            else:
                names = [node.module.split(".")] if node.module else []
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        found |= {n[1] for n in names if len(n) > 1 and n[0] == "coupled"}
    return found


@pytest.mark.parametrize("where", sorted(RULES))
def test_a_layer_imports_nothing_above_it(where):
    files = sorted((SRC / where).rglob("*.py")) if (SRC / where).is_dir() else [SRC / where]
    assert files
    bad = {str(f.relative_to(SRC)): sorted(_coupled_imports(f) & RULES[where]) for f in files}
    assert not {f: b for f, b in bad.items() if b}, bad


def test_the_import_reader_sees_relative_and_lazy_imports(tmp_path):
    """The checker can fail: a lazy relative import of training inside a function is found."""
    fake = tmp_path / "coupled" / "engine" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import os\n\ndef f():\n    from ..training.stages import STAGES\n    from . import chains\n"
                    "    import coupled.pipeline\n")
    assert _coupled_imports(fake, tmp_path) == {"training", "engine", "pipeline"}
    assert "errors" in _coupled_imports(SRC / "engine" / "chains.py")
