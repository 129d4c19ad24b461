"""detr-compare's arguments: its own flags (`CompareArguments`), the plan YAML, and the training flags given to every
family. `parse_compare(argv)` -> (CompareArguments, {family: {config, overrides}}, training flags).

A plan YAML holds CompareArguments' fields plus `training:` (training fields for every family) and `families:`, a
list of names or a mapping from each name to its overrides (`config:` a training YAML, relative to the plan's folder
or a name of configs/; any training field, e.g. `model_config`). On the command line, every flag that is not one of
CompareArguments' is a training flag. A family's training arguments: its config < its overrides < the training flags
< what the comparison sets (`family_argv`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from recipe.config.command_arguments import CompareArguments
from recipe.core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def parse_compare(argv: list[str]) -> tuple[CompareArguments, dict[str, dict], list[str]]:
    """-> (CompareArguments, {family: {"config": path, "overrides": {...}}}, training flags for every family)."""
    from recipe.config.load import parse_command

    argv = list(argv)
    plan: dict = {}
    plan_path = None
    if argv and argv[0].endswith((".yaml", ".yml")):
        plan_path = Path(argv.pop(0))
        if not plan_path.is_file():
            raise ConfigError(f"{plan_path}: no such plan file")
        plan = yaml.safe_load(plan_path.read_text()) or {}
        if not isinstance(plan, dict):
            raise ConfigError(f"{plan_path}: a plan is a mapping (families, training, and detr-compare's options)")
    own = set(CompareArguments.__dataclass_fields__)
    compare_argv, training_argv = split_flags(argv, own)
    families_spec = plan.pop("families", None)
    shared = plan.pop("training", None) or {}
    if not isinstance(shared, dict):
        raise ConfigError(f"{plan_path}: `training` is a mapping of training fields")
    plan_flags = [token for key, value in plan.items() for token in as_flags(key, value)]
    unknown = [k for k in plan if k not in own]
    if unknown:
        raise ConfigError(f"{plan_path}: unknown key(s) {', '.join(unknown)}; a plan holds families, training and "
                          f"detr-compare's options ({', '.join(sorted(own))})")
    (args,) = parse_command([*plan_flags, *compare_argv], "detr-compare")
    planned = families_from(plan_path, families_spec)
    families = planned if not args.families else {  # the command line's list wins; the plan's overrides stay
        name: planned.get(name) or {"config": resolve_config(name, Path.cwd()), "overrides": {}}
        for name in args.families}
    if not families:
        raise ConfigError("no families to compare: give --families NAME ... or a plan YAML with `families:`")
    return args, families, [t for k, v in shared.items() for t in as_flags(k, v)] + training_argv


def families_from(plan_path: Path | None, spec) -> dict[str, dict]:
    """A plan's `families` (a list of names, or a mapping name -> overrides) -> {name: {config, overrides}}."""
    if spec is None:
        return {}
    if isinstance(spec, list):
        spec = {name: {} for name in spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{plan_path}: `families` is a list of names or a mapping name -> overrides")
    base = plan_path.parent if plan_path else Path.cwd()
    out = {}
    for name, overrides in spec.items():
        overrides = dict(overrides or {})
        config = overrides.pop("config", None)
        out[str(name)] = {"config": resolve_config(config or str(name), base), "overrides": overrides}
    return out


def resolve_config(name: str, base: Path) -> str:
    """A family's training YAML: a path (relative to the plan's folder or the working one), or a config name of
    configs/ (`deformable_detr`: its COCO fine-tuning recipe, deformable_detr_coco.yaml)."""
    for candidate in (Path(name), base / name, CONFIGS / name, CONFIGS / f"{name}.yaml", CONFIGS / f"{name}_coco.yaml"):
        if candidate.is_file():
            return str(candidate)
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    raise ConfigError(f"family {name!r}: no such config file or name in {CONFIGS} ({', '.join(names)})")


def split_flags(argv: list[str], own: set[str]) -> tuple[list[str], list[str]]:
    """Split `--flag value...` groups into those naming a field of `own` and the rest (the training flags)."""
    mine, rest, target = [], [], None
    for token in argv:
        if token.startswith("--"):
            name = token[2:].partition("=")[0].replace("-", "_")
            target = mine if name in own else rest
        elif target is None:
            raise ConfigError(f"{token}: a value without its --flag (a plan YAML goes first)")
        target.append(token)
    return mine, rest


def as_flags(key: str, value) -> list[str]:
    """A YAML key and value -> command-line tokens (`model_config` and other mappings as JSON)."""
    flag = f"--{key}"
    if isinstance(value, dict):
        return [flag, json.dumps(value)]
    if isinstance(value, list):
        return [flag, *(str(v) for v in value)]
    if isinstance(value, bool):
        return [flag, "true" if value else "false"]
    return [flag, "none" if value is None else str(value)]


def parse_budget(budget: str | None) -> float | None:
    """'90s', '30m', '2h' (or plain seconds) -> seconds."""
    if budget is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(budget))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--budget {budget}: give a time such as 90s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def family_argv(spec: dict, training: list[str], out: Path, extra: list[str] = ()) -> list[str]:
    overrides = [t for k, v in spec["overrides"].items() for t in as_flags(k, v)]
    return [spec["config"], *overrides, *training, *extra, "--output_dir", str(out), "--overwrite_output_dir", "true"]
