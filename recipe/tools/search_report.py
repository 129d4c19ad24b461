"""What a hyper-parameter search (`recipe.tools.search`) leaves: search.json / .md (one row per trial) and best.yaml
(the search's training config with the best complete trial's values), and the mapping from a trial's params to the
fields they set."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import yaml

from recipe.config.fields import DASHED_ALIASES


def values_of(params: dict) -> dict:
    """A trial's params as the fields they set (ema_horizon h -> ema_decay 1 - 1/h)."""
    values = dict(params)
    if "ema_horizon" in values:
        values["ema_decay"] = 1.0 - 1.0 / values.pop("ema_horizon")
    return values


def applied(params: dict) -> dict:
    """`values_of`, and max_steps -1 beside an epoch budget (a max_steps of the config would win over it)."""
    values = values_of(params)
    if "num_train_epochs" in values:
        values["max_steps"] = -1
    return values


def trial_rows(study) -> list[dict]:
    """One row per trial: trial, state, the fields its params set, eval_map and eval_map_50 of its last evaluation."""
    return [{"trial": t.number, "state": t.state.name.lower(), **values_of(t.params),
             "eval_map": t.user_attrs.get("eval_map"), "eval_map_50": t.user_attrs.get("eval_map_50"),
             "step": t.user_attrs.get("step")} for t in study.get_trials(deepcopy=False)]


def best_row(rows: list[dict]) -> dict | None:
    complete = [r for r in rows if r["state"] == "complete" and r["eval_map"] is not None]
    return max(complete, key=lambda r: r["eval_map"]) if complete else None


def write_table(root: Path, rows: list[dict]) -> None:
    """search.json (the rows) and search.md (a table, and the best complete trial)."""
    (root / "search.json").write_text(json.dumps(rows, indent=1))
    fixed = ("trial", "state", "eval_map", "eval_map_50", "step")
    params = list(dict.fromkeys(k for r in rows for k in r if k not in fixed))
    columns = ["trial", "state", *params, "eval_map", "eval_map_50", "step"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c), c) for c in columns) + " |" for r in rows]
    best = best_row(rows)
    lines.append("\nbest: " + (f"trial {best['trial']} (eval_map {best['eval_map']:.4f}), its values in best.yaml"
                               if best else "none complete yet"))
    (root / "search.md").write_text("\n".join(lines) + "\n")


def cell(value, column: str) -> str:
    if value is None:
        return "-"
    if column.startswith("eval_"):
        return f"{value:.4f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_best_yaml(path: Path, training: list[str], best: dict) -> None:
    """CONFIG.yaml's values, the training flags given to the search (as parsed), then the best trial's fields: a
    training config `detr-train` takes as is."""
    from recipe.config.load import parse_config

    config = parse_config(training)
    values = {}
    if training and training[0].endswith((".yaml", ".yml")):
        values = yaml.safe_load(Path(training[0]).read_text()) or {}
    for name in flag_names(training):
        values[name] = plain(name, next(getattr(d, name) for d in config if hasattr(d, name)))
    values.update(applied({k: v for k, v in best.items() if k not in ("trial", "state", "eval_map", "eval_map_50",
                                                                      "step")}))
    header = (f"# detr-search: trial {best['trial']} of {path.parent} (eval_map {best['eval_map']:.4f} after "
              f"{best['step']} steps), its values over the search's training config\n")
    path.write_text(header + yaml.safe_dump(values, sort_keys=False))


def flag_names(training: list[str]) -> list[str]:
    """The fields the training flags name (dashed twins and aliases resolved), in order."""
    names = []
    for token in training:
        flag = token.partition("=")[0]
        if token.startswith("--"):
            names += [t[2:].replace("-", "_") for t in DASHED_ALIASES.get(flag, [flag])]
    return list(dict.fromkeys(names))


def plain(name: str, value):
    """A parsed value as YAML writes it and the parser reads it back."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if name == "model_config" and isinstance(value, str):
        return json.loads(value)
    return value


def print_search(root: Path) -> None:
    print((root / "search.md").read_text())
    written = ", search.json" + (", best.yaml" if (root / "best.yaml").is_file() else "")
    print(f"-> {root / 'search.md'}{written}")
