"""The README's set-up commands are the ones CI runs; the code keeps its shape (short functions, imports that
follow the data flow)."""

import ast
from pathlib import Path

from conftest import ROOT


def readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("python3 -m venv .venv && ")]


def test_readme_has_exactly_two_setup_commands_at_the_top():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("scripts/train.py configs/demo.yaml")
    assert commands[1].endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_readme_is_short_and_keeps_no_history_of_rounds():
    """Measurements live in benchmarks/RESULTS.md, one current table per benchmark, not in the README."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for phrase in ("this round", "previous round", "earlier round"):
        assert phrase not in readme.lower()
    assert "benchmarks/RESULTS.md" in readme


def test_every_benchmark_has_its_section_in_results():
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert "this round" not in results.lower() and "previous round" not in results.lower()
    missing = [p.name for p in sorted((ROOT / "benchmarks").glob("[!_]*.py"))
               if f"benchmarks/{p.name}" not in results]
    assert missing == [], "give each benchmark its command and current table (or say it has none) in RESULTS.md"


# ---------------------------------------------------------------- structure: short functions, imports one way

MAX_FUNCTION_LINES = 50  # CONTRIBUTING.md: "keep functions short (about 50 lines)"


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def long_functions(source: str, filename: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'file:line name (N lines)' of every function (nested ones and methods too) longer than `limit` lines,
    counted from `def` to its last line."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(f"{filename}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_over_50_lines_outside_the_tests():
    offenders = [f for path in python_files("recipe", "scripts", "benchmarks")
                 for f in long_functions(path.read_text(), str(path.relative_to(ROOT)))]
    assert offenders == [], "split these into named steps:\n" + "\n".join(offenders)


def test_long_function_check_counts_from_def_to_the_last_line():
    body = "".join(f"    x{i} = {i}\n" for i in range(49))
    source = f"def fits():\n{body}\n\ndef too_long():\n{body}    return 1\n"  # 50 lines, then 51 from line 53
    assert long_functions(source, "m.py") == ["m.py:53 too_long (51 lines)"]


# The recipe's packages, lowest layer first: a module imports from its own package or lower ones, never from a
# higher one, and the imports form no cycle. Each package's __init__ says its job; `recipe/__init__.py` (the public
# API) sits on top of all of them.
LAYERS = ["core", "data", "config", "pipeline", "models", "engine", "evaluation", "training", "inference", "tools",
          "cli", "__init__"]
MAX_TOP_LEVEL_MODULES = 4  # besides __init__.py: everything else lives in a package of one job


def package_of(module: str) -> str:
    """'data.coco' -> 'data'; '__init__' -> '__init__'; a top-level module is its own package."""
    return module.split(".", 1)[0]


def layer_of(module: str) -> int:
    return LAYERS.index(package_of(module))


def recipe_modules() -> dict[str, Path]:
    """{'data.coco': recipe/data/coco.py, 'data': recipe/data/__init__.py, '__init__': recipe/__init__.py, ...}"""
    modules = {}
    for path in python_files("recipe"):
        parts = list(path.relative_to(ROOT / "recipe").with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def recipe_imports(source: str, package: list[str], known: set[str]) -> set[str]:
    """The recipe modules a source file imports (function-level imports too), relative or absolute;
    `package`: the file's folder under recipe/ (['data'] for recipe/data/coco.py, [] for recipe/engine/trainer.py)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("recipe.")}
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        module = (node.module or "").split(".") if node.module else []
        if node.level:
            target = package[:len(package) - node.level + 1] + module
        elif module[:1] == ["recipe"]:
            target = module[1:]
        else:
            continue
        for alias in node.names:  # `from . import analysis` imports a module; `from .coco import x` a name
            name = ".".join([*target, alias.name])
            found.add(name if name in known else ".".join(target))
    return found & known


