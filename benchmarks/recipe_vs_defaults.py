"""What the recipe's defaults are worth: python benchmarks/recipe_vs_defaults.py [--quick] [--config configs/demo.yaml]

Trains the demo config three times on the same budget (model, data, schedule, seed), through the recipe's own
config path (`recipe.parse_config` + `recipe.train`):
  recipe        the config as it is;
  transformers  transformers' defaults wherever the recipe differs: the knobs of `TRANSFORMERS_DEFAULTS`
                (auxiliary loss off, class cost 1, class loss weight 1, one lr for all parameters, weight
                decay 0, gradient clip 1.0) as command-line overrides, and the backbone frozen as transformers'
                model leaves it (the recipe's `set_backbone_trainable` skipped: transformers' rule looks for
                "stage.1" in names that read "stages.1", so it freezes the whole HF ResNet backbone);
  transformers_knobs  the same knobs, with the backbone trained as in the recipe: what the knobs alone are worth;
then prints the final mAPs, the ratios and the wall time of each arm. `--quick` trains QUICK_EPOCHS epochs
instead of the config's (a few minutes on 2 CPU cores); the full mode takes about three times the demo.
Run from anywhere: the config's relative paths are taken from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# transformers 5.24's values where the recipe's differ: DeformableDetrConfig (auxiliary_loss=False,
# class_cost=1), its loss (loss_ce weight fixed at 1), the Trainer's single-lr AdamW and TrainingArguments
# (weight_decay=0.0, max_grad_norm=1.0). bbox/giou costs and weights are the same in both (5, 2).
TRANSFORMERS_DEFAULTS = [
    "--auxiliary_loss", "false", "--class_cost", "1", "--class_loss_coefficient", "1",
    "--backbone_lr_multiplier", "1", "--linear_proj_lr_multiplier", "1",
    "--weight_decay", "0", "--max_grad_norm", "1.0",
]
# arm -> (command-line overrides, backbone frozen as transformers leaves it)
ARMS = {"recipe": ([], False), "transformers": (TRANSFORMERS_DEFAULTS, True),
        "transformers_knobs": (TRANSFORMERS_DEFAULTS, False)}
QUICK_EPOCHS = 8


def arm_argv(arm: str, config: str, output_dir: str, quick: bool) -> list[str]:
    """The training arguments of one arm: the config, the arm's overrides, its own output folder."""
    budget = ["--num_train_epochs", str(QUICK_EPOCHS)] if quick else []
    return [config, *ARMS[arm][0], *budget, "--output_dir", output_dir, "--report_to", "none",
            "--overwrite_output_dir", "true", "--disable_tqdm", "true"]


def backbone_as_transformers_leaves_it(arm: str):
    """Context of one arm's model building: for the transformers arm, the recipe's backbone rule and its random-weight
    starts (`init_random_weights`: trainable norms, the originals' inits) are skipped, so the model is as
    transformers builds it."""
    if not ARMS[arm][1]:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch("recipe.models.loading.set_backbone_trainable", return_value=None))
    stack.enter_context(mock.patch("recipe.models.loading.init_random_weights", return_value=None))
    return stack


def train_arm(arm: str, argv: list[str]) -> tuple[dict, float]:
    """-> (final eval metrics, wall seconds) of one training run."""
    import recipe

    start = time.perf_counter()
    with backbone_as_transformers_leaves_it(arm):
        metrics = recipe.train(recipe.parse_config(argv))
    return metrics, time.perf_counter() - start


def main(args, extra: list[str] = ()) -> dict:
    """-> {arm: final map, map_50, seconds}; `extra`: training flags added to every arm (--smoke's)."""
    os.chdir(ROOT)  # the configs' data and output paths are relative to the repository root
    results = {}
    for arm in ARMS:  # the same process, one after the other: each arm reseeds from --seed
        output_dir = str(Path(args.output_dir) / arm)
        metrics, seconds = train_arm(arm, [*arm_argv(arm, args.config, output_dir, args.quick), *extra])
        results[arm] = {"map": metrics["eval_map"], "map_50": metrics["eval_map_50"], "seconds": seconds}
    return results


def report(results: dict, schedule: str) -> None:
    print(f"same model, data, seed and schedule: {schedule}")
    for arm, r in results.items():
        print(f"{arm:>18}: map={r['map']:.4f} map_50={r['map_50']:.4f} train+eval={r['seconds']:.0f}s")
    for arm in ("transformers", "transformers_knobs"):
        print(f"map ratio recipe/{arm} = {results['recipe']['map'] / max(results[arm]['map'], 1e-6):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"train {QUICK_EPOCHS} epochs (a few minutes)")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--output-dir", default="outputs/recipe_vs_defaults")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    cli_args = parser.parse_args()
    schedule = "1 step (--smoke)" if cli_args.smoke else \
        f"{QUICK_EPOCHS} epochs (--quick)" if cli_args.quick else "the config's schedule"
    with tempfile.TemporaryDirectory(prefix="recipe-vs-defaults-") as tmp:
        smoke_flags = []
        if cli_args.smoke:
            from _smoke import SMOKE_TRAINING, demo_data_flags, tiny_demo

            cli_args.output_dir = f"{tmp}/out"
            smoke_flags = [*SMOKE_TRAINING, *demo_data_flags(tiny_demo(Path(tmp) / "demo"), Path(tmp) / "cache"),
                           "--max_steps", "1"]
        report(main(cli_args, smoke_flags), schedule)
