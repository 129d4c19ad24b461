"""ONNX Runtime (CPU) against PyTorch eager: python benchmarks/export_speed.py [--rounds 3] [--batch_sizes 1 8]

Exports each model with `detr-export --dynamic_batch` (recipe/inference/export.py) and times the forward pass alone (the
recipe's pre- and post-processing are the same code for both) on random pixels of the graph's frame:
  demo             configs/demo.yaml's model (1.1M parameters) at the demo's eval frame, 240x320 (--demo_frame);
  deformable_detr  Deformable DETR at its published size (transformers' default DeformableDetrConfig: ResNet-50,
                   6 + 6 layers, 300 queries, 4 levels; 40M parameters, random weights built from the config, no
                   download) at --full_frame (default 480x640; its published eval size is 800 x up to 1333).
For each batch size the two runtimes alternate for --rounds rounds (after one warm-up call each) and images/s is
batch / the median round's seconds. Both use --threads threads (torch.set_num_threads, ONNX Runtime's intra-op
threads). The machine may be shared: the numbers are what this run measured.
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

import torch  # noqa: E402

MODELS = ("demo", "deformable_detr")


def build_folder(name: str, folder: Path, frame: tuple[int, int]) -> Path:
    """A model folder as training writes it (weights, config with labels and category ids, processor)."""
    import transformers
    import yaml

    from recipe.config.arguments import ModelArguments
    from recipe.models.loading import load_model_and_processor

    torch.manual_seed(0)
    labels = {i: f"class{i}" for i in range(5)}
    if name == "demo":
        config = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["model_config"]
    else:
        config = {"model_type": "deformable_detr", "use_pretrained_backbone": False}
    model, _ = load_model_and_processor(ModelArguments(model_config=json.dumps(config)), labels)
    model.config.category_ids = list(range(1, 6))
    processor = transformers.DeformableDetrImageProcessor(
        size={"shortest_edge": min(frame), "longest_edge": max(frame)})
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def time_call(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(name: str, frame: tuple[int, int], batch_sizes: list[int], rounds: int, workdir: Path) -> list[dict]:
    """One row per batch size: images/s of PyTorch eager and ONNX Runtime, interleaved rounds."""
    import recipe
    from recipe.models.exported import OnnxDetector
    from recipe.models.loading import load_detector

    folder = build_folder(name, workdir / name, frame)
    start = time.perf_counter()
    meta = recipe.export(recipe.ExportArguments(model=str(folder), output=str(workdir / f"{name}.onnx"),
                                                dynamic_batch=True, image_size=list(frame)))
    export_s = time.perf_counter() - start
    model, _, _ = load_detector(str(folder))
    detector = OnnxDetector(workdir / f"{name}.onnx")
    rows = []
    for batch in batch_sizes:
        inputs = {"pixel_values": torch.randn(batch, 3, *frame, generator=torch.Generator().manual_seed(batch)),
                  "pixel_mask": torch.ones(batch, *frame, dtype=torch.int64)}
        runs = {"pytorch": lambda x=inputs: model(**x), "onnxruntime": lambda x=inputs: detector(**x)}
        seconds = {k: [] for k in runs}
        with torch.inference_mode():
            for call in runs.values():
                call()  # warm-up: first-call allocations, ONNX Runtime's kernel selection
            for _ in range(rounds):
                for key, call in runs.items():
                    seconds[key].append(time_call(call))
        speed = {k: batch / statistics.median(v) for k, v in seconds.items()}
        rows.append({"model": name, "frame": list(frame), "batch": batch, "pytorch_img_s": speed["pytorch"],
                     "onnxruntime_img_s": speed["onnxruntime"], "ratio": speed["onnxruntime"] / speed["pytorch"],
                     "export_s": export_s, "check": meta["check"]})
    return rows


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    import os

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # OnnxDetector gives ONNX Runtime as many threads
    frames = {"demo": tuple(args.demo_frame), "deformable_detr": tuple(args.full_frame)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        for name in args.models:
            rows += measure(name, frames[name], args.batch_sizes, args.rounds, Path(tmp))
    return rows


def report(rows: list[dict]) -> None:
    print(f"{'model':<16} {'frame':>8} {'batch':>5} {'PyTorch img/s':>14} {'ONNX Runtime img/s':>19} {'ORT/PT':>7}")
    for r in rows:
        frame = f"{r['frame'][0]}x{r['frame'][1]}"
        print(f"{r['model']:<16} {frame:>8} {r['batch']:>5} {r['pytorch_img_s']:>14.2f} "
              f"{r['onnxruntime_img_s']:>19.2f} {r['ratio']:>6.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--demo_frame", nargs=2, type=int, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--full_frame", nargs=2, type=int, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.batch_sizes, args.rounds, args.demo_frame, args.threads = ["demo"], [2], 1, [64, 64], 1
    rows = run(args)
    report(rows)
    return rows


if __name__ == "__main__":
    main()
