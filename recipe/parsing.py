"""The parser machinery behind every entry point: field constraints, YAML files, dashed aliases.

`parse_args(argv, dataclasses)`: `[CONFIG.yaml] [--field value ...]` -> one instance of each dataclass.
Dataclass defaults < YAML file < command line; an unknown key or flag is an error. Flags are snake_case with
a dashed twin (`--train_img` / `--train-img`), plus the aliases of `DASHED_ALIASES`. Allowed values are
declared in each field's metadata (`arg(..., choices=, range=, length=, required=)`) and checked by
`check_fields` when the dataclass is built, so a bad value, from YAML or a flag, is one `ConfigError` line
before any data or model is loaded. The recipe's dataclasses live in `recipe/config.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import sys
from dataclasses import MISSING, field
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .errors import ConfigError

# Metadata keys checked here; HfArgumentParser never sees them (it would pass them to argparse).
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
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
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
class RecipeArgumentParser(HfArgumentParser):
    """HfArgumentParser whose errors are ConfigErrors (argparse would print the usage and exit), which
    recognises no abbreviations (a typo must not silently set another field), and which keeps the
    recipe's check keys out of argparse (they are enforced by `check_fields`, also for YAML values)."""

    def __init__(self, dataclass_types, *, only: set[str] | None = None, alias_of: dict | None = None, **kwargs):
        # Set before HfArgumentParser adds the fields (it does so in its __init__).
        self._only, self._alias_of = only, alias_of or {}
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    def _add_dataclass_arguments(self, dtype):
        """Only the fields the entry point reads (`only`); each dataclass in its own titled group (its
        `_argument_group_name`), the entry point's own one first, untitled."""
        kept = [f for f in dataclasses.fields(dtype) if f.init and (self._only is None or f.name in self._only)]
        for f in dataclasses.fields(dtype):  # the others keep their defaults (HfArgumentParser reads every field)
            if f.init and f not in kept:
                self.set_defaults(**{f.name: f.default_factory() if f.default_factory is not MISSING else f.default})
        if not kept:
            return
        target = self.add_argument_group(dtype._argument_group_name) if hasattr(
            dtype, "_argument_group_name") else self
        hints = field_types(dtype)
        for f in kept:
            f.type = hints[f.name]
            self._parse_dataclass_field(target, f)

    def _parse_dataclass_field(self, parser, f):
        meta = {k: v for k, v in f.metadata.items() if k not in CHECK_KEYS}
        notes = [f"one of: {', '.join(map(str, f.metadata['choices']))}" if "choices" in f.metadata else "",
                 f"range {f.metadata['range']}" if "range" in f.metadata else "",
                 "required" if f.metadata.get("required") else ""]
        also = [alias for alias, targets in self._alias_of.items() if f"--{f.name}" in targets]
        if also:
            notes.append(f"also {' / '.join(also)}")
        if any(notes):
            meta["help"] = f"{meta.get('help', '')} ({'; '.join(n for n in notes if n)})".strip()
        stripped = copy.copy(f)
        stripped.metadata = meta
        HfArgumentParser._parse_dataclass_field(parser, stripped)

    def error(self, message):
        raise ConfigError(message)


def parse_args(argv: list[str] | None, dataclasses_: tuple, *, aliases: dict | None = None,
               defaults: dict | None = None, prog: str | None = None, only: set[str] | None = None) -> tuple:
    """[CONFIG.yaml] [--field value ...] -> one instance of each of `dataclasses_`, in that order.

    `aliases`: extra spellings -> the flags they stand for (default `DASHED_ALIASES`); `defaults`: entry-point
    defaults below the YAML file; `only`: the fields this entry point reads (the others keep their defaults, and
    a flag or YAML key naming one is an error saying so). Every error (unknown key or flag, bad value, bad
    combination) is a ConfigError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or Path(sys.argv[0]).name
    values = dict(defaults or {})
    source = "the defaults"
    if argv and argv[0].endswith((".yaml", ".yml")):
        source = argv[0]
        values.update(load_yaml(argv.pop(0), dataclasses_, prog=prog, only=only))
    if any(issubclass(dc, TrainingArguments) for dc in dataclasses_) and launched_without_cuda():
        # Under torchrun / `accelerate launch --multi_gpu` on a machine without CUDA, the Trainer joins the
        # processes in a (gloo) group only with use_cpu=True; otherwise each trains alone, silently.
        values.setdefault("use_cpu", True)
    aliases = DASHED_ALIASES if aliases is None else aliases
    parser = RecipeArgumentParser(dataclasses_, prog=prog, usage=f"{prog} [CONFIG.yaml] [--field value ...]",
                                  only=only, alias_of=aliases)
    known = set(parser._option_string_actions)
    parser.set_defaults(**values)
    argv = apply_aliases(argv, aliases, known)
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True,
                                                           look_for_args_file=False)
    except ValueError as e:  # TrainingArguments' own checks
        raise ConfigError(" ".join(str(e).split())) from None
    if rest:
        unread = not_read_here(rest, dataclasses_, only)
        if unread:
            raise ConfigError(f"{', '.join(unread)}: not read by {prog} (an option of training or of another "
                              f"command); see `{prog} --help` for its options")
        raise ConfigError(f"unknown argument(s) {' '.join(redact(rest))}; see `{prog} --help`")
    given = {token[2:].partition("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    for instance in parsed:  # combinations only the command line can make (a flag that would have no effect)
        check = getattr(instance, "check_command_line", None)
        if check is not None:
            check(given, source)
    return tuple(parsed)


def not_read_here(tokens: list[str], dataclasses_: tuple, only: set[str] | None) -> list[str]:
    """The flags among `tokens` that name a field of `dataclasses_` the entry point does not read."""
    if only is None:
        return []
    fields = {f.name for dc in dataclasses_ for f in dataclasses.fields(dc)} - only
    flags = [t.partition("=")[0] for t in tokens if t.startswith("--")]
    return [flag for flag in flags if flag[2:].replace("-", "_") in fields]


def apply_aliases(argv: list[str], aliases: dict, known: set[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        targets = [t for t in aliases.get(flag, []) if t in known] if flag not in known else []
        if not targets:
            out.append(argv[i])
        else:
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{flag} needs a value")
                i += 1
                value = argv[i]
            for target in targets:
                out += [target, value]
        i += 1
    return out


def redact(tokens: list[str]) -> list[str]:
    """Values after a flag that names a token are secrets: never echo them into logs."""
    return ["***" if i and "tok" in tokens[i - 1].lower() and not tok.startswith("-") else tok
            for i, tok in enumerate(tokens)]


def load_yaml(path: str | Path, dataclasses_: tuple, *, prog: str = "detr-train", only: set[str] | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file is a mapping of field: value")
    known = {f.name for dc in dataclasses_ for f in dataclasses.fields(dc)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; see `{prog} --help`")
    unread = sorted(set(values) - only) if only is not None else []
    if unread:
        raise ConfigError(f"{path}: key(s) {unread} not read by {prog}; see `{prog} --help`")
    if isinstance(values.get("model_config"), dict):
        values["model_config"] = json.dumps(values["model_config"])
    return values


def launched_without_cuda() -> bool:
    """True in a multi-process launch (WORLD_SIZE > 1) on a machine without CUDA."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
