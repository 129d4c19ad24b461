"""detr-search's arguments: its own flags (`SearchArguments`) and the training config every trial starts from.
`parse_search(argv)` -> (SearchArguments, the training argv: CONFIG.yaml first, then every flag that is not one of
SearchArguments'), as detr-compare splits its own flags from training's (`compare_plan.split_flags`).

`--budget` (`parse_schedule`): the schedule lengths a trial chooses from, in steps (max_steps) or epochs
(num_train_epochs).
"""

from __future__ import annotations

import re

from recipe.config.command_arguments import SearchArguments
from recipe.config.compare_plan import split_flags
from recipe.core.errors import ConfigError

UNITS = {"steps": "max_steps", "step": "max_steps", "epochs": "num_train_epochs", "epoch": "num_train_epochs"}


def parse_search(argv: list[str]) -> tuple[SearchArguments, list[str]]:
    """-> (SearchArguments, the training argv: [CONFIG.yaml,] then the training flags). Nothing is trained here; a
    bad training flag is found when `recipe.tools.search.search` parses the training config, before any trial."""
    from recipe.config.load import parse_command

    argv = list(argv)
    config = [argv.pop(0)] if argv and argv[0].endswith((".yaml", ".yml")) else []
    own, training = split_flags(argv, set(SearchArguments.__dataclass_fields__))
    (args,) = parse_command(own, "detr-search")
    return args, [*config, *training]


def parse_schedule(budget: list[str] | None, *, max_steps: int) -> tuple[str, list] | None:
    """`--budget 40steps 80steps` -> ("max_steps", [40, 80]); `2epochs 4.5epochs` -> ("num_train_epochs", [2.0, 4.5]);
    bare numbers are in the config's unit (steps when its max_steps > 0, else epochs). None: no --budget."""
    if not budget:
        return None
    fields = set()
    values = []
    for value in budget:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
        if not match or (match.group(2) and match.group(2) not in UNITS) or float(match.group(1)) <= 0:
            raise ConfigError(f"--budget {value}: give schedule lengths such as 40steps or 2epochs (or bare numbers "
                              "in the config's unit)")
        field = UNITS[match.group(2)] if match.group(2) else ("max_steps" if max_steps > 0 else "num_train_epochs")
        if field == "max_steps" and not float(match.group(1)).is_integer():
            raise ConfigError(f"--budget {value}: steps are whole numbers")
        fields.add(field)
        values.append(int(float(match.group(1))) if field == "max_steps" else float(match.group(1)))
    if len(fields) > 1:
        raise ConfigError(f"--budget {' '.join(budget)}: all in steps or all in epochs, not both")
    return fields.pop(), sorted(set(values))
