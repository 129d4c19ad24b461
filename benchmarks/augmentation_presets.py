"""Each family's original augmentation against the recipe's Deformable DETR set, on the demo at one budget:
python benchmarks/augmentation_presets.py [--epochs 12] [--seeds 0 1] [--families rt_detr d_fine]

Per family (its tiny published structure from random weights, as benchmarks/families.py) and seed, two runs that
differ only in `--augmentation`: `deformable` (the recipe's set with configs/demo.yaml's colour jitter 0.3) and the
family's own preset (rtdetr for RT-DETR / D-FINE, deim for DEIMv2, rfdetr for RF-DETR / LW-DETR); both at the
family's square resize on the demo's sizes (sides 208/224/240, eval 240), the demo's lr, batch and data, the same
epochs, then the final evaluation on the 50 validation scenes. Prints map / map_50 / map_small per run and the
preset / deformable ratio of the medians.

Then the loader: images/s of each preset's training transform (decode, augment, labels) over the demo's 400
training images in one process, with DEIM's Mosaic and MixUp on (its first mixing epoch) and off (its final phase).
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

DEMO = ROOT / "configs" / "demo.yaml"
FAMILY_PRESET = {"rt_detr": "rtdetr", "rt_detr_v2": "rtdetr", "d_fine": "rtdetr", "deimv2": "deim",
                 "rf_detr": "rfdetr", "lw_detr": "rfdetr"}
SQUARE = ["--resize", "square", "--shortest_edges", "208", "224", "240", "--eval_size", "240"]


def train_arm(family: str, augmentation: str, seed: int, epochs: int, workdir: Path, extra=()) -> dict:
    """One training run and its final metrics."""
    jitter = [] if augmentation == "deformable" else ["--color_jitter_prob", "0.5"]  # demo.yaml's 0.3 is deformable's
    out = workdir / f"{family}-{augmentation}-{seed}"
    start = time.perf_counter()
    final = recipe.train(recipe.parse_config([
        str(DEMO), "--model_config", json.dumps(family_model_config(FAMILY_MODELS[family])), *SQUARE,
        "--augmentation", augmentation, *jitter, "--num_train_epochs", str(epochs), "--seed", str(seed),
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--overwrite_output_dir", "true", "--output_dir", str(out), *extra]))
    return {"family": family, "augmentation": augmentation, "seed": seed, "epochs": epochs,
            "seconds": round(time.perf_counter() - start, 1),
            **{k: round(final[f"eval_{k}"], 4) for k in ("map", "map_50", "map_small")}}


def loader_rates(presets: list[str], data_flags: list[str], images: int | None = None) -> list[dict]:
    """Images/s of each preset's training transform in one process (no model), per phase."""
    from recipe.pipeline.presets import PresetAugmentation, mixes_images, training_augmentation
    from recipe.pipeline.transforms import AugmentationSeeds, ImagePool, make_transform
    from recipe.training.data import load_splits

    rows = []
    for preset in presets:
        jitter = [] if preset == "deformable" else ["--color_jitter_prob", "0.5"]
        config = recipe.parse_config([str(DEMO), *SQUARE, "--augmentation", preset, *jitter, *data_flags])
        train, _ = load_splits(config.data, config.training)
        seeds = AugmentationSeeds(0)
        augmentation = training_augmentation(config.data, epochs=26, epoch_of=seeds,
                                             pool=ImagePool(train.dataset) if mixes_images(preset) else None)
        phases = {"mixing": augmentation.phases.start, "final": 26} if mixes_images(preset) else {"all": 0}
        if not isinstance(augmentation, PresetAugmentation):
            phases = {"all": 0}
        dataset = train.dataset.with_transform(make_transform(augmentation, seeds=seeds))
        count = min(images or len(dataset), len(dataset))
        for phase, epoch in phases.items():
            seeds.set_epoch(epoch)
            start = time.perf_counter()
            for i in range(count):
                dataset[i]
            rows.append({"augmentation": preset, "phase": phase, "images": count,
                         "images_per_s": round(count / (time.perf_counter() - start), 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(runs: list[dict]) -> None:
    print(f"\n{'family':10s} {'augmentation':12s} {'seeds':>6s} {'map':>7s} {'map_50':>7s} {'map_small':>9s} "
          f"{'s/run':>6s}")
    medians = {}
    for family in dict.fromkeys(r["family"] for r in runs):
        for aug in dict.fromkeys(r["augmentation"] for r in runs if r["family"] == family):
            rs = [r for r in runs if r["family"] == family and r["augmentation"] == aug]
            med = {k: statistics.median(r[k] for r in rs) for k in ("map", "map_50", "map_small", "seconds")}
            medians[family, aug] = med
            print(f"{family:10s} {aug:12s} {len(rs):6d} {med['map']:7.4f} {med['map_50']:7.4f} "
                  f"{med['map_small']:9.4f} {med['seconds']:6.0f}  per seed: {[r['map'] for r in rs]}")
        base = medians.get((family, "deformable"), {}).get("map")
        preset = medians.get((family, FAMILY_PRESET[family]), {}).get("map")
        if base and preset is not None:
            print(f"{family}: {FAMILY_PRESET[family]} / deformable map = {preset / base:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["rt_detr", "d_fine"], choices=sorted(FAMILY_PRESET))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--json", type=Path, help="also write the runs and loader rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, seconds (figures mean nothing)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        extra, data, images = [], [], None
        if args.smoke:
            from _smoke import SMOKE_TRAINING, demo_data_flags, tiny_demo

            data = demo_data_flags(tiny_demo(Path(tmp) / "demo"), Path(tmp) / "cache")
            extra = [*SMOKE_TRAINING[6:], *data, "--max_steps", "1"]  # the square sizes stay; no workers, no eval
            args.families, args.seeds, args.epochs, images = args.families[:1], args.seeds[:1], 1, 4
        runs = []
        for family in args.families:
            for seed in args.seeds:
                for augmentation in ("deformable", FAMILY_PRESET[family]):
                    runs.append(train_arm(family, augmentation, seed, args.epochs, Path(tmp), extra))
                    print(json.dumps(runs[-1]), flush=True)
        print_table(runs)
        print("\nloader (one process, decode + augment + labels):")
        loader = loader_rates(["deformable", "rtdetr", "deim", "rfdetr"], data, images)
        print(f"{'augmentation':12s} {'phase':7s} {'images/s':>9s}")
        for row in loader:
            print(f"{row['augmentation']:12s} {row['phase']:7s} {row['images_per_s']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "loader": loader}, indent=1))


if __name__ == "__main__":
    main()