def recipe_import_graph() -> dict[str, set[str]]:
    modules = recipe_modules()
    graph = {}
    for name, path in modules.items():
        package = list(path.relative_to(ROOT / "recipe").parent.parts)
        graph[name] = recipe_imports(path.read_text(), package, set(modules)) - {name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({package_of(m)}) imports {t} ({package_of(t)})"
            for m, targets in sorted(graph.items()) for t in sorted(targets) if layer_of(t) > layer_of(m)]


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the import graph as [a, b, ..., a], or []."""
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> list[str]:
        for t in sorted(graph.get(m, ())):
            if t in path:
                return path[path.index(t):] + [t]
            if t not in done and (cycle := visit(t, path + [t])):
                return cycle
        done.add(m)
        return []

    for m in sorted(graph):
        if m not in done and (cycle := visit(m, [m])):
            return cycle
    return []


def test_every_recipe_module_lives_in_a_package_with_a_layer():
    modules = set(recipe_modules())
    packages = {package_of(m) for m in modules}
    assert sorted(packages - set(LAYERS)) == [], "place these packages in LAYERS (tests/test_repo.py)"
    assert sorted(set(LAYERS) - packages) == [], "LAYERS names packages that no longer exist"
    top_level = sorted(p.name for p in (ROOT / "recipe").glob("*.py") if p.name != "__init__.py")
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_each_package_says_its_job():
    for init in sorted((ROOT / "recipe").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 8, f"{init.relative_to(ROOT)}: its docstring says the package's job"


def test_no_recipe_module_imports_upwards_or_in_a_cycle():
    graph = recipe_import_graph()
    assert upward_imports(graph) == [], "an import against the data flow: move the code down a layer"
    assert import_cycle(graph) == []
    # The reader sees the package's imports at all (an empty graph would pass both checks): absolute ones
    # (`from recipe.core.errors import`, as recipe/ writes them; relative forms are tested by hand below) in nearly
    # every module.
    files = [m for m, path in recipe_modules().items() if path.name != "__init__.py"]
    assert sum(bool(graph[m]) for m in files) >= len(files) * 3 // 4, graph


def test_layer_checks_name_an_upward_import_and_a_cycle():
    known = {"core.errors", "data.coco", "engine.trainer", "models", "models.losses", "models.loading"}
    graph = {"data.coco": recipe_imports("from ..core.errors import DataError\nfrom ..engine.trainer import X\n",
                                         ["data"], known),
             "models.losses": recipe_imports("def f():\n    from recipe.models import loading\n", ["models"], known),
             "models.loading": recipe_imports("import recipe.models.losses\nfrom ..data import coco\n", ["models"],
                                              known)}
    assert graph == {"data.coco": {"core.errors", "engine.trainer"}, "models.losses": {"models.loading"},
                     "models.loading": {"models.losses", "data.coco"}}
    assert upward_imports(graph) == ["data.coco (data) imports engine.trainer (engine)"]
    assert import_cycle(graph) == ["models.loading", "models.losses", "models.loading"]


# ---------------------------------------------------------------- one home for per-family facts, modules of one idea

MAX_MODULE_LINES = 300  # STYLE.md: "a module that passes ~300 lines probably holds two ideas"


def test_no_recipe_module_over_300_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in python_files("recipe")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long == [], "split these by job into cohesive modules:\n" + "\n".join(long)


def model_type_tests(source: str, model_types: set[str]) -> list[int]:
    """Lines that compare with a model type (`== "yolos"`, `in ("rt_detr", ...)`) or list two or more of them."""
    def named(node) -> list[str]:
        return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in model_types]

    def tests_a_type(node) -> bool:
        if isinstance(node, ast.Compare):
            return bool(named(node))
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(named(node)) >= 2

    return sorted({node.lineno for node in ast.walk(ast.parse(source)) if tests_a_type(node)})


# processor_size's resize rules are named after image-processor classes (a YOLOS processor floors sizes to 16),
# whatever the model type: not a family fact.
NOT_MODEL_TYPES = {"families.py", "processor_size.py"}


def test_per_family_facts_live_in_families_py():
    """CONTRIBUTING: a new family is one entry in recipe/models/families.py (+ its config and tests). A model-type test
    elsewhere is a family fact out of its home: make it a `Family` field."""
    from recipe.models.families import FAMILIES

    found = [f"{p.relative_to(ROOT)}:{line}" for p in python_files("recipe") if p.name not in NOT_MODEL_TYPES
             for line in model_type_tests(p.read_text(), set(FAMILIES))]
    assert found == [], "move these into the family's entry in recipe/models/families.py:\n" + "\n".join(found)


def test_model_type_check_sees_comparisons_and_lists():
    source = ('a = t == "yolos"\nb = t in ("rt_detr", "d_fine")\nc = {"yolos": 1}\nd = ["x", "deimv2", "yolos"]\n'
              'e = config.get("model_type", "yolos")\n')
    assert model_type_tests(source, {"yolos", "rt_detr", "d_fine", "deimv2"}) == [1, 2, 4]


# ------------------------------------------------------------------ the suite's tiers: command 2 stays short

# CONTRIBUTING.md "Tests": command 2's slow tests together, and each one (its shared trained models included when it
# is the first to ask for them), in seconds on the 2-core machine. The fresh clone's run (benchmarks/RESULTS.md "Test
# suite", 2026-12-06): 38 slow tests in about 600-650 s, the slowest 86 s; command 2 in all 15.5 min plus 2.5 of
# install. The totals leave room for another machine and catch a new multi-minute test.
COMMAND_2_SLOW_TOTAL_S = 840
COMMAND_2_SLOW_EACH_S = 240


def slow_command_2_durations(durations: dict) -> dict[str, float]:
    """{test id: seconds} of the slow, not extended tests that ran, from the suite's own durations file."""
    return {nodeid: entry["seconds"] for nodeid, entry in durations.items()
            if entry.get("slow") and not entry.get("extended") and entry["outcome"] != "skipped"}


