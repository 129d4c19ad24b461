"""A dataclass field with its help and constraints (`arg`), and the checks behind them (`check_fields`).

Light on purpose (no torch, transformers or YAML): the argument dataclasses and the fast `--help` build on it.
The parser itself is `recipe/config/parser.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import MISSING, field
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

from recipe.core.errors import ConfigError

# Metadata keys checked by `check_fields`; the parser never hands them to argparse.
CHECK_KEYS = ("choices", "range", "length", "required")


def arg(default=MISSING, *, help: str, default_factory=MISSING, choices=None, range: str | None = None,
        length: int | None = None, required: bool = False, aliases: list[str] | None = None):
    """A dataclass field with its help and the constraints `check_fields` enforces.

    range: an interval such as "[1, inf)" or "(0, 1]"; for a list, every element must lie in it.
    required: None is not accepted (give the flag or the YAML key)."""
    metadata = {"help": help}
    for key, value in (("choices", choices), ("range", range), ("length", length), ("required", required or None),
                       ("aliases", aliases)):
        if value is not None:
            metadata[key] = value
    return field(default=default, default_factory=default_factory, metadata=metadata)


def check_fields(obj) -> None:
    """Type, choices, range, length and required of every field of a dataclass instance, from its metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        if value is None:
            if f.metadata.get("required"):
                raise ConfigError(f"{f.name} is required: pass --{f.name} VALUE or set it in the YAML file")
            continue
        check_type(f.name, value, field_types(type(obj))[f.name])
        meta = f.metadata
        for item in value if isinstance(value, list) and "choices" in meta else [value]:  # a list: each element
            if "choices" in meta and item not in meta["choices"]:
                raise ConfigError(f"{f.name}: {item!r} is not one of {', '.join(map(str, meta['choices']))}")
        if "length" in meta and len(value) != meta["length"]:
            raise ConfigError(f"{f.name} takes {meta['length']} values, got {len(value)}: {value}")
        for item in value if isinstance(value, list) else [value]:
            if "range" in meta and not in_range(item, meta["range"]):
                raise ConfigError(f"{f.name} must be in {meta['range']}, got {item!r}")


SIMPLE_TYPES = (int, float, str, bool)


def check_type(name: str, value, annotation) -> None:
    """Values from YAML reach the dataclass as YAML typed them (argparse converts only strings): check the
    plain ones (int, float, str, bool, list[int], optionals of these); other annotations are left alone."""
    kind = simple_type(annotation)
    if kind is None:
        return
    container, item_type = kind
    if container is list and not isinstance(value, list):
        raise ConfigError(f"{name} takes a list of {item_type.__name__}, got {value!r}")
    for item in value if container is list else [value]:
        if isinstance(item, bool) != (item_type is bool) or not isinstance(
                item, (int, float) if item_type is float else item_type):
            raise ConfigError(f"{name} takes {'a list of ' if container else ''}{item_type.__name__} "
                              f"values, got {item!r}")


def simple_type(annotation) -> tuple | None:
    """-> (None, int) for int / int | None, (list, int) for list[int], None for anything else."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return simple_type(args[0])
    if get_origin(annotation) is list and len(args) == 1 and args[0] in SIMPLE_TYPES:
        return list, args[0]
    return (None, annotation) if annotation in SIMPLE_TYPES else None


@functools.cache
def field_types(cls) -> dict:
    """Resolved annotations of a dataclass (this module postpones them)."""
    return get_type_hints(cls)


def in_range(value, interval: str) -> bool:
    """`interval` like "[1, inf)": square brackets include the bound, round ones exclude it."""
    low, high = (float(v) for v in interval[1:-1].split(","))
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def check_writable_file(name: str, path: str | None) -> None:
    if path and Path(path).is_dir():
        raise ConfigError(f"{name} {path} is a folder; give a file name (e.g. {Path(path) / 'metrics.json'})")


# The original script's spellings -> the fields they set (a dashed twin of every field, e.g. --train-img for
# --train_img, exists anyway). An alias is used only when the entry point's dataclasses have its targets.
DASHED_ALIASES = {
    "--num-epochs": ["--num_train_epochs"],
    "--batch-size": ["--per_device_train_batch_size", "--per_device_eval_batch_size"],
    "--num-workers": ["--dataloader_num_workers"],
    "--pretrained": ["--model_name_or_path"],
}


def help_notes(f: dataclasses.Field, alias_of: dict) -> str:
    """A field's help with its constraints and extra spellings appended: "... (one of: a, b; also --x)"."""
    meta = f.metadata
    notes = [f"one of: {', '.join(map(str, meta['choices']))}" if "choices" in meta else "",
             f"range {meta['range']}" if "range" in meta else "",
             "required" if meta.get("required") else ""]
    also = [alias for alias, targets in alias_of.items() if f"--{f.name}" in targets]
    if also:
        notes.append(f"also {' / '.join(also)}")
    text = meta.get("help", "")
    return f"{text} ({'; '.join(n for n in notes if n)})".strip() if any(notes) else text
