"""`--help` of every entry point, built from the argument dataclasses without importing torch or transformers.

The parser (`recipe/config/parser.py`) builds on transformers' HfArgumentParser, and `detr-train`'s dataclass on its
TrainingArguments, which import torch: seconds before a line of help. Help is printed here instead, from the same
fields with the same flags and notes; `tests/test_configs.py` checks that every flag listed here is one the parser
takes. Each command's own options come first (untitled), then one titled group per shared dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from types import UnionType
from typing import Union, get_args, get_origin

from recipe.config.commands import COMMANDS
from recipe.config.fields import field_types, help_notes


def asks_for_help(argv: list[str] | None) -> bool:
    """-h or --help among the arguments (before a `--`), as argparse would see it."""
    argv = sys.argv[1:] if argv is None else argv
    tokens = argv[:argv.index("--")] if "--" in argv else argv
    return "-h" in tokens or "--help" in tokens


def help_parser(prog: str, yaml_values: dict | None = None) -> argparse.ArgumentParser:
    """An argparse parser holding `prog`'s options as the real parser adds them (flags, nargs, notes, defaults:
    the dataclass's, then the entry point's, then `yaml_values`); for help only: it converts and checks nothing."""
    command = COMMANDS[prog]
    parser = argparse.ArgumentParser(prog=prog, usage=f"{prog} [CONFIG.yaml] [--field value ...]",
                                     description=command.description, allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for dtype in command.dataclasses:
        kept = [f for f in dataclasses.fields(dtype) if f.init and (command.only is None or f.name in command.only)]
        if not kept:
            continue  # no empty section
        target = parser.add_argument_group(dtype._argument_group_name, getattr(
            dtype, "_argument_group_description", None)) if hasattr(dtype, "_argument_group_name") else parser
        for f in kept:
            add_field(target, f, field_types(dtype)[f.name], command.aliases)
    parser.set_defaults(**{**(command.defaults or {}), **(yaml_values or {})})
    return parser


def add_field(group, f: dataclasses.Field, annotation, aliases: dict) -> None:
    """The option strings and nargs HfArgumentParser gives a field (`--name`, `--dashed-name`, metadata aliases;
    `--no_name` for a bool that defaults to True)."""
    dashed = [f"--{f.name.replace('_', '-')}"] if "_" in f.name else []
    flags = [f"--{f.name}", *dashed, *f.metadata.get("aliases", [])]
    args = [a for a in get_args(annotation) if a is not type(None)]
    optional = get_origin(annotation) in (Union, UnionType) and len(args) == 1
    annotation = args[0] if optional else annotation
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    kwargs = {"help": help_notes(f, aliases) or None, "default": None if default is dataclasses.MISSING else default}
    if annotation is bool and (not optional or f.default is not None):
        kwargs["nargs"] = "?"  # `--amp` alone means true
    elif get_origin(annotation) is list:
        kwargs["nargs"] = "+"
    group.add_argument(*flags, **kwargs)
    if annotation is bool and f.default is True:
        group.add_argument(f"--no_{f.name}", f"--no-{f.name.replace('_', '-')}", action="store_false",
                           dest=f.name, default=False, help=f.metadata.get("help"))


def format_help(prog: str, argv: list[str] | None = None) -> str:
    """`prog --help`; a CONFIG.yaml first in `argv` shows its values as the defaults, as the parser would."""
    return help_parser(prog, yaml_defaults(argv or [])).format_help()


def yaml_defaults(argv: list[str]) -> dict:
    """The values of the config file that starts `argv`, if it is a readable mapping (the parser reports the rest)."""
    if not argv or not argv[0].endswith((".yaml", ".yml")):
        return {}
    import yaml

    try:
        with open(argv[0]) as f:
            values = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return {}
    return values if isinstance(values, dict) else {}


def print_help_and_exit(prog: str, argv: list[str] | None = None) -> None:
    sys.stdout.write(format_help(prog, sys.argv[1:] if argv is None else argv))
    sys.exit(0)
