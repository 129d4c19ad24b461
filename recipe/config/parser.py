"""The parser machinery behind every entry point: field constraints, YAML files, dashed aliases.

`parse_args(argv, dataclasses)`: `[CONFIG.yaml] [--field value ...]` -> one instance of each dataclass.
Dataclass defaults < YAML file < command line; an unknown key or flag is an error. Flags are snake_case with
a dashed twin (`--train_img` / `--train-img`), plus the aliases of `DASHED_ALIASES`. Allowed values are
declared in each field's metadata (`arg(..., choices=, range=, length=, required=)`) and checked by
`check_fields` when the dataclass is built, so a bad value, from YAML or a flag, is one `ConfigError` line
before any data or model is loaded (`recipe/config/fields.py`). The recipe's dataclasses live in
`recipe/config/arguments.py` and
`recipe/config/command_arguments.py`; `recipe/config/load.py` puts them together per entry point.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from dataclasses import MISSING
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

from recipe.config.fields import (  # noqa: F401 - arg, check_fields, check_writable_file: re-exported for the dataclasses' modules
    CHECK_KEYS,
    DASHED_ALIASES,
    arg,
    check_fields,
    check_writable_file,
    field_types,
    help_notes,
)
from recipe.core.errors import ConfigError


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
        if help_notes(f, self._alias_of):
            meta["help"] = help_notes(f, self._alias_of)
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
