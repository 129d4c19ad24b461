"""A run's output folder before training: resume from its newest complete checkpoint (`--resume_from_checkpoint
last|auto`), or refuse to mix a new run's checkpoints with an old run's (unless `--overwrite_output_dir`)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recipe.core.errors import ConfigError

logger = logging.getLogger("recipe")


def prepare_output_dir(train_args) -> None:
    """`--resume_from_checkpoint last|auto` -> the newest complete checkpoint in output_dir (auto: none is a fresh
    start; see `newest_complete_checkpoint`).
    A new run into an output_dir that holds checkpoints is refused: its checkpoints would mix with the old
    ones (and `last` would later pick the wrong run), unless `--overwrite_output_dir`, which deletes them."""
    out = train_args.output_dir
    folders = checkpoint_folders(out) if out and os.path.isdir(out) else []
    resume = train_args.resume_from_checkpoint
    if resume in ("last", "auto"):
        last = newest_complete_checkpoint(out) if folders else None
        if last is None and resume == "last":
            raise ConfigError(f"--resume_from_checkpoint last: no complete checkpoint-<step> folder in {out}; "
                              "leave the flag out to start a new run (or use auto)")
        train_args.resume_from_checkpoint = last
        if last is not None:
            logger.warning("resuming from %s", last)
        return
    if resume is not None or not folders:
        return
    # transformers 5 dropped TrainingArguments.overwrite_output_dir; the recipe's arguments declare it.
    if not getattr(train_args, "overwrite_output_dir", False):
        raise ConfigError(f"{out} already holds checkpoints (newest: {os.path.basename(folders[0])}); pass "
                          "--resume_from_checkpoint last to continue that run, --overwrite_output_dir true to "
                          "delete them and start over, or another --output_dir")
    with train_args.main_process_first(desc="removing old checkpoints"):
        if train_args.should_save:
            for path in checkpoint_folders(out):
                logger.warning("--overwrite_output_dir: deleting %s", path)
                shutil.rmtree(path)


def checkpoint_folders(folder: str) -> list[str]:
    """The checkpoint-<step> folders in `folder`, newest (highest step) first."""
    found = []
    for name in os.listdir(folder):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(folder, name)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return [path for _, path in sorted(found, reverse=True)]


def newest_complete_checkpoint(folder: str) -> str | None:
    """The newest checkpoint-<step> folder holding a readable trainer_state.json, which the Trainer writes last
    (after weights, optimizer, scheduler and RNG states). A newer folder without it was cut off while being
    saved (a killed run) and is passed over, with a warning."""
    for path in checkpoint_folders(folder):
        try:
            json.loads(Path(path, TRAINER_STATE_NAME).read_text())
            return path
        except (OSError, ValueError):
            logger.warning("%s is incomplete (no readable %s: the run stopped while saving it); passing over it",
                           path, TRAINER_STATE_NAME)
    return None
