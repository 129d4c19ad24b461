"""The label check before training: the checkpoint's classes against the data's (a summary, a loud warning where the
heads would serve other classes), `--keep_matching_heads` (the shared classes' rows moved to the data's label index,
row by row, on a sigmoid, a softmax and a denoising family), `--class_names` against a file that names its classes,
and the classes without a training box."""

import copy
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForObjectDetection

from published import family_model_config
from recipe.config.arguments import ModelArguments
from recipe.core.errors import ConfigError, DataError
from recipe.data.formats import DatasetOptions
from recipe.data.source import data_source, load_table
from recipe.data.splits import load_dataset_splits
from recipe.models.checkpoint_weights import rehead
from recipe.models.class_heads import class_dims
from recipe.models.loading import load_model, load_model_and_processor
from recipe.training.data import report_data

OLD = {0: "cat", 1: "dog", 2: "car"}
# The tensors sized by the class count, found without naming them (class_dims): {name: (class dim, extra rows)}.
HEADS = {
    "deformable_detr": ("SenseTime/deformable-detr", {
        f"class_embed.{i}.{p}": (0, 0) for i in range(2) for p in ("weight", "bias")}),
    "detr": ("facebook/detr-resnet-50", {  # softmax: the last row is "no object"
        "class_labels_classifier.weight": (0, 1), "class_labels_classifier.bias": (0, 1)}),
    "rt_detr": ("PekingU/rtdetr_r50vd", {  # the denoising embedding's last row is its padding index
        "model.denoising_class_embed.weight": (0, 1), "model.enc_score_head.weight": (0, 0),
        "model.enc_score_head.bias": (0, 0),
        **{f"model.decoder.class_embed.{i}.{p}": (0, 0) for i in range(2) for p in ("weight", "bias")}}),
}


def _checkpoint(tmp_path, family: str):
    """A tiny model of `family` for OLD's classes, its class rows made distinct, saved with its processor."""
    hub_id = HEADS[family][0]
    torch.manual_seed(0)
    model, processor = load_model(None, model_args=ModelArguments(model_config=json.dumps(family_model_config(hub_id))),
                                  id2label=OLD)
    with torch.no_grad():
        for name in HEADS[family][1]:
            model.get_parameter(name).copy_(torch.randn_like(model.get_parameter(name)))
    folder = tmp_path / family
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, AutoModelForObjectDetection.from_pretrained(folder)


def _tensors(model) -> dict:
    return dict(model.named_parameters(remove_duplicate=False))


@pytest.mark.parametrize("family", sorted(HEADS))
def test_class_dimensions_are_found_for_every_head(tmp_path, family):
    _, model = _checkpoint(tmp_path, family)
    assert class_dims(model.config, model) == HEADS[family][1]


@pytest.mark.parametrize(("family", "new"), [
    ("deformable_detr", ["car", "bus", "cat"]), ("detr", ["car", "bus", "cat"]), ("rt_detr", ["car", "bus", "cat"]),
    ("deformable_detr", ["dog", "car", "bus", "cat", "van"]), ("detr", ["dog", "cat", "car", "van"]),
    ("rt_detr", ["dog", "van"]), ("detr", ["car", "cat", "dog"])])
def test_keep_matching_heads_moves_the_rows_of_shared_names(tmp_path, family, new):
    """Rows of shared names = the checkpoint's rows at their old index; new names' rows = a fresh model's (built from
    the same seed); the extra last row stays last; every other tensor is the checkpoint's, shared heads still shared."""
    _, ckpt = _checkpoint(tmp_path, family)
    id2label = dict(enumerate(new))
    torch.manual_seed(1)
    model = rehead(copy.deepcopy(ckpt), id2label, keep_matching=True)
    config = copy.deepcopy(ckpt.config)
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
    torch.manual_seed(1)
    fresh = _tensors(AutoModelForObjectDetection.from_config(config))
    before, after = _tensors(ckpt), _tensors(model)
    assert after.keys() == before.keys()
    for name, (dim, extra) in HEADS[family][1].items():
        got, old = after[name], before[name]
        assert got.shape[dim] == len(new) + extra
        for i, label in enumerate(new):
            want = old.select(dim, list(OLD.values()).index(label)) if label in OLD.values() else \
                fresh[name].select(dim, i)
            assert torch.equal(got.select(dim, i), want), (name, label)
        if extra:
            assert torch.equal(got.select(dim, len(new)), old.select(dim, len(OLD))), name
    for name, tensor in after.items():
        if name not in HEADS[family][1]:
            assert torch.equal(tensor, before[name]), name
    for a, b in ((a, b) for a in before for b in before if a < b and before[a] is before[b]):
        assert after[a] is after[b], (a, b)


