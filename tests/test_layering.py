"""The import graph is one-way and acyclic: every import statement of every module (at the top or inside a
function, relative or absolute) goes to a module of a lower layer, or to a module of its own package, and the
module graph has no cycle, lazy imports included.

Layers, bottom to top (style.md, "The shape of the house"): errors; the engine; the small leaf modules
(atomic writes, seeds, defaults, object import); checkpoint, input ranges and method settings; classifiers;
schema; the domain registry; config and bundle; the domains; training and evaluation side by side (neither
imports the other); pipeline; commands; the CLI. No generic module names a concrete domain: the registry finds
the built-in ones by module name (importlib), as it finds a user's.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "coupled"

# layer of a module: its path under coupled/ (a package covers its modules), lowest first
LAYERS = [
    ["errors.py"],
    ["engine"],
    ["analysis"],
    ["atomic.py", "seeds.py", "defaults.py", "imports.py", "scores.py", "home.py", "threads.py"],
    ["checkpoint.py", "ranges.py", "methods.py", "nets.py"],
    ["classifiers.py"],
    ["schema.py"],
    ["domains/registry.py", "domains/__init__.py"],
    ["config.py", "bundle.py"],
    ["domains"],
    ["training", "evaluation"],
    ["pipeline.py"],
    ["commands.py"],
    ["cli_checks.py"],
    ["cli.py"],
    ["__init__.py"],
]


def _group(rel: str) -> str:
    """The unit a module belongs to: its layer entry (`engine`, `domains/registry.py`), or for a domain its
    own package (`domains/speech`): modules of one unit may import each other (the cycle test still applies)."""
    for layer in LAYERS:
        for entry in layer:
            if rel == entry:
                return entry
    parts = rel.split("/")
    if parts[0] == "domains" and len(parts) > 2:
        return "/".join(parts[:2])
    for layer in LAYERS:
        for entry in layer:
            if rel.startswith(entry + "/") or (not entry.endswith(".py") and rel.split("/")[0] == entry):
                return entry
    raise AssertionError(f"{rel} is in no layer of tests/test_layering.py; add it to LAYERS")


def _rank(rel: str) -> int:
    group = _group(rel)
    if group.startswith("domains/") and group not in ("domains/registry.py", "domains/__init__.py"):
        group = "domains"
    return next(i for i, layer in enumerate(LAYERS) if group in layer)


def _modules(root: Path) -> dict[str, Path]:
    """dotted name ('coupled.engine.chains', 'coupled.engine' for its __init__) -> file, under `root`/coupled."""
    out = {}
    for f in sorted((root / "coupled").rglob("*.py")):
        parts = f.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(path: Path, root: Path, modules: dict) -> set[str]:
    """The coupled modules a file imports (lazy and relative imports included), resolved to dotted names of
    modules that exist: `from .x import y` is module x.y when that is a module, else x."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]  # a module's own package (an __init__'s package is itself)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (package[: len(package) - node.level + 1] if node.level else []) + \
                (node.module.split(".") if node.module else [])
            for alias in node.names:
                sub = ".".join(base + [alias.name])
                found.add(sub if sub in modules else ".".join(base))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    resolved = set()
    for name in found:
        while name and name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules and name.startswith("coupled"):
            resolved.add(name)
    return resolved - {".".join(parts[:-1] if parts[-1] == "__init__" else parts)}


def _graph(root: Path = SRC.parent) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imports(f, root, modules) for name, f in modules.items()}


def _rel(name: str, root: Path = SRC.parent) -> str:
    f = _modules(root)[name]
    return str(f.relative_to(root / "coupled"))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_every_import_goes_down_a_layer_or_stays_in_its_unit():
    bad = []
    for name, targets in _graph().items():
        src = _rel(name)
        for target in targets:
            dst = _rel(target)
            same_unit = _group(src) == _group(dst)
            if not same_unit and _rank(dst) >= _rank(src):
                bad.append(f"{src} -> {dst}")
    assert bad == [], bad


def _concrete_domain(name: str) -> str | None:
    """'coupled.domains.speech' for any module of the speech domain; None outside the concrete domains."""
    parts = name.split(".")
    if len(parts) > 2 and parts[1] == "domains" and parts[2] not in ("registry", "__init__"):
        return ".".join(parts[:3])
    return None


def no_concrete_domain_imports(graph: dict) -> list[str]:
    return sorted(f"{n} -> {t}" for n, ts in graph.items() for t in ts
                  if _concrete_domain(t) and _concrete_domain(n) != _concrete_domain(t))


def test_no_generic_module_imports_a_concrete_domain():
    assert no_concrete_domain_imports(_graph()) == []


def _tree(tmp_path, files: dict) -> dict:
    for rel, text in files.items():
        f = tmp_path / "coupled" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return _graph(tmp_path)


def test_the_checker_sees_lazy_relative_imports_and_cycles(tmp_path):
    """The reader can fail: a lazy relative import inside a function is found, `from . import x` resolves to
    the module x, and a cycle through a lazy import is reported."""
    graph = _tree(tmp_path, {
        "__init__.py": "", "engine/__init__.py": "", "engine/chains.py": "from ..errors import E\n",
        "errors.py": "E = 1\n", "config.py": "def f():\n    from .bundle import B\n",
        "bundle.py": "from . import config\nB = 1\n", "engine/fake.py": "def f():\n    from . import chains\n",
    })
    assert graph["coupled.engine.fake"] == {"coupled.engine.chains"}
    assert graph["coupled.engine.chains"] == {"coupled.errors"}
    assert _cycles(graph) == [["coupled.bundle", "coupled.config"]]
    graph = _tree(tmp_path, {"domains/__init__.py": "", "domains/image/__init__.py": "", "domains/image/x.py": "",
                             "pipeline.py": "def f():\n    from .domains.image import x\n"})
    assert no_concrete_domain_imports(graph) == ["coupled.pipeline -> coupled.domains.image.x"]


def test_the_layer_rule_fails_on_an_upward_import():
    assert _rank("engine/chains.py") < _rank("domains/registry.py") < _rank("domains/speech/corpus.py")
    assert _rank("training/run.py") == _rank("evaluation/api.py") and _group("training/run.py") != _group("evaluation/api.py")
    assert _group("domains/speech/corpus.py") != _group("domains/image/data.py")
    with pytest.raises(AssertionError, match="no layer"):
        _group("newthing.py")
