"""EMA and the no-augmentation phase, on vs off, on the demo at one budget: python benchmarks/training_features.py

Trains configs/demo.yaml (its data, model, lr, schedule, seed) for `--epochs` epochs in each arm, side by side in one
run, and prints one row per arm: steps, train seconds, final mAP and mAP@50 on the demo's validation set. Arms:
baseline; EMA (decay 0.999, warm-up 100 steps: the demo's ~1,300 steps are far shorter than the originals' runs, for
which 0.9999 / 2000 are set); EMA at decay 0.9923, the faster average the run's own warning suggests for 1,300 steps
(recipe.engine.ema.lag_warning); no_aug_epochs 2; both; and the batch step in torch: on a CPU-only run the recipe
flips and
resizes in the loader (cv2), this arm forces the flip / resize / jitter on the batch in torch, as where the model
runs on a GPU, so the two paths' wall times stand side by side (`--only baseline "batch step in torch"`).

Then the EMA's cost: the median seconds of one `ModelEma.update` on the demo model against the median seconds of a
demo training step (from the baseline arm), as a percentage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from transformers import TrainerCallback  # noqa: E402

import recipe.training.run  # noqa: E402

DEMO = ROOT / "configs" / "demo.yaml"
ARMS = {
    "baseline": [],
    "ema": ["--use_ema", "true", "--ema_decay", "0.999", "--ema_warmup_steps", "100"],
    "ema 0.9923": ["--use_ema", "true", "--ema_decay", "0.9923", "--ema_warmup_steps", "100"],
    "no_aug_epochs 2": ["--no_aug_epochs", "2"],
    "ema + no_aug_epochs 2": ["--use_ema", "true", "--ema_decay", "0.999", "--ema_warmup_steps", "100",
                              "--no_aug_epochs", "2"],
    "batch step in torch": [],
}


def torch_batch_step():
    """recipe.training.run with the batch step forced on (what a GPU run does), though the model runs on the CPU."""
    build = recipe.training.run.build_datasets

    def forced(*args, **kwargs):
        return build(*args, **{**kwargs, "batch_geometry": True})

    return mock.patch.object(recipe.training.run, "build_datasets", forced)


def batch_paths(seen: list):
    """recipe.training.run.build_datasets, its `batch_geometry` (True: the batch step in torch) appended to `seen` at
    each call: the row says which path the arm took."""
    build = recipe.training.run.build_datasets

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_geometry"])
        return build(*args, **kwargs)

    return mock.patch.object(recipe.training.run, "build_datasets", spy)


# Arms that change the run's code rather than its arguments: the patch each one runs under.
PATCHES = {"batch step in torch": torch_batch_step}


class StepTimer(TrainerCallback):
    def __init__(self):
        self.seconds: list[float] = []
        self.model = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)
        self.model = model


def ema_cost(model, repeats: int = 200) -> float:
    """Median seconds of one EMA update of `model`."""
    from recipe.engine.ema import ModelEma

    ema = ModelEma(model, decay=0.999, warmup_steps=100)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ema.update(model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=26, help="epochs per arm (default 26, the demo's)")
    parser.add_argument("--only", nargs="*", choices=sorted(ARMS), metavar="ARM", help="a subset of the arms")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args(argv)
    rows, baseline_timer = [], None
    with tempfile.TemporaryDirectory() as tmp:
        extra = []
        if args.smoke:
            from _smoke import SMOKE_TRAINING, demo_data_flags, tiny_demo

            extra = [*SMOKE_TRAINING, *demo_data_flags(tiny_demo(Path(tmp) / "demo"), Path(tmp) / "cache"),
                     "--max_steps", "2"]
        for name in args.only or ARMS:
            timer, paths = StepTimer(), []
            start = time.perf_counter()
            argv = [str(DEMO), "--output_dir", str(Path(tmp) / name.replace(" ", "_")), "--num_train_epochs",
                    str(args.epochs), "--report_to", "none", *ARMS[name], *extra]
            with batch_paths(paths), PATCHES.get(name, nullcontext)():
                final = recipe.train(recipe.parse_config(argv), callbacks=[timer])
            rows.append({"arm": name, "steps": len(timer.seconds), "wall_s": time.perf_counter() - start,
                         "train_s": sum(timer.seconds),
                         "s_per_step": statistics.median(timer.seconds), "map": final["eval_map"],
                         "map_50": final["eval_map_50"], "batch_step_in_torch": paths == [True]})
            print(json.dumps(rows[-1]), flush=True)
            if name == "baseline":
                baseline_timer = timer
    print(f"\n{'arm':24s} {'steps':>6s} {'wall s':>7s} {'train s':>8s} {'mAP':>6s} {'mAP@50':>7s}")
    for r in rows:
        print(f"{r['arm']:24s} {r['steps']:6d} {r['wall_s']:7.1f} {r['train_s']:8.1f} {r['map']:6.3f} "
              f"{r['map_50']:7.3f}")
    if baseline_timer is not None and baseline_timer.model is not None:
        update = ema_cost(baseline_timer.model)
        step = statistics.median(baseline_timer.seconds)
        print(f"\nEMA update {update * 1e3:.2f} ms (median of 200) vs demo step {step * 1e3:.1f} ms (median): "
              f"{100 * update / step:.2f}% of a step")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