def test_permuted_classes_of_the_same_count_are_permuted(tmp_path):
    _, ckpt = _checkpoint(tmp_path, "detr")
    model = rehead(copy.deepcopy(ckpt), {0: "car", 1: "cat", 2: "dog"}, keep_matching=True)
    old, got = ckpt.class_labels_classifier.weight, model.class_labels_classifier.weight
    assert torch.equal(got, old[[2, 0, 1, 3]])


@pytest.mark.parametrize("family", sorted(HEADS))
def test_the_loaded_model_predicts_and_trains(tmp_path, family, caplog):
    folder, _ = _checkpoint(tmp_path, family)
    caplog.set_level(logging.INFO)
    args = ModelArguments(model_name_or_path=str(folder), offline=True, keep_matching_heads=True)
    model, _ = load_model_and_processor(args, {0: "car", 1: "bus", 2: "cat"})
    assert "the checkpoint's rows of 2 class(es) kept (car, cat)" in caplog.text
    assert "fresh rows for bus" in caplog.text
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(pixel_values=pixels)
    assert out.logits.shape[-1] == (4 if family == "detr" else 3)  # detr: 3 classes + "no object"
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.pred_boxes).all()
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.3, 0.1, 0.1]])  # cxcywh_norm
    labels = [{"class_labels": torch.tensor([1, 2]), "boxes": boxes},
              {"class_labels": torch.tensor([0]), "boxes": boxes[:1]}]
    loss = model.train()(pixel_values=pixels, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_the_class_check_summary_and_the_loud_warning(tmp_path, caplog):
    folder, _ = _checkpoint(tmp_path, "detr")
    caplog.set_level(logging.INFO)
    args = ModelArguments(model_name_or_path=str(folder), offline=True)
    load_model_and_processor(args, dict(OLD))
    assert "class check: the data's 3 classes are the checkpoint's, in its order" in caplog.text
    assert "CLASS HEADS KEPT" not in caplog.text
    caplog.clear()
    model, _ = load_model_and_processor(args, {0: "dog", 1: "cat", 2: "car"})
    assert "the checkpoint has 3 classes, the data 3; names in both: 3, at the same label index: 1" in caplog.text
    assert "*** CLASS HEADS KEPT FOR OTHER CLASSES" in caplog.text and "the same names in another order" in caplog.text
    assert "label 0 'cat' -> 'dog', 1 'dog' -> 'cat'" in caplog.text and "--keep_matching_heads" in caplog.text
    assert model.config.id2label == {0: "dog", 1: "cat", 2: "car"}  # as before: heads kept, names changed
    caplog.clear()
    load_model_and_processor(args, {0: "car", 1: "bus", 2: "van", 3: "cat"})
    assert ("the checkpoint has 3 classes, the data 4; names in both: 2, at the same label index: 0; only the "
            "checkpoint's: dog; only the data's: bus, van") in caplog.text
    assert "--keep_matching_heads would keep the rows of the 2 the checkpoint knows" in caplog.text
    assert "CLASS HEADS KEPT" not in caplog.text


def test_keep_matching_heads_with_nothing_to_keep_is_one_line(tmp_path):
    folder, _ = _checkpoint(tmp_path, "deformable_detr")
    args = ModelArguments(model_name_or_path=str(folder), offline=True, keep_matching_heads=True)
    with pytest.raises(ConfigError, match=r"^--keep_matching_heads: .*deformable_detr shares no class name with the "
                                          r"data \(checkpoint: cat, dog, car; data: bus, van\); nothing to keep"):
        load_model_and_processor(args, {0: "bus", 1: "van"})


def test_keep_matching_heads_needs_a_checkpoint():
    config = json.dumps(family_model_config("facebook/detr-resnet-50"))
    with pytest.raises(ConfigError, match="keep_matching_heads needs a checkpoint's class heads, and model_config"):
        ModelArguments(model_config=config, keep_matching_heads=True)
    with pytest.raises(ConfigError, match="keep_matching_heads needs a checkpoint's class heads, and random_init"):
        ModelArguments(model_name_or_path="x", random_init=True, keep_matching_heads=True)


# --------------------------------------------------------------------------------- the data's own class names

def _coco(root, categories, annotations, images=2):
    """A tiny COCO file with `images` 40x32 images; annotations: (image id, category id, iscrowd)."""
    (root / "images").mkdir(parents=True)
    for i in range(1, images + 1):
        Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(root / "images" / f"{i}.png")
    data = {"images": [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 32} for i in range(1, images + 1)],
            "categories": [{"id": c, "name": n} for c, n in categories],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": [2, 3, 10, 8], "area": 80.0,
                             "iscrowd": crowd} for k, (i, c, crowd) in enumerate(annotations)]}
    (root / "annotations.json").write_text(json.dumps(data))
    return root / "annotations.json"


