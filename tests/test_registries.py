"""Method and stage names come from their registries (engine.strategies, bundle, training.stages), never retyped:
every list the library shows or runs is derived from them, so a new method or stage appears everywhere at once."""

import ast
from pathlib import Path

from coupled.methods import METHOD_NETS, REFERENCE_METHODS, SIGNAL_NETS
from coupled.engine import BASELINES, COUPLED, METHODS, PAPER_METHODS

SRC = Path(__file__).resolve().parents[1] / "src" / "coupled"
ALL_METHODS = (*METHODS, *REFERENCE_METHODS)


def _cli_choices() -> dict:
    """option name -> its choices, over every `coupled` subcommand."""
    from coupled.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices.values()
    return {a.dest: list(a.choices) for sp in commands for a in sp._actions if a.choices}


def test_method_registry_and_every_list_of_methods_agree():
    from coupled.evaluation.fair import candidate_grid
    from coupled.evaluation.report import METHOD_ORDER
    from coupled.evaluation.runner import DETERMINISTIC

    assert set(METHODS) == set(BASELINES) | set(COUPLED) and not set(BASELINES) & set(COUPLED)
    # the report shows the registry's order, each reference method beside the engine method it runs
    assert METHOD_ORDER == ("noisy", "finetuned_classifier", *BASELINES[1:], *COUPLED)
    assert set(COUPLED) <= set(PAPER_METHODS) <= set(METHODS)
    assert set(DETERMINISTIC) == {"noisy", "predictive", *(r for r, m in REFERENCE_METHODS.items() if m == "noisy")}
    assert set(METHOD_NETS) <= set(ALL_METHODS)
    assert {s.method for s in candidate_grid()} == set(ALL_METHODS), "every method enters the fair comparison"
    assert {s.options.get("signal_net", "joint") for s in candidate_grid()} == set(SIGNAL_NETS)
    # `coupled evaluate --methods` also offers each domain's own reference methods (Domain.reference_methods), after
    # the library's, and none of them may reuse a library method's name
    from coupled.domains.registry import domain_names, get_domain

    own = list(dict.fromkeys(m for d in domain_names() for m in get_domain(d).reference_methods))
    assert not set(own) & set(ALL_METHODS)
    choices = _cli_choices()
    assert choices["methods"] == [*ALL_METHODS, *own] and choices["method"] == list(METHODS)


def test_stage_registry_and_every_table_of_stages_agree():
    from coupled.defaults import DEFAULTS
    from coupled.training.run import NEEDS
    from coupled.checkpoint import STAGE_OUTPUTS as OUTPUTS
    from coupled.training.stages import BASELINE_STAGES, BUNDLE_STAGES, LOSSES, STAGES

    assert tuple(LOSSES) == tuple(OUTPUTS) == STAGES == (*BUNDLE_STAGES, *BASELINE_STAGES)
    assert all(stage in DEFAULTS for stage in STAGES) and set(NEEDS) <= set(STAGES)
    outputs = {name for outs in OUTPUTS.values() for name in outs}
    assert {name for needs in NEEDS.values() for name in needs} <= outputs
    assert set(METHOD_NETS.values()) <= outputs and {f"signal_{n}" for n in SIGNAL_NETS if n != "joint"} <= outputs
    assert _cli_choices()["stages"] == list(STAGES)


def _retyped(tree: ast.AST, names: set, at_least: int = 4) -> list[int]:
    """Lines of tuple, list or set literals that spell out `at_least` or more of `names` (not `__all__`)."""
    exports = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == "__all__" for t in n.targets)}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Tuple, ast.List, ast.Set)) and id(n) not in exports
            and sum(isinstance(e, ast.Constant) and e.value in names for e in n.elts) >= at_least]


def test_no_module_retypes_a_list_of_methods_or_stages():
    from coupled.training.stages import STAGES

    homes = {SRC / "engine" / "strategies.py", SRC / "training" / "stages.py"}
    found = {str(p.relative_to(SRC)): lines for p in sorted(SRC.rglob("*.py")) if p not in homes
             for lines in [_retyped(ast.parse(p.read_text()), set(ALL_METHODS) | set(STAGES))] if lines}
    assert found == {}, f"derive these lists from the registries: {found}"
