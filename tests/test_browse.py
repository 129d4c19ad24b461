"""browse_dataset: the sampled images with their (sanitized) ground truth, optionally as training augments them."""

import json

from PIL import Image

from conftest import ROOT
from recipe.tools.browse import BrowseArguments, browse_dataset


def browse(demo_dir, tmp_path, **kw):
    kw.setdefault("num_images", 3)
    return browse_dataset(BrowseArguments(ann=str(demo_dir / "val" / "annotations.json"),
                                          images=str(demo_dir / "val" / "images"),
                                          dataset_cache_dir=str(tmp_path / "cache"), **kw))


def test_ground_truth_of_a_sample_as_in_the_file(demo_dir, tmp_path):
    out = browse(demo_dir, tmp_path, output=str(tmp_path / "grid.jpg"))
    gt = json.loads((demo_dir / "val" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    by_file = {i["file_name"]: i for i in gt["images"]}
    assert len(out["images"]) == 3
    for shown in out["images"]:
        image = by_file[shown["file"]]
        assert (shown["width"], shown["height"]) == (image["width"], image["height"])
        expected = [{"category": names[a["category_id"]], "bbox": a["bbox"], "iscrowd": a["iscrowd"]}
                    for a in gt["annotations"] if a["image_id"] == image["id"]]
        assert shown["boxes"] == expected
    assert json.loads((tmp_path / "grid.json").read_text()) == json.loads(json.dumps(out))
    with Image.open(tmp_path / "grid.jpg") as im:
        assert im.format == "JPEG" and im.width == 4 * 400 + 5 * 6


def test_after_the_training_augmentation_repeatably(demo_dir, tmp_path):
    config = str(ROOT / "configs" / "demo.yaml")
    first = browse(demo_dir, tmp_path, output=str(tmp_path / "a.jpg"), augment=config)
    again = browse(demo_dir, tmp_path, output=str(tmp_path / "b.jpg"), augment=config)
    assert first["images"] == again["images"]  # seeded: the same flips, scales and jitter
    plain = browse(demo_dir, tmp_path, output=str(tmp_path / "c.jpg"))
    for aug, raw in zip(first["images"], plain["images"]):
        assert min(aug["width"], aug["height"]) in (208, 224, 240)  # the demo's multi-scale shortest edges
        assert aug["boxes"] != raw["boxes"] and len(aug["boxes"]) <= len(raw["boxes"])


def test_a_preset_shows_its_epoch_mosaics_in_the_first_epoch_with_them(demo_dir, tmp_path):
    """configs/deimv2.yaml's preset (deim) at the demo's sizes: the default epoch is the first with every op on, so
    Mosaic / MixUp bring boxes of other images; the final phase shows flips and the evaluation size only."""
    config = tmp_path / "deim.yaml"
    config.write_text((ROOT / "configs" / "deimv2.yaml").read_text() + "\nshortest_edges: [160]\neval_size: 160\n")
    mixed = browse(demo_dir, tmp_path, output=str(tmp_path / "a.jpg"), augment=str(config), num_images=8)
    plain = browse(demo_dir, tmp_path, output=str(tmp_path / "b.jpg"), num_images=8)
    assert mixed["augmentation"] == {"preset": "deim", "epoch": 4}  # deimv2.yaml: 58 epochs, no_aug 4: [4, 31, 54]
    assert sum(len(i["boxes"]) for i in mixed["images"]) > sum(len(i["boxes"]) for i in plain["images"])
    assert all((i["width"], i["height"]) == (160, 160) for i in mixed["images"])
    final = browse(demo_dir, tmp_path, output=str(tmp_path / "c.jpg"), augment=str(config), augment_epoch=57,
                   num_images=8)
    assert final["augmentation"]["epoch"] == 57
    for aug, raw in zip(final["images"], plain["images"]):
        assert len(aug["boxes"]) == len(raw["boxes"]) and (aug["width"], aug["height"]) == (160, 160)


def test_augment_epoch_is_refused_where_it_would_have_no_effect(demo_dir, tmp_path):
    import pytest

    from recipe.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--augment_epoch without --augment"):
        browse(demo_dir, tmp_path, output=str(tmp_path / "a.jpg"), augment_epoch=3)
    with pytest.raises(ConfigError, match="augmentation deformable, which is the same in every epoch"):
        browse(demo_dir, tmp_path, output=str(tmp_path / "b.jpg"), augment=str(ROOT / "configs" / "demo.yaml"),
               augment_epoch=3)