def _table(ann, tmp_path, class_names=None, subset=None):
    source = data_source(SimpleNamespace(class_names=class_names), annotation_file=str(ann),
                         image_root=str(ann.parent / "images"), cache_dir=str(tmp_path / "cache"))
    return load_table(source, subset=subset)


def test_class_names_that_differ_from_the_file_are_one_line(tmp_path):
    ann = _coco(tmp_path / "coco", [(1, "cat"), (2, "dog")], [(1, 1, 0), (2, 2, 0)])
    assert [c["name"] for c in _table(ann, tmp_path).categories] == ["cat", "dog"]  # cached now
    assert [c["name"] for c in _table(ann, tmp_path, ["cat", "dog"]).categories] == ["cat", "dog"]
    with pytest.raises(DataError, match=rf"^{ann}: its categories are \['cat', 'dog'\] but --class_names gives "
                                        r"\['dog', 'cat'\] \(the same names in another order\); give the file's names"):
        _table(ann, tmp_path, ["dog", "cat"])
    with pytest.raises(DataError, match=r"are \['cat', 'dog'\] but --class_names gives \['cat', 'dog', 'car'\] "
                                        r"\(other names\)"):
        _table(ann, tmp_path, ["cat", "dog", "car"])


def test_class_names_against_a_yolo_data_yaml(tmp_path):
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(root / "images" / split / "a.png")
        (root / "labels" / split / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")
    load = lambda names: load_dataset_splits(  # noqa: E731 (two calls, one line each)
        str(root / "data.yaml"), DatasetOptions(class_names=names), cache_dir=str(tmp_path / "cache"))
    assert [c["name"] for c in load(("cat", "dog"))["train"].categories] == ["cat", "dog"]
    with pytest.raises(DataError, match=r"its categories are \['cat', 'dog'\] but --class_names gives \['dog'\]"):
        load(("dog",))


def test_classes_without_a_training_box_are_named(tmp_path, caplog):
    # cat: 1 box; dog: only a crowd box; car: none; bus: only in image 2 (left out by subset 1).
    ann = _coco(tmp_path / "coco", [(1, "cat"), (3, "dog"), (5, "car"), (8, "bus")],
                [(1, 1, 0), (1, 3, 1), (2, 8, 0)])
    caplog.set_level(logging.WARNING, logger="recipe")
    out = tmp_path / "out"
    data_args = SimpleNamespace(dataset=None, train_ann=str(ann), val_ann=None)
    report_data(data_args, SimpleNamespace(output_dir=str(out)), _table(ann, tmp_path), None)
    assert "class 'dog' (id 3) has no training box: the model cannot learn it" in caplog.text
    assert "class 'car' (id 5) has no training box: the model cannot learn it" in caplog.text
    assert "'cat'" not in caplog.text and "'bus'" not in caplog.text
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"]["classes_without_boxes"] == [{"id": 3, "name": "dog"}, {"id": 5, "name": "car"}]
    report_data(data_args, SimpleNamespace(output_dir=str(out)), _table(ann, tmp_path, subset=1), None)
    report = json.loads((out / "data_report.json").read_text())
    assert [c["name"] for c in report["train"]["classes_without_boxes"]] == ["dog", "car", "bus"]


def test_a_run_from_the_command_line_keeps_the_matching_rows(demo_dir, tmp_path, caplog):
    """`--keep_matching_heads true` through the parser into a 1-step run on the demo's 5 classes (car shared)."""
    from conftest import demo_args
    from recipe.training.run import run

    folder, _ = _checkpoint(tmp_path, "deformable_detr")
    caplog.set_level(logging.INFO)
    run(*demo_args(demo_dir, tmp_path, "--model_config", "none", "--model_name_or_path", str(folder), "--offline",
                   "true", "--keep_matching_heads", "true", "--max_steps", "1", "--eval_strategy", "no",
                   "--save_strategy", "no", "--val-img", "", "--val-ann", ""))
    assert "the checkpoint has 3 classes, the data 5; names in both: 1, at the same label index: 0" in caplog.text
    assert "the checkpoint's rows of 1 class(es) kept (car)" in caplog.text
    saved = AutoModelForObjectDetection.from_pretrained(tmp_path / "out")
    assert saved.config.id2label[0] == "car" and saved.class_embed[0].weight.shape == (5, 32)
