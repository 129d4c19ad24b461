"""Small and imbalanced datasets: `--schedule auto` against a family config's fixed schedule, and repeat-factor
sampling against plain shuffling. python benchmarks/small_data.py [--part schedule rare bdd] [--seeds 0 1 2]

schedule: D-FINE (its tiny published structure, random weights) with configs/d_fine.yaml's schedule (COCO's: warm-up
500 steps, EMA 0.9999 with a 2000-step warm-up, the last 8 epochs without augmentation) against the same config with
`--schedule auto`, at the same epochs typed on the command line (`--epochs`), on BCCD (../shared/data/bccd, 205
training and 87 validation images) and the demo (400 / 100). The demo's lr (1e-3), batch 8 and sizes (square 208-240)
for both arms (from random weights the config's fine-tuning lr learns nothing in this budget), and `--augmentation`
(default deformable, the README's advice for short runs; rtdetr is D-FINE's own, which costs 3-5x on short runs:
RESULTS.md "Augmentation presets").

rare: configs/demo.yaml on an imbalanced demo (`detr-make-demo-data --rare_class pedestrian --rare_fraction 0.05`:
pedestrians drawn 5% as often in training, the usual mix in 100 validation scenes) for `--steps` steps, with and
without `--repeat_factor_threshold` (`--threshold`): the pedestrian's AP, the other classes' mean AP and map.

bdd: the repeat factors repeat-factor sampling gives BDD100K's classes (../shared/data/bdd100k-det-202: 202 real
frames' labels) at several thresholds: each class's image frequency, factor and images per epoch.
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

import recipe  # noqa: E402
from published import FAMILY_MODELS, family_model_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir", "true",
         "--dataloader_num_workers", "0", "--save_strategy", "no"]
SQUARE = ["--resize", "square", "--shortest_edges", "208", "224", "240", "--eval_size", "240"]


def demo_flags(folder: Path) -> list[str]:
    return [item for split in ("train", "val") for item in (
        f"--{split}-img", str(folder / split / "images"), f"--{split}-ann", str(folder / split / "annotations.json"))]


def train(argv: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    final = recipe.train(recipe.parse_config(argv))
    return final, round(time.perf_counter() - start, 1)


def schedule_arm(data: str, data_flags: list[str], schedule: str, seed: int, epochs: int, out: Path, extra=(), *,
                 augmentation: str = "deformable"):
    config = ROOT / "configs" / "d_fine.yaml"
    final, seconds = train([
        str(config), "--model_config", json.dumps(family_model_config(FAMILY_MODELS["d_fine"])), *data_flags,
        *SQUARE, "--learning_rate", "1e-3", "--backbone_lr_multiplier", "1", "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "8", "--schedule", schedule, "--num_train_epochs", str(epochs),
        "--augmentation", augmentation, "--eval_strategy", "no", "--seed", str(seed),
        "--output_dir", str(out / f"{data}-{schedule}-{seed}"),
        "--logging_steps", "50", *QUIET, *extra])
    return {"part": "schedule", "data": data, "arm": f"{schedule} {augmentation}", "seed": seed, "epochs": epochs,
            "seconds": seconds,
            **{k: round(final[f"eval_{k}"], 4) for k in ("map", "map_50", "map_small")}}


def rare_arm(folder: Path, threshold: float, seed: int, steps: int, out: Path, extra=()):
    final, seconds = train([
        str(ROOT / "configs" / "demo.yaml"), *demo_flags(folder), "--demo_data", "none",
        "--repeat_factor_threshold", str(threshold), "--max_steps", str(steps), "--eval_strategy", "no",
        "--seed", str(seed), "--output_dir", str(out / f"rare-{threshold}-{seed}"), *QUIET, *extra])
    per_class = {k.rsplit("/", 1)[1]: v for k, v in final.items() if k.startswith("eval_map_class/")}
    others = [v for k, v in per_class.items() if k != "pedestrian"]
    return {"part": "rare", "arm": f"threshold {threshold}", "seed": seed, "steps": steps, "seconds": seconds,
            "pedestrian_ap": round(per_class["pedestrian"], 4), "others_mean_ap": round(statistics.mean(others), 4),
            "map": round(final["eval_map"], 4)}


def bdd_factors(thresholds: list[float]) -> list[dict]:
    """Each BDD100K class's factor from the 202 frames' labels (crowd boxes left out, as training leaves them)."""
    from recipe.data.bdd100k import bdd_to_coco, load_frames
    from recipe.pipeline.sampling import class_frequencies, class_repeat_factors, epoch_length, image_repeat_factors

    coco = bdd_to_coco(load_frames(SHARED / "bdd100k-det-202" / "track_sample_anns.json"))
    index = {c["id"]: i for i, c in enumerate(coco["categories"])}
    labels = {image["id"]: [] for image in coco["images"]}
    for a in coco["annotations"]:
        if not a["iscrowd"] and not a["ignore"]:
            labels[a["image_id"]].append(index[a["category_id"]])
    labels = list(labels.values())
    frequencies = class_frequencies(labels, len(index))
    rows = []
    for t in thresholds:
        factors = class_repeat_factors(frequencies, t)
        per_image = image_repeat_factors(labels, factors)
        for c, category in enumerate(coco["categories"]):
            rows.append({"part": "bdd", "threshold": t, "class": category["name"],
                         "images": sum(c in image for image in labels), "frequency": round(frequencies[c], 4),
                         "factor": round(factors[c], 3),
                         "images_per_epoch": round(sum(f for f, image in zip(per_image, labels) if c in image), 1)})
            print(json.dumps(rows[-1]), flush=True)
        print(f"bdd threshold {t}: {epoch_length(per_image)} images per epoch from {len(labels)}", flush=True)
    return rows


def print_medians(runs: list[dict]) -> None:
    keys = {"schedule": ("map", "map_50", "map_small"), "rare": ("pedestrian_ap", "others_mean_ap", "map")}
    groups = dict.fromkeys((r["part"], r.get("data", "demo-imbalanced"), r["arm"]) for r in runs if r["part"] != "bdd")
    for part, data, arm in groups:
        rs = [r for r in runs if r["part"] == part and r.get("data", "demo-imbalanced") == data and r["arm"] == arm]
        med = {k: statistics.median(r[k] for r in rs) for k in (*keys[part], "seconds")}
        print(f"{part:8s} {data:16s} {arm:16s} seeds {len(rs)}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in med.items() if k != "seconds") + f"; per seed {[r[keys[part][0]] for r in rs]}"
            f"; {med['seconds']:.0f} s/run", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["schedule", "rare", "bdd"], choices=["schedule", "rare", "bdd"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=10, help="schedule: the epochs typed for both arms")
    parser.add_argument("--augmentation", default="deformable", choices=["deformable", "rtdetr"], help=(
        "schedule: both arms' augmentation (deformable, the README's advice for short runs; rtdetr, D-FINE's own)"))
    parser.add_argument("--data", nargs="+", default=["bccd", "demo"], choices=["bccd", "demo"])
    parser.add_argument("--steps", type=int, default=600, help="rare: steps of each arm")
    parser.add_argument("--threshold", type=float, default=0.3, help="rare: the repeat-factor threshold")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, seconds (figures mean nothing)")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extra = []
        if args.smoke:
            from _smoke import SMOKE_TRAINING

            extra = [*SMOKE_TRAINING[:6], "--max_steps", "1", "--per_device_eval_batch_size", "2"]
            args.seeds, args.data, args.epochs, args.steps = args.seeds[:1], ["demo"], 2, 1
        demo = tmp / "demo"
        if "schedule" in args.part and "demo" in args.data or "rare" in args.part:
            from recipe.data.synthetic import make_demo_dataset

            size = {"num_train": 16, "num_val": 8} if args.smoke else {"num_train": 400, "num_val": 100}
            make_demo_dataset(demo / "plain", **size)
            make_demo_dataset(demo / "rare", **size, rare_class="pedestrian", rare_fraction=0.05)
        data = {"bccd": ["--dataset", str(SHARED / "bccd" / "BCCD")], "demo": demo_flags(demo / "plain")}
        for seed in args.seeds:
            for name in args.data if "schedule" in args.part else []:
                for schedule in ("config", "auto"):
                    runs.append(schedule_arm(name, data[name], schedule, seed, args.epochs, tmp, extra,
                                             augmentation=args.augmentation))
                    print(json.dumps(runs[-1]), flush=True)
            for threshold in (0.0, args.threshold) if "rare" in args.part else ():
                runs.append(rare_arm(demo / "rare", threshold, seed, args.steps, tmp, extra))
                print(json.dumps(runs[-1]), flush=True)
    if "bdd" in args.part:
        runs += bdd_factors([0.05, 0.1, 0.3])
    print_medians(runs)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
