"""Evaluation and prediction throughput: python benchmarks/eval_throughput.py [--model DIR] [--rounds 3]

On the demo val set (50 synthetic 320x240 scenes, generated into data/demo when missing) times, in
interleaved rounds and through the entry points' own parsers and functions,
  evaluate  `scripts/evaluate.py --model DIR --images ... --ann ...` (batch 8),
  predict   `scripts/predict.py --model DIR --images ...` (its defaults: threshold 0.3, batch 8, drawn images),
both with 0 dataloader workers so that the recipe's stage marks (recipe/core/stage_timer.py) see every stage, and
prints images/s (median of the rounds, over the whole call) and each stage's share of the wall time:
  pre       decode, resize, normalise and pad (evaluate: the transform and the collator);
  forward   the model (evaluate: its loss, the Hungarian matching, inside it: `loss` says how much);
  post      top-k detections and result rows; cocoeval: matching and accumulating (evaluate);
  draw      predict's drawn images; other: the rest (loading the model and the data table, the loops).
Without --model, the demo config is trained for --train-steps steps first (a barely trained model: evaluate
scores its top 100 detections per image as for any model; predict keeps fewer above the threshold).
--full-size: the same with Deformable DETR at its published size instead of the demo's 1.1M-parameter model
(transformers' default DeformableDetrConfig: ResNet-50, 6 + 6 layers, 300 queries, 4 levels; random weights,
no download), still on the demo's 320x240 scenes: the shares a real model's evaluation has.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from recipe.core import stage_timer  # noqa: E402

STAGES = {"pre": ("decode", "augment", "labels", "normalise", "collate"), "forward": ("forward",),
          "post": ("postprocess",), "cocoeval": ("cocoeval",), "draw": ("draw",)}


FULL_SIZE = {"model_type": "deformable_detr", "use_pretrained_backbone": False}


def train_tiny_model(demo: Path, out: Path, steps: int, model_config: dict | None = None) -> str:
    """The demo config (or its data with `model_config`) trained for `steps` steps into `out` -> the folder."""
    import recipe

    paths = [item for split, name in (("train", "train"), ("val", "val")) for item in (
        f"--{name}-img", str(demo / split / "images"), f"--{name}-ann", str(demo / split / "annotations.json"))]
    extra = ["--model_config", json.dumps(model_config)] if model_config else []
    recipe.train(recipe.parse_config([str(ROOT / "configs" / "demo.yaml"), *paths, "--max_steps", str(steps),
                                      "--output_dir", str(out), "--report_to", "none", "--overwrite_output_dir",
                                      "true", "--disable_tqdm", "true", *extra]))
    return str(out)


def timed(call) -> dict:
    """Run `call()` -> its result, wall seconds and the seconds of each marked stage."""
    with stage_timer.record() as times:
        start = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - start
    return {"result": result, "seconds": seconds, "stages": dict(times.seconds)}


def evaluate_call(model: str, demo: Path, cache: str):
    from recipe.config.load import parse_evaluate_args
    from recipe.evaluation.evaluate import evaluate

    argv = ["--model", model, "--images", str(demo / "val" / "images"), "--ann", str(demo / "val" / "annotations.json"),
            "--dataloader_num_workers", "0", "--dataset_cache_dir", cache]
    return lambda: evaluate(*parse_evaluate_args(argv))


def predict_call(model: str, demo: Path, out: str):
    from recipe.config.parser import parse_args
    from recipe.inference.predict import PredictArguments, predict

    (args,) = parse_args(["--model", model, "--images", str(demo / "val" / "images"), "--output", out],
                         (PredictArguments,), prog="detr-predict")
    return lambda: predict(args)


def shares(run: dict) -> dict[str, float]:
    """Fraction of the wall time per stage group; `loss` is part of `forward`, `other` the unmarked rest."""
    out = {group: sum(run["stages"].get(s, 0.0) for s in names) / run["seconds"] for group, names in STAGES.items()}
    out["other"] = 1.0 - sum(out.values())
    out["loss"] = run["stages"].get("loss", 0.0) / run["seconds"]
    return out


def main(args) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures
    demo = Path(args.demo_data)
    if not (demo / "val" / "annotations.json").is_file():
        from recipe.data.synthetic import make_demo_dataset

        make_demo_dataset(demo)
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        work = Path(tmp)
        model = args.model or train_tiny_model(demo, work / "model", args.train_steps,
                                               FULL_SIZE if args.full_size else None)
        calls = {"evaluate": evaluate_call(model, demo, str(work / "cache")),
                 "predict": predict_call(model, demo, str(work / "predictions"))}
        for call in calls.values():
            call()  # warm-up: the Arrow table is built, files and libraries are in memory
        runs = {name: [] for name in calls}
        for r in range(args.rounds):
            for name, call in calls.items():  # interleaved: the same machine load
                runs[name].append(timed(call))
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]['seconds']:.2f}s" for n, v in runs.items()), flush=True)
    images = {"evaluate": runs["evaluate"][0]["result"]["num_images"],
              "predict": runs["predict"][0]["result"]["images"]}
    return {name: {"images": images[name], "images_per_s": [images[name] / r["seconds"] for r in v],
                   "shares": [shares(r) for r in v]} for name, v in runs.items()}


def report(out: dict) -> None:
    for name, r in out.items():
        median = statistics.median(r["images_per_s"])
        share = {k: statistics.median(s[k] for s in r["shares"]) for k in r["shares"][0]}
        print(f"{name}: {r['images']} images, {median:.1f} images/s (rounds: "
              f"{', '.join(f'{v:.1f}' for v in r['images_per_s'])})")
        print(f"{name} share of wall time (median): " + " ".join(
            f"{k}={100 * share[k]:.1f}%" for k in ("pre", "forward", "loss", "post", "cocoeval", "draw", "other")))
        print(f"{name} post+scoring = {100 * (share['post'] + share['cocoeval']):.1f}% (target < 10%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model folder (default: train the demo config briefly)")
    parser.add_argument("--demo-data", default=str(ROOT / "data" / "demo"))
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="published-size Deformable DETR, random weights")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    cli_args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        if cli_args.smoke:
            from _smoke import tiny_demo

            cli_args.demo_data, cli_args.train_steps, cli_args.rounds = str(tiny_demo(Path(tmp))), 1, 1
        report(main(cli_args))
