"""Tiled inference on high-resolution frames with small objects: map, map_50 and map_small with and without --tile,
and the seconds per image each costs. python benchmarks/tiling.py [--steps 700] [--model DIR] [--frames 20] [--work DIR]

The demo model (configs/demo.yaml, trained `--steps` steps on the usual 400 scenes of 320x240, or `--model`, a trained
folder) runs on `--frames` large frames (`detr-make-demo-data --large_frame`: 1280x720, a 4 x 3 grid of scenes, the
objects at the training scale; the eval resize shrinks a whole frame 4x, to 320x180). Each arm is detr-predict
(threshold 0, nothing drawn; the same loop for every arm) on the frames, its predictions.json scored by pycocotools
(`score_results.evaluate_files`): the whole frame only, then --tile at each `--tiles` size (overlap `--overlap`, NMS,
with the full frame), and at the first size also WBF and NMS without the full frame. Seconds per image: predict's wall
time over the frames (model loading included, once per arm).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import recipe  # noqa: E402

QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir", "true",
         "--dataloader_num_workers", "0", "--save_strategy", "no", "--eval_strategy", "no"]
KEYS = ("map", "map_50", "map_small")


def train_demo(demo: Path, out: Path, steps: int, extra=()) -> tuple[Path, dict, float]:
    """configs/demo.yaml for `steps` steps on `demo` -> (model folder, final metrics on its 320x240 val, seconds)."""
    flags = [item for split in ("train", "val") for item in (
        f"--{split}-img", str(demo / split / "images"), f"--{split}-ann", str(demo / split / "annotations.json"))]
    start = time.perf_counter()
    final = recipe.train(recipe.parse_config([str(ROOT / "configs" / "demo.yaml"), *flags, "--demo_data", "none",
                                              "--max_steps", str(steps), "--output_dir", str(out), *QUIET, *extra]))
    return out, final, round(time.perf_counter() - start, 1)


def arm(model: Path, frames: Path, out: Path, name: str, tile_args) -> dict:
    """detr-predict on the frames with `tile_args`, scored by pycocotools -> the row of one arm."""
    from recipe.evaluation.score_results import evaluate_files
    from recipe.inference.predict import PredictArguments, predict

    start = time.perf_counter()
    summary = predict(PredictArguments(model=str(model), images=str(frames / "images"), output=str(out / name),
                                       threshold=0.0, draw=False, batch_size=8), None, tile_args)
    seconds = time.perf_counter() - start
    metrics = evaluate_files(str(frames / "annotations.json"), summary["results"])
    return {"arm": name, **{k: round(metrics[k], 4) for k in KEYS},
            "s_per_image": round(seconds / summary["images"], 3), "images": summary["images"]}


def main(argv=None) -> None:
    from recipe.config.command_arguments import TileArguments
    from recipe.data.synthetic import make_demo_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700, help="training steps of the demo model")
    parser.add_argument("--model", type=Path, help="a trained demo model folder to use instead of training one")
    parser.add_argument("--frames", type=int, default=20, help="large validation frames (1280x720)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[240, 320, 480], help=(
        "window sizes, in frame pixels (WBF and tiles-only at the first)"))
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--work", type=Path, help="keep the data and the model here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, seconds (figures mean nothing)")
    args = parser.parse_args(argv)
    extra = []
    if args.smoke:
        from _smoke import SMOKE_TRAINING

        extra = [*SMOKE_TRAINING[:6], "--per_device_eval_batch_size", "2"]
        args.steps, args.frames, args.tiles = 1, 2, [320]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.work or Path(tmp)
        model = args.model
        if model is None:
            size = {"num_train": 8, "num_val": 4} if args.smoke else {"num_train": 400, "num_val": 20}
            make_demo_dataset(tmp / "demo", seed=0, **size)
            model, final, seconds = train_demo(tmp / "demo", tmp / "model", args.steps, extra)
            print(f"trained {args.steps} steps in {seconds:.0f} s; on 320x240 scenes: "
                  + " ".join(f"{k} {final[f'eval_{k}']:.4f}" for k in KEYS), flush=True)
        make_demo_dataset(tmp / "large", seed=1, num_train=1, num_val=args.frames, large_frame=True)
        frames = tmp / "large" / "val"
        rows = [arm(model, frames, tmp, "untiled", None)]
        for tile in args.tiles:
            rows.append(arm(model, frames, tmp, f"tile {tile} nms +full", TileArguments(tile, args.overlap)))
        first = args.tiles[0]
        rows.append(arm(model, frames, tmp, f"tile {first} wbf +full", TileArguments(first, args.overlap, "wbf")))
        rows.append(arm(model, frames, tmp, f"tile {first} nms tiles only",
                        TileArguments(first, args.overlap, tile_full_frame=False)))
    for row in rows:
        print(f"{row['arm']:24s} " + " ".join(f"{k} {row[k]:.4f}" for k in KEYS)
              + f"  s/image {row['s_per_image']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
