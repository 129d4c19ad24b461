"""Training input pipeline throughput: python benchmarks/dataloader.py [--bccd DIR] [--workers 0 2] [--rounds 3]

In one run, on the same files (BCCD's 364 real 640x480 JPEGs by default: ../shared/data/bccd), for each
worker count and in interleaved rounds, prints the images/s of
  recipe      the training transform and collator that `train.py` uses (decode; flip, size and colour-jitter
              factors drawn, labels; pad once per batch, uint8: the Trainer flips, resizes, jitters and
              normalises the batch on the device), through a torch DataLoader as the Trainer builds it;
  recipe_cpu_norm  the same with all of that done in the loader (float32 on the CPU);
  recipe_fresh_shm  the recipe with a fresh shared-memory segment for every batch, as torch's transport gives
              (workers' buffers not reused; the same as recipe without workers);
  recipe_parquet  the recipe on the same images and boxes read from a Hugging Face parquet folder with the JPEG
              bytes embedded (`--dataset`: the bytes written out once, then read as files);
  hf_example  a pipeline written here after transformers' examples/pytorch/object-detection/
              run_object_detection.py: a `datasets` Image column, its albumentations policy, the image
              processor resizing (longest edge 600) and padding every image to 600x600, a stacking collate;
  floor       decode only (no augmentation, no tensors): the fastest of torchvision, OpenCV and PIL;
  decode_and_ship  torchvision decoding plus the DataLoader's transport of the decoded batch (torch's default
              collate): with workers, what shipping pixels through shared memory costs any loader;
then the medians and the ratios recipe/hf_example and recipe/floor, and the recipe's time per stage (with
the cost of `normalise_batch`, which flips, resizes, jitters and normalises the batch, on this CPU; on a GPU it
runs there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import albumentations as A
import cv2
import datasets
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from recipe.data.builder import load_detection_dataset  # noqa: E402
from recipe.data.images import _decode  # noqa: E402
from recipe.pipeline.augment import build_augmentation  # noqa: E402
from recipe.pipeline.collate import DetectionCollator  # noqa: E402
from recipe.pipeline.device_batch import normalise_batch  # noqa: E402
from recipe.pipeline.transforms import AugmentationSeeds, StageTimer, make_transform  # noqa: E402

CLASSES = ["RBC", "WBC", "Platelets"]
DEVICE_STAGE = "flip+resize+jitter+normalise (on the device; this CPU here)"


def bccd_to_coco(bccd: Path, out: Path) -> Path:
    """BCCD's VOC XML (1-based inclusive corners) -> a COCO file (`xywh_abs`) beside the JPEGs' folder."""
    images, annotations = [], []
    for n, xml in enumerate(sorted((bccd / "Annotations").glob("*.xml")), start=1):
        root = ET.parse(xml).getroot()
        images.append({"id": n, "file_name": root.findtext("filename"), "width": int(root.findtext("size/width")),
                       "height": int(root.findtext("size/height"))})
        for obj in root.findall("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append({"id": len(annotations) + 1, "image_id": n, "iscrowd": 0,
                                "category_id": CLASSES.index(obj.findtext("name")) + 1,
                                "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1],
                                "area": (x2 - x1 + 1) * (y2 - y1 + 1)})
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}))
    return out


def fake_bccd(root: Path, count: int = 12) -> Path:
    """BCCD's layout (BCCD/JPEGImages + VOC BCCD/Annotations) with `count` small random JPEGs, into `root` -> `root`."""
    rng = np.random.default_rng(0)
    (root / "BCCD" / "JPEGImages").mkdir(parents=True)
    (root / "BCCD" / "Annotations").mkdir()
    for i in range(count):
        name = f"BloodImage_{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(root / "BCCD" / "JPEGImages" / name)
        objects = "".join(f"<object><name>{c}</name><bndbox><xmin>{5 + 20 * k}</xmin><ymin>6</ymin>"
                          f"<xmax>{30 + 20 * k}</xmax><ymax>40</ymax></bndbox></object>"
                          for k, c in enumerate(CLASSES))
        (root / "BCCD" / "Annotations" / f"{name[:-4]}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>128</width><height>96</height></size>"
            f"{objects}</annotation>")
    return root


# ---- the three pipelines -------------------------------------------------------------------------------------

def recipe_dataset(table, args, stage_timer=None):
    augmentation = build_augmentation(True, args.shortest_edges, args.longest_edge, max(args.shortest_edges))
    return table.with_transform(make_transform(augmentation, seeds=AugmentationSeeds(0), stage_timer=stage_timer,
                                               batch_geometry=True))


