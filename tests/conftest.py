"""Shared fixtures. Tests are offline, tiny and seeded; data from ../shared/data is skipped when absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECIPE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (real test data lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests must never reach the Hub: the machines that run them have no network beyond PyPI.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small synthetic demo dataset (seeded), shared by the tests that train."""
    from recipe.data.synthetic import make_demo_dataset

    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(out, seed=0, num_train=24, num_val=8)
    return out


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


DEMO = str(ROOT / "configs" / "demo.yaml")


def demo_args(demo_dir, tmp_path, *extra):
    """configs/demo.yaml on the `demo_dir` data, small images, no workers: `run(*demo_args(...))`."""
    from recipe.config import parse_config

    return parse_config([DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann",
                         f"{demo_dir}/train/annotations.json", "--val-img", f"{demo_dir}/val/images",
                         "--val-ann", f"{demo_dir}/val/annotations.json", "--output_dir", str(tmp_path / "out"),
                         "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
                         "--shortest_edges", "128", "--eval_size", "128", "--logging_steps", "1", *extra])


def tiny_model_args(**overrides):
    """ModelArguments for the demo's tiny model config, from configs/demo.yaml."""
    import yaml

    from recipe.config import ModelArguments

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["model_config"]
    return ModelArguments(model_config=json.dumps(cfg), **overrides)


# ---------------------------------------------- the demo data in other formats (tests/test_dataset_flag.py)

def demo_as_voc(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as a Pascal VOC root (1-based inclusive corners: xmin = x + 1, xmax = x + w; exact for
    the demo's integer boxes). Image names are prefixed by the split; lists in ImageSets/Main/{train,val}.txt."""
    import shutil

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        by_image = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        stems = []
        for img in coco["images"]:
            stem = f"{split}_{Path(img['file_name']).stem}"
            stems.append(stem)
            shutil.copy(demo_dir / split / "images" / img["file_name"], out / "JPEGImages" / f"{stem}.jpg")
            objects = "".join(
                f"<object><name>{names[a['category_id']]}</name><difficult>{a['iscrowd']}</difficult><bndbox>"
                f"<xmin>{a['bbox'][0] + 1}</xmin><ymin>{a['bbox'][1] + 1}</ymin><xmax>{a['bbox'][0] + a['bbox'][2]}"
                f"</xmax><ymax>{a['bbox'][1] + a['bbox'][3]}</ymax></bndbox></object>"
                for a in by_image.get(img["id"], []))
            (out / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.jpg</filename><size><width>{img['width']}</width><height>"
                f"{img['height']}</height><depth>3</depth></size>{objects}</annotation>")
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return out


def demo_as_yolo(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as an Ultralytics dataset (data.yaml, images/{train,val}, labels/{train,val})."""
    import shutil

    for split in ("train", "val"):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        order = [c["id"] for c in coco["categories"]]
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        lines = {img["id"]: [] for img in coco["images"]}
        sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
        for a in coco["annotations"]:
            (x, y, w, h), (width, height) = a["bbox"], sizes[a["image_id"]]
            lines[a["image_id"]].append(f"{order.index(a['category_id'])} {(x + w / 2) / width!r} "
                                        f"{(y + h / 2) / height!r} {w / width!r} {h / height!r}\n")
        for img in coco["images"]:
            shutil.copy(demo_dir / split / "images" / img["file_name"], out / "images" / split / img["file_name"])
            (out / "labels" / split / f"{Path(img['file_name']).stem}.txt").write_text("".join(lines[img["id"]]))
    names = [c["name"] for c in json.loads((demo_dir / "train" / "annotations.json").read_text())["categories"]]
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames: {json.dumps(names)}\n")
    return out / "data.yaml"


def demo_as_parquet(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as a Hugging Face dataset repo folder in the transformers example's schema (cppe-5):
    data/{train,validation}-00000-of-00001.parquet with the JPEG bytes embedded."""
    from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value

    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "validation")):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        order = [c["id"] for c in coco["categories"]]
        features = Features({"image_id": Value("int64"), "image": Image(), "width": Value("int32"),
                             "height": Value("int32"), "objects": Sequence({
                                 "id": Value("int64"), "area": Value("float64"),
                                 "bbox": Sequence(Value("float32"), length=4),
                                 "category": ClassLabel(names=[c["name"] for c in coco["categories"]])})})
        objects = {img["id"]: {"id": [], "area": [], "bbox": [], "category": []} for img in coco["images"]}
        for a in coco["annotations"]:
            o = objects[a["image_id"]]
            o["id"].append(a["id"]), o["area"].append(a["area"]), o["bbox"].append(a["bbox"])
            o["category"].append(order.index(a["category_id"]))
        rows = {"image_id": [img["id"] for img in coco["images"]],
                "image": [{"bytes": (demo_dir / split / "images" / img["file_name"]).read_bytes(),
                           "path": img["file_name"]} for img in coco["images"]],
                "width": [img["width"] for img in coco["images"]], "height": [img["height"] for img in coco["images"]],
                "objects": [objects[img["id"]] for img in coco["images"]]}
        Dataset.from_dict(rows, features=features).to_parquet(str(out / "data" / f"{name}-00000-of-00001.parquet"))
    return out

from published import hub_cache, offline_hub  # noqa: E402,F401  (the local hub cache of published checkpoints)
