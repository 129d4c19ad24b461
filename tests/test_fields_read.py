"""Every argument field is read by the code: a flag nothing reads would be accepted, documented and ignored."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from pathlib import Path

import pytest

from conftest import ROOT


def _argument_dataclasses() -> list[type]:
    """The entry points' argument dataclasses, from the one table of commands (not from any module's source);
    detr-train's TrainingOptions as the DetectionTrainingArguments it parses into."""
    from recipe.config.commands import COMMANDS
    from recipe.config.load import DetectionTrainingArguments, TrainingOptions

    found = {DetectionTrainingArguments if d is TrainingOptions else d
             for command in COMMANDS.values() for d in command.dataclasses}
    return sorted(found, key=lambda d: d.__name__)


def _own_fields(cls: type) -> list[str]:
    """Fields `cls` adds to transformers' TrainingArguments (those are read by the Trainer)."""
    from transformers import TrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)} if issubclass(cls, TrainingArguments) else set()
    return [f.name for f in dataclasses.fields(cls) if f.name not in inherited]


@functools.cache
def _reads() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """name -> the classes (or "" at module level) around each `.name` load, and around each "name" string literal
    in modules that declare no argument dataclass (getattr(args, name) over a table of names), in recipe/ and
    scripts/."""
    declaring = {Path(inspect.getsourcefile(cls)).resolve() for cls in _argument_dataclasses()}
    declaring.add((ROOT / "recipe" / "parsing.py").resolve())  # the parser names every field: not a read
    attributes, strings = {}, {}
    for path in [*(ROOT / "recipe").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        owner = {}
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                owner[node] = cls.name  # innermost last: ast.walk visits outer classes first
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attributes.setdefault(node.attr, set()).add(owner.get(node, ""))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier()
                  and path.resolve() not in declaring):
                strings.setdefault(node.value, set()).add(owner.get(node, ""))
    return attributes, strings


def _unread(cls: type, attributes: dict[str, set[str]], strings: dict[str, set[str]]) -> list[str]:
    """`cls`'s own fields that no code outside its class body (or its bases') loads as `.field` or names in a
    string literal outside the modules that declare the dataclasses."""
    own = {c.__name__ for c in cls.__mro__}
    return [name for name in _own_fields(cls)
            if not (attributes.get(name, set()) - own) and not (strings.get(name, set()) - own)]


@pytest.mark.parametrize("cls", _argument_dataclasses(), ids=lambda c: c.__name__)
def test_every_argument_field_is_read(cls):
    """Dead flags are removed, not kept: each field is read somewhere in recipe/ or scripts/."""
    unread = _unread(cls, *_reads())
    assert not unread, f"{cls.__name__}: no code reads {unread}; remove them (and their docs) or read them"


def test_unread_fields_are_reported():
    """The rule on a hand-made table: a read at module level or in another class counts, one in the field's own
    class (its __post_init__ checks) or a base class does not."""

    @dataclasses.dataclass
    class Base:
        checked: int = 0

    @dataclasses.dataclass
    class Args(Base):
        used: int = 0
        by_name: int = 0
        self_only: int = 0
        never: int = 0

    attributes = {"used": {""}, "self_only": {"Args"}, "checked": {"Base", "Args"}}
    strings = {"by_name": {"Trainer"}, "never": set()}
    assert _unread(Args, attributes, strings) == ["checked", "self_only", "never"]


def test_the_argument_dataclasses_are_found():
    """The table of commands names each entry point's dataclasses (a module split must not hide one from the check
    above)."""
    assert {"DatasetArguments", "DatasetSplitArguments", "DataArguments", "ModelArguments", "EvalArguments",
            "EvaluateScriptArguments", "DetectionTrainingArguments", "DemoDataArguments",
            "ConvertArguments"} <= {c.__name__ for c in _argument_dataclasses()}
