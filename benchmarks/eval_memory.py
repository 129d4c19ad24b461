"""Evaluation memory: python benchmarks/eval_memory.py [--small 200 --large 2000]

Evaluates the demo's tiny model on `--small` and `--large` synthetic images, each in a fresh process,
with the recipe's per-batch metrics and with the Trainer's default path (every model output kept and
concatenated, scored at the end), and prints the peak-RSS growth per extra image of each (from the
median peak of `--repeats` runs per point) and the ratio."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {here!r})
from eval_memory import eval_memory_run
out = eval_memory_run({mode!r}, {ann!r}, {images!r}, {n}, {cache!r})
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def eval_memory_run(mode: str, ann: str, images: str, num_images: int, cache_dir: str) -> dict:
    """Evaluate the demo's tiny model (random weights) on the first `num_images` images; meant to run in a
    fresh process whose peak RSS is then read. mode "recipe": per-batch post-processing (what train.py
    does); mode "trainer_default": the Trainer keeps every model output and scores at the end."""
    from transformers import Trainer

    from recipe.config.load import parse_config
    from recipe.data.builder import load_detection_dataset
    from recipe.engine.trainer import DetectionTrainer
    from recipe.evaluation.coco_eval import gt_from_table
    from recipe.evaluation.metrics import CocoDetectionMetrics
    from recipe.models.loading import load_model_and_processor
    from recipe.models.postprocess import postprocess_detections
    from recipe.pipeline.augment import build_augmentation
    from recipe.pipeline.collate import DetectionCollator
    from recipe.pipeline.transforms import make_transform

    data_args, model_args, train_args, _ = parse_config([
        "configs/demo.yaml", "--output_dir", tempfile.mkdtemp(), "--dataloader_num_workers", "0",
        "--per_device_eval_batch_size", "8", "--report_to", "none"])
    data = load_detection_dataset(ann, images, cache_dir=cache_dir, subset=num_images)
    torch.manual_seed(0)
    model, processor = load_model_and_processor(model_args, {i: c["name"] for i, c in enumerate(data.categories)})
    dataset = data.dataset.with_transform(make_transform(build_augmentation(
        False, [data_args.eval_size], data_args.longest_edge, data_args.eval_size)))
    metrics = CocoDetectionMetrics(gt_from_table(data.dataset, data.categories), [c["id"] for c in data.categories])
    common = dict(model=model, eval_dataset=dataset, data_collator=DetectionCollator(processor))
    if mode == "recipe":
        trainer = DetectionTrainer(args=train_args, compute_metrics=metrics, model_args=model_args, **common)
    else:
        train_args.batch_eval_metrics = False

        def compute_all(eval_pred):
            # The Trainer hands over every output by position (loss_dict, logits, pred_boxes, hidden states...):
            # pick logits and boxes by shape, per batch.
            num_labels = len(data.categories)
            for outputs, labels in zip(eval_pred.predictions, eval_pred.label_ids):
                arrays = [np.asarray(x) for x in outputs if isinstance(x, np.ndarray) and x.ndim == 3]
                logits = next(x for x in arrays if x.shape[-1] == num_labels)
                boxes = next(x for x in arrays if x.shape[-1] == 4 and x.shape[1] == logits.shape[1])
                sizes = torch.as_tensor(np.stack([np.asarray(t["orig_size"]) for t in labels]))
                dets = postprocess_detections(torch.as_tensor(logits), torch.as_tensor(boxes), sizes)
                metrics.add(dets.numpy(), np.array([int(np.asarray(t["image_id"]).reshape(-1)[0]) for t in labels]))
            result = metrics.compute()
            return {"map": result["map"]}

        trainer = Trainer(args=train_args, compute_metrics=compute_all, **common)
    result = trainer.evaluate()
    return {"mode": mode, "images": len(dataset), "map": result["eval_map"]}


def child(mode, ann, images, n, cache):
    code = CHILD.format(root=str(ROOT), here=str(Path(__file__).resolve().parent), mode=mode, ann=str(ann),
                        images=str(images), n=n, cache=str(cache))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; the median peak is used")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.small, args.large, args.repeats = 4, 8, 1
    from recipe.data.synthetic import make_demo_dataset

    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(tmp, seed=5, num_train=1, num_val=args.large)
        ann, images = Path(tmp) / "val" / "annotations.json", Path(tmp) / "val" / "images"
        growth = {}
        for mode in ("recipe", "trainer_default"):
            peaks, maps = {}, {}
            for n in (args.small, args.large):
                runs = [child(mode, ann, images, n, Path(tmp) / "cache") for _ in range(args.repeats)]
                peaks[n] = statistics.median(r["peak_rss_mb"] for r in runs)
                maps[n] = runs[0]["map"]
                print(f"{mode}: {n} images, peak RSS MB {[round(r['peak_rss_mb']) for r in runs]} "
                      f"(median {peaks[n]:.0f}), map {maps[n]:.4f}")
            growth[mode] = (peaks[args.large] - peaks[args.small]) * 1024 / (args.large - args.small)
        print(f"recipe_kb_per_image={growth['recipe']:.1f}")
        print(f"trainer_default_kb_per_image={growth['trainer_default']:.1f}")
        print(f"ratio={growth['trainer_default'] / max(growth['recipe'], 0.1):.1f}x")
