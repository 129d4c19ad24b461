"""One model in every deployment format, on the same validation images: PyTorch eager, ONNX Runtime fp32 and INT8,
OpenVINO fp32 and INT8. Each row is what `detr-export` itself writes beside the file (its sidecar's "measured": map,
map_50, map_small by detr-evaluate's code, latency per image at batch 1 and 8 on `--threads` threads, the median of
`--runs` calls), PyTorch's latency the median over the four exports' measurements.

python benchmarks/deploy.py --model outputs/demo --data data/demo [--model outputs/compare_demo/rt_detr ...]
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

VARIANTS = [("onnxruntime fp32", "onnx", False), ("onnxruntime int8", "onnx", True),
            ("openvino fp32", "openvino", False), ("openvino int8", "openvino", True)]


def export_variant(model: str, data: Path, out: Path, fmt: str, int8: bool, args) -> tuple[dict, float]:
    from recipe.cli.main import export_main

    suffix = ".xml" if fmt == "openvino" else ".onnx"
    path = out / f"{'int8' if int8 else 'fp32'}{suffix}"
    argv = ["--model", model, "--output", str(path), "--format", fmt, "--threads", str(args.threads),
            "--train_ann", str(data / "train" / "annotations.json"), "--train_img", str(data / "train" / "images"),
            "--val_ann", str(data / "val" / "annotations.json"), "--val_img", str(data / "val" / "images")]
    if int8:
        argv += ["--int8", "--calibration_images", str(args.calibration_images)]
    if args.image_size:
        argv += ["--image_size", *map(str, args.image_size)]
    if args.dynamic_batch:
        argv.append("--dynamic_batch")
    start = time.perf_counter()
    export_main(argv)
    return json.loads(Path(f"{path}.json").read_text()), round(time.perf_counter() - start, 1)


def rows_for(model: str, args, variants=VARIANTS) -> list[dict]:
    """The PyTorch row, then one per variant (with the export's wall time: export, check, calibration, measuring)."""
    rows, pytorch = [], []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for name, fmt, int8 in variants:
            meta, seconds = export_variant(model, args.data, Path(tmp), fmt, int8, args)
            measured = meta["measured"]
            pytorch.append(measured["pytorch"])
            rows.append({"model": Path(model).name, "family": meta["model_type"], "format": name,
                         **measured["exported"], "export_s": seconds, "images": measured["images"],
                         "threads": measured["threads"], "frame": meta["frame"]})
    median = {key: statistics.median(p[key] for p in pytorch) for key in pytorch[0] if key.startswith("ms_")}
    assert len({(p["map"], p["map_50"], p["map_small"]) for p in pytorch}) == 1  # one model, one set of numbers
    first = rows[0]
    return [{**{k: first[k] for k in ("model", "family", "images", "threads", "frame")}, "format": "pytorch eager",
             **{k: pytorch[0][k] for k in ("map", "map_50", "map_small")}, **median, "export_s": None}, *rows]


def print_table(rows: list[dict]) -> None:
    print("| model | format | map | map_50 | map_small | ms/image batch 1 | ms/image batch 8 | vs PyTorch (b1) |")
    print("|---|---|---|---|---|---|---|---|")
    base = {}
    for row in rows:
        if row["format"] == "pytorch eager":
            base[row["model"]] = row["ms_per_image_batch_1"]
        eight = next((v for k, v in row.items() if k.startswith("ms_per_image_batch_") and k != "ms_per_image_batch_1"),
                     None)  # batch 8, or all the images where fewer
        print(f"| {row['model']} ({row['family']}) | {row['format']} | {row['map']:.4f} | {row['map_50']:.4f} | "
              f"{row['map_small']:.4f} | {row['ms_per_image_batch_1']:.2f} | "
              f"{'-' if eight is None else f'{eight:.2f}'} | "
              f"{base[row['model']] / row['ms_per_image_batch_1']:.2f}x |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", help="trained model folders (default: the demo run with --smoke)")
    parser.add_argument("--data", type=Path, help="a demo-layout folder: train/ and val/, each images/ and "
                        "annotations.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration_images", type=int, default=100)
    parser.add_argument("--image_size", type=int, nargs=2, help="the graphs' frame H W (default: the processor's)")
    parser.add_argument("--dynamic_batch", action=argparse.BooleanOptionalAction, default=True,
                        help="graphs of any batch: batch 8 is one call (--no-dynamic_batch: batch 1, image by image)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--smoke", action="store_true",
                        help="a 1-step demo model on 12 images, the INT8 rows (figures mean nothing)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-smoke-") as tmp:
        if args.smoke:
            args.model, args.data, args.calibration_images = [smoke_model(Path(tmp), args)], Path(tmp) / "data", 8
        # the smoke run: the two INT8 routes (each exports, checks and converts its fp32 graph on the way)
        variants = [v for v in VARIANTS if v[2]] if args.smoke else VARIANTS
        rows = [row for model in args.model for row in rows_for(model, args, variants)]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def smoke_model(tmp: Path, args) -> str:
    import recipe
    from recipe.data.synthetic import make_demo_dataset

    make_demo_dataset(tmp / "data", seed=0, num_train=12, num_val=4)
    data = tmp / "data"
    recipe.train(recipe.parse_config([
        str(ROOT / "configs" / "demo.yaml"), "--train_img", str(data / "train" / "images"), "--train_ann",
        str(data / "train" / "annotations.json"), "--val_img", str(data / "val" / "images"), "--val_ann",
        str(data / "val" / "annotations.json"), "--output_dir", str(tmp / "model"), "--max_steps", "1",
        "--eval_size", "64", "--shortest_edges", "64", "--longest_edge", "96", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--save_strategy", "no", "--eval_strategy", "no"]))
    args.image_size = [64, 86]
    return str(tmp / "model")


if __name__ == "__main__":
    main()