def test_command_2_slow_tests_stay_within_their_budget():
    """Read from the durations the suite itself wrote (tests/conftest.py DURATIONS) at the end of its last run, when
    that run was command 2: .ci/run asks (RECIPE_CHECK_BUDGET=1) right after it. Inside command 2 the file holds an
    older run, perhaps a partial one or one on a loaded machine, so the check waits to be asked."""
    import json
    import os

    import pytest

    from conftest import DURATIONS

    if os.environ.get("RECIPE_CHECK_BUDGET") != "1":
        pytest.skip("checked by .ci/run right after command 2 (RECIPE_CHECK_BUDGET=1), on that run's durations")
    seconds = slow_command_2_durations(json.loads(DURATIONS.read_text()))
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])
    assert sum(seconds.values()) <= COMMAND_2_SLOW_TOTAL_S, slowest[:10]
    assert [(k, v) for k, v in slowest if v > COMMAND_2_SLOW_EACH_S] == []


def test_budget_check_counts_only_command_2s_slow_tests_that_ran():
    durations = {"a": {"slow": True, "extended": False, "outcome": "passed", "seconds": 10.0},
                 "b": {"slow": True, "extended": True, "outcome": "passed", "seconds": 500.0},
                 "c": {"slow": False, "extended": False, "outcome": "passed", "seconds": 7.0},
                 "d": {"slow": True, "extended": False, "outcome": "failed", "seconds": 3.5},
                 "e": {"slow": True, "extended": False, "outcome": "skipped", "seconds": 0.1}}
    assert slow_command_2_durations(durations) == {"a": 10.0, "d": 3.5}


def test_every_slow_test_states_its_time_limit():
    """A slow test names its own pytest-timeout limit (the default, [tool:pytest] timeout, is for fast tests)."""
    missing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marks = [ast.unparse(d) for d in node.decorator_list]
                if any("mark.slow" in m for m in marks) and not any("mark.timeout(" in m for m in marks):
                    missing.append(f"{path.name}::{node.name}")
    assert missing == []
