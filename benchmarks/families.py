"""Which family learns fastest on a CPU budget: python benchmarks/families.py [--budget 300] [--only rt_detr ...]

Trains every DETR family the recipe supports, from random weights, on the embedded demo data (configs/demo.yaml:
its data, images sizes, lr, batch size and seed) for the same wall-clock budget each, then evaluates it on the
demo's validation set, and prints one row per model: parameters, steps, s/step, training seconds, mAP, mAP@50.

Each model is the structure of its published checkpoint (the configs of tests/published.py: tied or untied heads,
two-stage, denoising, group-DETR, windowed ViT) at the widths the tests use, with two changes so that the rows are
comparable: 50 queries (the demo's), and the demo's small HF ResNet in place of the full-size timm ResNet-50 the
DETR-era checkpoints name. The family's own loss weights, matcher costs and lr groups apply (recipe/models/families.py).

The budget is met by timing a short probe run (median s/step, the first step left out) and then training
`budget / (s/step)` steps, so every schedule (warm-up, linear decay) runs to its end. s/step is the median of the
real run's steps, train s their sum. The machine is shared: the columns are what this run measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))  # the published configs

from transformers import TrainerCallback  # noqa: E402

import recipe  # noqa: E402
from published import FAMILY_MODELS, family_model_config  # noqa: E402

DEMO = ROOT / "configs" / "demo.yaml"
MODELS = FAMILY_MODELS
model_config = family_model_config


class StepTimer(TrainerCallback):
    """Wall-clock seconds of each optimizer step."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def train_row(name: str, hub_id: str | None, *, budget: float, probe_steps: int, workdir: Path,
              extra: list[str] = ()) -> dict:
    """Probe s/step, then train for `budget` seconds' worth of steps and evaluate; one row of the table.
    `extra`: more training flags (--smoke's data and sizes)."""
    config = json.dumps(model_config(hub_id))
    common = ["--model_config", config, "--eval_strategy", "no", "--save_strategy", "no",
              "--dataloader_num_workers", "0", "--report_to", "none", "--overwrite_output_dir", "true", *extra]
    out = workdir / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
    probe = StepTimer()
    recipe.train(recipe.parse_config([str(DEMO), *common, "--output_dir", str(out / "probe"), "--max_steps",
                                      str(probe_steps), "--val-ann", "", "--val-img", ""]), callbacks=[probe])
    per_step = statistics.median(probe.seconds[1:])  # the first step pays one-off set-up costs
    steps = max(1, int(budget / per_step))
    timer = StepTimer()
    final = recipe.train(recipe.parse_config([str(DEMO), *common, "--output_dir", str(out / "run"), "--max_steps",
                                              str(steps), "--warmup_steps", str(min(50, steps // 10))]),
                         callbacks=[timer])
    model_type = json.loads((out / "run" / "config.json").read_text())["model_type"]
    return {"model": name, "model_type": model_type, "steps": steps, "s_per_step": statistics.median(timer.seconds),
            "train_s": sum(timer.seconds), "map": final["eval_map"], "map_50": final["eval_map_50"]}


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':32s} {'steps':>6s} {'s/step':>7s} {'train s':>8s} {'mAP':>6s} {'mAP@50':>7s}")
    for r in sorted(rows, key=lambda r: -r.get("map", -1)):
        if "error" in r:
            print(f"{r['model']:32s} failed: {r['error']}")
            continue
        print(f"{r['model']:32s} {r['steps']:6d} {r['s_per_step']:7.3f} {r['train_s']:8.1f} {r['map']:6.3f} "
              f"{r['map_50']:7.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per model (default 300)")
    parser.add_argument("--probe-steps", type=int, default=8, help="steps of the timing probe (default 8)")
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), metavar="MODEL",
                        help=f"a subset of the rows: {', '.join(sorted(MODELS))}")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help=(
        "run on tiny inputs in seconds (figures mean nothing): the demo row unless --only"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        extra = []
        if args.smoke:
            from _smoke import SMOKE_TRAINING, demo_data_flags, tiny_demo

            args.budget, args.probe_steps, args.only = 0.0, 2, args.only or [next(iter(MODELS))]
            extra = [*SMOKE_TRAINING, *demo_data_flags(tiny_demo(Path(tmp) / "demo"), Path(tmp) / "cache")]
        for name in args.only or MODELS:
            try:
                rows.append(train_row(name, MODELS[name], budget=args.budget, probe_steps=args.probe_steps,
                                      workdir=Path(tmp), extra=extra))
            except Exception as e:  # noqa: BLE001  (one broken row must not cost the others' hours; it is printed)
                rows.append({"model": name, "error": f"{type(e).__name__}: {e}"[:300]})
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