def hf_example_dataset(table, processor_cls):
    """The example's documented behaviour, on the same files and boxes (its policy, sizes and collate)."""
    rows = table.select_columns(["image_id", "image_path", "objects"]).to_dict()
    data = datasets.Dataset.from_dict({
        "image_id": rows["image_id"], "image": rows["image_path"],
        "objects": [{"bbox": o["bbox"], "category": o["category"], "area": o["area"]} for o in rows["objects"]],
    }).cast_column("image", datasets.Image())
    processor = processor_cls(do_resize=True, size={"max_height": 600, "max_width": 600}, do_pad=True,
                              pad_size={"height": 600, "width": 600})
    policy = A.Compose([
        A.Compose([A.SmallestMaxSize(max_size=600, p=1.0), A.RandomSizedBBoxSafeCrop(height=600, width=600, p=1.0)],
                  p=0.2),
        A.OneOf([A.Blur(blur_limit=7, p=0.5), A.MotionBlur(blur_limit=7, p=0.5),
                 A.Defocus(radius=(1, 5), alias_blur=(0.1, 0.25), p=0.1)], p=0.1),
        A.Perspective(p=0.1), A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5),
        A.HueSaturationValue(p=0.1),
    ], bbox_params=A.BboxParams(format="coco", label_fields=["category"], clip=True, min_area=25))

    def transform(batch):
        images, targets = [], []
        for image_id, image, objects in zip(batch["image_id"], batch["image"], batch["objects"]):
            out = policy(image=np.array(image.convert("RGB")), bboxes=objects["bbox"], category=objects["category"])
            images.append(out["image"])
            targets.append({"image_id": image_id, "annotations": [
                {"image_id": image_id, "category_id": c, "iscrowd": 0, "area": a, "bbox": list(b)}
                for c, a, b in zip(out["category"], objects["area"], out["bboxes"])]})
        result = processor(images=images, annotations=targets, return_tensors="pt")
        result.pop("pixel_mask", None)
        return result

    return data.with_transform(transform)


def hf_example_collate(features):
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": [f["labels"] for f in features]}


class DecodeOnly(torch.utils.data.Dataset):
    """Reads and decodes each file to an RGB array; nothing else (`ship`: returns the decoded uint8 tensor)."""

    def __init__(self, paths, decoder, ship=False):
        self.paths, self.decoder, self.ship = paths, decoder, ship

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with open(self.paths[i], "rb") as f:
            data = f.read()
        if self.decoder == "torchvision":
            image = _decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            return image if self.ship else image.shape[-1]
        if self.decoder == "opencv":
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB).shape[1]
        with Image.open(self.paths[i]) as im:
            return np.asarray(im.convert("RGB")).shape[1]


# ---- measurement ---------------------------------------------------------------------------------------------

def images_per_second(dataset, collate_fn, *, workers: int, batch_size: int, seed: int) -> float:
    """Iterate one epoch (shuffled, as the Trainer does); time from the first batch (worker start-up is not
    throughput) to the last."""
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=collate_fn, drop_last=True)
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += batch if isinstance(batch, int) else len(batch) if isinstance(batch, torch.Tensor) else \
            len(batch["labels"])
        del batch
    return images / (time.perf_counter() - start)


def stage_breakdown(table, processor, args) -> dict[str, float]:
    """ms per image of each stage of the recipe's pipeline (0 workers: the timer lives in this process)."""
    timer, collate_s, normalise_s = StageTimer(), 0.0, 0.0
    dataset = recipe_dataset(table, args, stage_timer=timer)
    collator = DetectionCollator(processor, normalise_on_device=True)
    torch.manual_seed(0)
    for start in range(0, len(dataset) - args.batch_size + 1, args.batch_size):
        columns = dataset[start:start + args.batch_size]
        features = [dict(zip(columns, row)) for row in zip(*columns.values())]
        t0 = time.perf_counter()
        batch = collator(features)
        t1 = time.perf_counter()
        normalise_batch(batch, processor)
        collate_s, normalise_s = collate_s + t1 - t0, normalise_s + time.perf_counter() - t1
    out = {stage: 1000 * s / timer.images for stage, s in timer.seconds.items()}
    out["collate"] = 1000 * collate_s / timer.images
    out[DEVICE_STAGE] = 1000 * normalise_s / timer.images
    return out


