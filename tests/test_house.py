"""The house by job: a public API that survives file moves, every `recipe/...` path the docs name exists, and each
decision the recipe makes is made in one place (the rules below name the place; a second spelling fails here)."""

import ast
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOCS = ["README.md", "CONTRIBUTING.md", "docs/guide.md", "benchmarks/RESULTS.md"]


def recipe_sources():
    return sorted((ROOT / "recipe").rglob("*.py"))


def mentioned_paths(text: str) -> set[str]:
    """`recipe/...` paths written in `text`: modules (`.py`) and folders (a trailing `/`); `recipe/floor`, a ratio in a
    benchmark's output, is neither."""
    return set(re.findall(r"(?<![\w/.-])recipe/(?:[\w]+/)*(?:[\w]+\.py)?(?![\w/])", text)) - {"recipe/"}


def test_mentioned_paths_finds_files_and_folders():
    text = ("see `recipe/data/source.py`, recipe/engine/ and recipe/models/families.py: the table; not myrecipe/x.py, "
            "nor recipe/hf_example = 1.2x")
    assert mentioned_paths(text) == {"recipe/data/source.py", "recipe/engine/", "recipe/models/families.py"}


def test_every_recipe_path_the_docs_and_docstrings_name_exists():
    texts = {doc: (ROOT / doc).read_text() for doc in DOCS}
    for path in [*recipe_sources(), *sorted((ROOT / "scripts").glob("*.py")), *sorted((ROOT / "tests").glob("*.py")),
                 *sorted((ROOT / "benchmarks").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        docs = [ast.get_docstring(n) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
        comments = [line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line]
        texts[str(path.relative_to(ROOT))] = "\n".join(d for d in docs + comments if d)
    missing = sorted(f"{where}: {p}" for where, text in texts.items() for p in mentioned_paths(text)
                     if not (ROOT / p).exists())
    assert missing == [], "these paths moved or never existed:\n" + "\n".join(missing)


def test_public_api_resolves_and_imports_nothing_heavy():
    """`import recipe` stays light (every `--help` imports the package first); each public name resolves."""
    code = ("import sys, recipe; heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
            "print(heavy); print(sorted(n for n in recipe.__all__ if not callable(getattr(recipe, n))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout
    import recipe

    assert set(recipe.__all__) >= {"parse_config", "train", "evaluate", "predict", "export"}
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        recipe.trian  # noqa: B018


def test_readme_and_notebook_call_the_public_api():
    readme = (ROOT / "README.md").read_text()
    notebook = (ROOT / "notebooks" / "finetune.ipynb").read_text()
    assert "recipe.train(recipe.parse_config(" in readme
    for name in ("recipe.parse_config(", "recipe.train(", "recipe.evaluate(", "recipe.predict("):
        assert name in notebook, name
    assert "from recipe." not in notebook  # the notebook reaches inside no package


# ------------------------------------------------------------------------------------ each decision in one place

def spelled_outside(pattern: str, *allowed: str) -> list[str]:
    """'file:line' of each line of recipe/ matching `pattern`, outside the `allowed` files."""
    found = []
    for path in recipe_sources():
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line.split("#", 1)[0]):
                found.append(f"{rel}:{n}")
    return found


@pytest.mark.parametrize(("decision", "pattern", "home"), [
    ("am I the main process", r"process_index|is_world_process_zero|environ\.get\(\"RANK\"",
     "recipe/core/distributed.py"),
    ("reading --model_config", r"json\.loads\([^)]*model_config", "recipe/config/model_config.py"),
    ("the default family", r"[\"']deformable_detr[\"']", "recipe/config/model_config.py"),
    ("is this an exported file", r"endswith\([\"']\.onnx", "recipe/models/exported.py"),
    ("where the data comes from", r"\b(load_detection_dataset|load_dataset_splits|open_dataset|file_split)\(",
     "recipe/data/source.py"),
])
def test_each_decision_is_made_in_one_place(decision, pattern, home):
    # recipe/data/ builds the tables the source reads (its readers call each other); the family table names the
    # families it lists.
    readers = ["recipe/data/builder.py", "recipe/data/splits.py", "recipe/data/formats.py", "recipe/data/hf.py",
               "recipe/data/files.py"] if decision == "where the data comes from" else []
    families = ["recipe/models/families.py"] if decision == "the default family" else []
    assert (ROOT / home).is_file()
    assert spelled_outside(pattern, home, *readers, *families) == [], f"{decision}: decided in {home} only"


def test_the_commands_dataclasses_are_listed_once():
    """Which dataclasses each command parses is the table of recipe/config/commands.py: no entry point passes its
    own tuple to parse_args."""
    assert spelled_outside(r"parse_args\(argv, \(", "recipe/config/parser.py") == []
