"""`--help` of every entry point: printed without importing torch or transformers, the command's own options first,
no empty section, and the very flags the real parser takes (the help is built apart from it,
`recipe/cli/help.py`)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import recipe.config.load
from conftest import ROOT
from recipe.cli import main as cli
from recipe.cli.help import help_parser
from recipe.config.command_arguments import ANNOTATION_FORMATS, IMAGE_CHECKS
from recipe.config.commands import COMMANDS
from recipe.config.fields import DASHED_ALIASES

MAINS = {"detr-train": "train_main", "detr-evaluate": "evaluate_main", "detr-predict": "predict_main",
         "detr-check-data": "check_data_main", "detr-browse-dataset": "browse_dataset_main",
         "detr-export": "export_main", "detr-convert-bdd100k": "convert_bdd100k_main",
         "detr-make-demo-data": "make_demo_data_main", "detr-compare": "compare_main",
         "detr-search": "search_main"}


def test_every_entry_point_has_its_help():
    assert set(MAINS) == set(COMMANDS)
    setup_cfg = (ROOT / "setup.cfg").read_text()
    for prog, main in MAINS.items():
        assert f"{prog} = recipe.cli.main:{main}" in setup_cfg


def test_help_imports_neither_torch_nor_transformers_and_has_no_empty_section():
    """One fresh interpreter runs every entry point's --help, then lists what got imported."""
    script = f"""
import contextlib, io, json, sys
from recipe.cli import main as cli
out = {{}}
for prog, main in {MAINS!r}.items():
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            getattr(cli, main)([*(["configs/demo.yaml"] if prog == "detr-train" else []), "--help"])
        except SystemExit as e:
            code = e.code
    out[prog] = [code, buffer.getvalue()]
heavy = sorted(m for m in ("torch", "transformers", "datasets", "cv2", "albumentations") if m in sys.modules)
print(json.dumps({{"heavy": heavy, "help": out}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    for prog, (code, text) in report["help"].items():
        assert code in (0, None) and text.startswith(f"usage: {prog} [CONFIG.yaml]"), prog
        lines = text.splitlines()
        sections = [i for i, line in enumerate(lines) if line and not line.startswith(" ") and line.endswith(":")]
        assert lines[sections[0]] == "options:", prog
        for start, end in zip(sections, [*sections[1:], len(lines)]):  # each section holds at least one option
            assert any(line.startswith("  -") for line in lines[start:end]), f"{prog}: empty section {lines[start]}"
    train = report["help"]["detr-train"][1]
    assert [line for line in train.splitlines() if line.endswith(":") and not line.startswith(" ")] == [
        "options:", "data:", "model:", "training:", "evaluation:"]
    assert "Every other transformers.TrainingArguments option" in " ".join(train.split())
    assert "--lr_scheduler_type LR_SCHEDULER_TYPE" not in train and "--use_ema [USE_EMA]" in train
    assert "(default: data/demo/val/annotations.json)" in train  # the YAML gives the defaults shown, as it does
    assert len(train.splitlines()) < 300  # was 664, mostly transformers' own options


class _Parsed(Exception):
    pass


def test_help_lists_exactly_the_flags_the_parser_takes(monkeypatch):
    """Each entry point's real call of `parse_args` (caught here) against its help: same dataclasses, aliases, fields
    and flags; for detr-train, the help's flags plus transformers' own TrainingArguments fields."""
    from recipe.config.parser import RecipeArgumentParser

    calls = {}

    def catch(argv, dataclasses_, *, aliases=None, defaults=None, prog=None, only=None):
        calls[prog] = (dataclasses_, DASHED_ALIASES if aliases is None else aliases, only, defaults)
        raise _Parsed

    monkeypatch.setattr(recipe.config.load, "parse_args", catch)
    for main in MAINS.values():
        with pytest.raises(_Parsed):
            getattr(cli, main)([])
    for prog, command in COMMANDS.items():
        dataclasses_, aliases, only, defaults = calls[prog]
        training_arguments = recipe.config.load.DetectionTrainingArguments
        assert [d.__name__ for d in command.dataclasses] == [
            "TrainingOptions" if d is training_arguments else d.__name__ for d in dataclasses_]
        assert (command.aliases, command.only, command.defaults) == (aliases, only and frozenset(only), defaults)
        real = set(RecipeArgumentParser(dataclasses_, only=only, alias_of=aliases)._option_string_actions)
        shown = set(help_parser(prog)._option_string_actions)
        assert shown <= real, prog
        inherited = {f.name for f in dataclasses.fields(recipe.config.load.TrainingArguments)} - {
            f.name for f in dataclasses.fields(recipe.config.load.TrainingOptions)}
        missing = {flag.lstrip("-").removeprefix("no_").removeprefix("no-").replace("-", "_") for flag in real - shown}
        assert missing <= (inherited if prog == "detr-train" else set()), prog


def test_the_argument_choices_are_the_data_layers_registry():
    """Format names, box conventions, image checks and splits are named once, in recipe/data/choices.py: every
    option that takes one offers exactly the registry's names, and no module outside recipe/data/ spells them."""
    import re

    import recipe.config.arguments
    import recipe.config.command_arguments
    from recipe.data import choices

    registry = {"annotation_format": ANNOTATION_FORMATS, "image_check": IMAGE_CHECKS, "split": list(choices.SPLITS),
                "box_convention": list(choices.BOX_CONVENTIONS), "predictions_format": list(choices.RESULT_FORMATS)}
    seen = set()
    for module in (recipe.config.arguments, recipe.config.command_arguments):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                continue
            for f in dataclasses.fields(cls):
                if f.name in registry:
                    seen.add(f.name)
                    written = cls.__name__ == "DemoDataArguments"  # a writer: a named format, not "auto"
                    expected = [n for n in registry[f.name] if not (written and n == "auto")]
                    assert f.metadata["choices"] == expected, (cls.__name__, f.name)
    assert seen == set(registry)
    assert (tuple(ANNOTATION_FORMATS), tuple(IMAGE_CHECKS)) == (choices.ANNOTATION_FORMATS, choices.IMAGE_CHECKS)
    spelled = re.compile(r"""\[\s*["'](auto|coco|inclusive|decode|train)["'],\s*"""
                         r"""["'](coco|bdd100k|exclusive|header|validation)""")
    outside = [str(p.relative_to(ROOT)) for p in (ROOT / "recipe").rglob("*.py")
               if p.relative_to(ROOT / "recipe").parts[0] != "data" and spelled.search(p.read_text())]
    assert outside == []
