"""What an exported file costs: its map / map_50 / map_small on the validation set (detr-evaluate's numbers) and its
latency per image, next to the PyTorch model it came from, written into the sidecar ("measured") by
`recipe.inference.export` and printed as a table (`print_export`)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch


def latency_ms(call, batch: dict, *, size: int, runs: int) -> float:
    """Median over `runs` timed calls (after one warm-up) of `call(**inputs)` on the first `size` images of
    `batch`, per image."""
    inputs = {k: v[:size] for k, v in batch.items()}
    call(**inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(**inputs)
        times.append((time.perf_counter() - start) * 1000 / size)
    return statistics.median(times)


def measure(exported: Path, pytorch_model: str, source, *, threads: int, runs: int = 10) -> dict:
    """The exported file and the PyTorch model it came from, on the validation set `source`: the COCO numbers of
    each (detr-evaluate's) and latency per image at batch 1 and 8 (`threads` threads each, the same padded batch of
    the first 8 validation images). -> {"threads", "images", "exported": {...}, "pytorch": {...}}."""
    from recipe.data.source import load_table
    from recipe.evaluation.evaluate import EvaluateRequest, evaluate_request
    from recipe.inference.inputs import ImageFiles, collate_readable
    from recipe.models.exported import load_exported_detector
    from recipe.models.loading import load_detector
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        scores = {}
        for side, model in (("exported", str(exported)), ("pytorch", pytorch_model)):
            metrics = evaluate_request(EvaluateRequest(model, source, num_workers=0))
            scores[side] = {k: round(metrics[k], 4) for k in ("map", "map_50", "map_small")}
        detector, processor, _ = load_exported_detector(str(exported), threads=threads)
        files = [Path(p) for p in load_table(source).dataset.select_columns(["image_path"])["image_path"][:8]]
        images = ImageFiles(files, eval_augmentation_for(processor.size, rule=rule_of(processor)))
        batch = collate_readable(detector.config, processor)([images[i] for i in range(len(images))])
        inputs = {"pixel_values": batch["pixel_values"], "pixel_mask": batch["pixel_mask"]}
        model = load_detector(pytorch_model)[0]
        sizes = [1, len(files)] if len(files) > 1 else [1]
        for side, call in (("exported", detector), ("pytorch", model)):
            with torch.inference_mode():
                for size in sizes:
                    scores[side][f"ms_per_image_batch_{size}"] = round(
                        latency_ms(call, inputs, size=size, runs=runs), 2)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "images": metrics["num_images"], "latency_images": len(files), **scores}


def print_export(args, meta: dict) -> None:
    """What was written (`args`: the ExportArguments), how it compares with PyTorch, and (with the data) what it
    scores and costs."""
    check = meta["check"]
    print(f"wrote {args.output} ({meta['model_type']}, {meta['runtime']}, frame {meta['frame'][0]}x{meta['frame'][1]}, "
          f"batch {meta['batch']}, {meta['dtype']}, opset {meta['opset']}) and {args.output}.json; vs PyTorch on a "
          f"random batch: max |diff| logits {check['logits_max_abs_diff']:.2e}, boxes "
          f"{check['pred_boxes_max_abs_diff']:.2e}")
    if "int8" in meta:
        print(f"int8: {meta['int8']['method']}; kept in float: {', '.join(meta['int8']['kept_float_op_types'])}; "
              f"calibrated on {meta['int8']['calibration_images']} training images")
    measured = meta.get("measured")
    if measured:
        print(f"measured on {measured['images']} validation images, latency on {measured['threads']} thread(s):")
        sizes = [k for k in measured["pytorch"] if k.startswith("ms_per_image")]
        print("| model | map | map_50 | map_small | " + " | ".join(s.replace("_", " ") for s in sizes) + " |")
        for side, name in (("pytorch", "PyTorch"), ("exported", Path(args.output).name)):
            row = measured[side]
            print(f"| {name} | {row['map']:.4f} | {row['map_50']:.4f} | {row['map_small']:.4f} | "
                  + " | ".join(f"{row[s]:.2f}" for s in sizes) + " |")
    else:
        print("(give the validation data, --dataset or --val_ann/--val_img, to measure its map and latency)")