def parquet_table(table, tmp: Path):
    """The same images and boxes as a Hugging Face parquet dataset folder (the transformers example's schema, JPEG
    bytes embedded), read back through `--dataset`'s path."""
    from recipe.data.splits import load_dataset_splits

    features = datasets.Features({"image_id": datasets.Value("int64"), "image": datasets.Image(),
                                  "width": datasets.Value("int32"), "height": datasets.Value("int32"),
                                  "objects": {"bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
                                              "category": datasets.List(datasets.ClassLabel(names=CLASSES))}})
    rows = table.with_format(None)
    (tmp / "parquet" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({
        "image_id": rows["image_id"], "width": rows["width"], "height": rows["height"],
        "image": [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in rows["image_path"]],
        "objects": [{"bbox": o["bbox"], "category": o["category"]} for o in rows["objects"]]},
        features=features).to_parquet(str(tmp / "parquet" / "data" / "train-00000-of-00001.parquet"))
    return load_dataset_splits(str(tmp / "parquet"), cache_dir=str(tmp / "cache"), train_val_split=0)["train"].dataset


def run(args) -> dict:
    import transformers

    processor_cls = getattr(transformers, args.processor)
    with tempfile.TemporaryDirectory() as tmp:
        ann = bccd_to_coco(args.bccd / "BCCD", Path(tmp) / "bccd.json")
        table = load_detection_dataset(str(ann), str(args.bccd / "BCCD" / "JPEGImages"),
                                       cache_dir=str(Path(tmp) / "cache")).dataset
        paths = list(table["image_path"])
        processor = processor_cls()
        recipe = recipe_dataset(table, args)  # one dataset, two collators: the batch's last step differs
        parquet = recipe_dataset(parquet_table(table, Path(tmp)), args)
        pipelines = {"recipe": (recipe, DetectionCollator(processor, normalise_on_device=True)),
                     "recipe_parquet": (parquet, DetectionCollator(processor, normalise_on_device=True)),
                     "recipe_cpu_norm": (recipe, DetectionCollator(processor)),
                     "recipe_fresh_shm": (recipe, DetectionCollator(processor, normalise_on_device=True,
                                                                    reuse_worker_buffers=False)),
                     "hf_example": (hf_example_dataset(table, processor_cls), hf_example_collate)}
        for decoder in ("torchvision", "opencv", "pil"):
            pipelines[f"decode_{decoder}"] = (DecodeOnly(paths, decoder), len)
        # not a floor: decoding plus the DataLoader's own transport of the decoded batch (torch's default
        # collate, which stacks into shared memory in a worker), what any loader shipping pixels pays
        pipelines["decode_and_ship"] = (DecodeOnly(paths, "torchvision", ship=True),
                                        torch.utils.data.default_collate)
        print(f"{len(paths)} images, batch {args.batch_size}, recipe sizes: shortest edge {args.shortest_edges}, "
              f"longest {args.longest_edge}; hf_example: longest 600, padded to 600x600", flush=True)
        results = {}
        for workers in args.workers:
            runs = {name: [] for name in pipelines}
            for r in range(args.rounds):
                for name, (dataset, collate_fn) in pipelines.items():  # interleaved: same machine load
                    runs[name].append(images_per_second(dataset, collate_fn, workers=workers,
                                                        batch_size=args.batch_size, seed=r))
                print(f"workers={workers} round {r + 1}: " + ", ".join(f"{n}={v[-1]:.0f}" for n, v in runs.items()),
                      flush=True)
            results[workers] = {name: statistics.median(v) for name, v in runs.items()}
        stages = stage_breakdown(table, processor, args)
    return {"results": results, "stages": stages}


def report(out: dict) -> None:
    for workers, med in out["results"].items():
        decoders = [n for n in med if n.startswith("decode_") and n != "decode_and_ship"]
        floor_name = max(decoders, key=med.get)
        floor = med[floor_name]
        print(f"workers={workers} medians (images/s): recipe={med['recipe']:.0f} hf_example={med['hf_example']:.0f} "
              f"floor={floor:.0f} ({floor_name[7:]}; " + ", ".join(f"{n[7:]} {med[n]:.0f}" for n in decoders) + ")")
        print(f"workers={workers} recipe/hf_example={med['recipe'] / med['hf_example']:.2f}x "
              f"recipe/floor={100 * med['recipe'] / floor:.0f}% (recipe_cpu_norm={med['recipe_cpu_norm']:.0f}: "
              f"{med['recipe_cpu_norm'] / med['hf_example']:.2f}x, {100 * med['recipe_cpu_norm'] / floor:.0f}%); "
              f"decode_and_ship={med['decode_and_ship']:.0f}: recipe at "
              f"{100 * med['recipe'] / med['decode_and_ship']:.0f}% of it; "
              f"recipe_fresh_shm={med['recipe_fresh_shm']:.0f}: reused buffers "
              f"{med['recipe'] / med['recipe_fresh_shm']:.2f}x; recipe_parquet={med['recipe_parquet']:.0f} "
              f"({100 * med['recipe_parquet'] / med['recipe']:.0f}% of recipe on files)")
    print("recipe ms per image (0 workers): " + ", ".join(f"{k}={v:.2f}" for k, v in out["stages"].items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bccd", type=Path, default=ROOT.parent / "shared" / "data" / "bccd",
                        help="folder holding BCCD/JPEGImages and BCCD/Annotations")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shortest-edges", type=int, nargs="+", default=[416, 448, 480],
                        help="recipe's multi-scale sizes; the default keeps it near the example's 600x450 output")
    parser.add_argument("--longest-edge", type=int, default=600)
    parser.add_argument("--processor", default="DeformableDetrImageProcessor")
    parser.add_argument("--smoke", action="store_true", help=(
        "run on tiny inputs in seconds (figures mean nothing): 12 random 128x96 JPEGs in BCCD's layout"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dataloader-") as tmp:
        if args.smoke:
            args.bccd, args.workers, args.rounds, args.batch_size = fake_bccd(Path(tmp)), [0, 1], 1, 4
            args.shortest_edges, args.longest_edge = [64, 80], 120
        if not (args.bccd / "BCCD" / "JPEGImages").is_dir():
            sys.exit(f"{args.bccd}: BCCD not found (expects BCCD/JPEGImages and BCCD/Annotations); pass --bccd")
        report(run(args))
