"""Hugging Face datasets in the transformers example's schema (cppe-5): a parquet repo folder with embedded JPEG
bytes, a save_to_disk folder, a Hub id from the local cache (offline); images are never re-encoded."""

import glob
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from recipe.core.errors import DataError
from recipe.data.formats import DatasetOptions, detect
from recipe.data.images import read_image
from recipe.data.splits import load_dataset_splits


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    # load_dataset copies a parquet folder into the datasets cache: keep that copy in the test's folder.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))


def _jpegs(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        PILImage.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path, quality=87)
        paths.append(str(path))
    return paths


def cppe5(paths, category_key="category", start_id=10):
    """A cppe-5 style Dataset: image_id, image (embedded JPEG bytes), width, height, objects."""
    from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value

    features = Features({"image_id": Value("int64"), "image": Image(), "width": Value("int32"),
                         "height": Value("int32"), "objects": Sequence({
                             "id": Value("int64"), "area": Value("int64"),
                             "bbox": Sequence(Value("float32"), length=4),
                             category_key: ClassLabel(names=["Coverall", "Face_Shield", "Gloves"])})})
    objects = [{"id": [100 + 2 * i, 101 + 2 * i], "area": [35, 20],
                "bbox": [[1.5, 2.0, 5.0, 7.0], [30.0, 25.0, 20.0, 4.0]], category_key: [2, 0]}
               for i in range(len(paths))]
    # Embedded as the Hub's parquet files hold them: the file's bytes and its base name.
    images = [{"bytes": Path(p).read_bytes(), "path": os.path.basename(p)} for p in paths]
    return Dataset.from_dict({"image_id": list(range(start_id, start_id + len(paths))), "image": images,
                              "width": [40] * len(paths), "height": [30] * len(paths), "objects": objects},
                             features=features)


def parquet_repo(tmp_path):
    """What `hf download --repo-type dataset` leaves: data/<split>-00000-of-00001.parquet, images embedded."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    train = _jpegs(tmp_path / "jpg" / "train", 3)
    val = _jpegs(tmp_path / "jpg" / "val", 2)
    cppe5(train).to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    cppe5(val, start_id=50).to_parquet(str(repo / "data" / "validation-00000-of-00001.parquet"))
    return repo, train, val


def _load(source, tmp_path, **kw):
    return load_dataset_splits(str(source), cache_dir=str(tmp_path / "cache"), **kw)


def test_parquet_folder_with_embedded_jpeg_bytes(tmp_path):
    repo, train_files, val_files = parquet_repo(tmp_path)
    shutil.rmtree(tmp_path / "jpg")  # the parquet files carry the images: nothing else may be read
    assert detect(str(repo)) == "hf"
    data = _load(repo, tmp_path)
    train, val = data["train"], data["validation"]
    assert train.categories == [{"id": 0, "name": "Coverall"}, {"id": 1, "name": "Face_Shield"},
                                {"id": 2, "name": "Gloves"}]
    rows = train.dataset.with_format(None)
    assert rows["image_id"] == [10, 11, 12] and val.dataset["image_id"] == [50, 51]
    # The second box (30, 25, 20, 4) leaves the 40x30 image: clamped to (30, 25, 10, 4); area as written.
    assert rows[0]["objects"]["bbox"] == [[1.5, 2.0, 5.0, 7.0], [30.0, 25.0, 10.0, 4.0]]
    assert rows[0]["objects"]["category"] == [2, 0] and rows[0]["objects"]["id"] == [100, 101]
    assert rows[0]["objects"]["area"] == [35.0, 20.0]
    assert train.report["boxes_clamped"] == 3 and train.report["format"] == "hf"


def test_embedded_bytes_are_written_as_they_are_never_re_encoded(tmp_path):
    repo, train_files, _ = parquet_repo(tmp_path)
    originals = [Path(p).read_bytes() for p in train_files]
    pixels = [read_image(p) for p in train_files]
    train = _load(repo, tmp_path)["train"]
    for row, data, image in zip(train.dataset.with_format(None), originals, pixels):
        assert Path(row["image_path"]).read_bytes() == data
        np.testing.assert_array_equal(read_image(row["image_path"]), image)


def test_save_to_disk_with_train_only_splits_validation_off_and_reads_categories(tmp_path):
    from datasets import DatasetDict

    folder = tmp_path / "saved"
    DatasetDict({"train": cppe5(_jpegs(tmp_path / "jpg", 6), category_key="categories")}).save_to_disk(str(folder))
    assert detect(str(folder)) == "hf"
    data = _load(folder, tmp_path, train_val_split=0.34, seed=1)
    assert len(data["train"].dataset) == 4 and len(data["validation"].dataset) == 2
    assert data["validation"].dataset[0]["objects"]["category"] == [2, 0]


def test_hub_id_from_the_local_cache_offline_and_a_one_line_error_when_not_cached(tmp_path, monkeypatch):
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    repo, _, _ = parquet_repo(tmp_path)
    # Leave in the datasets cache what an online `load_dataset("someone/cppe5")` leaves:
    # <cache>/someone___cppe5/default/0.0.0/<hash>/{cppe5-train.arrow, dataset_info.json, ...}.
    hub_cache = tmp_path / "hub_cache"
    builder = Parquet(cache_dir=str(tmp_path / "prep"), dataset_name="someone___cppe5", config_name="default",
                      data_files={s: str(repo / "data" / f"{s}-00000-of-00001.parquet")
                                  for s in ("train", "validation")})
    builder.download_and_prepare()
    target = hub_cache / "someone___cppe5" / "default" / "0.0.0" / "0123abcd"
    target.mkdir(parents=True)
    for f in glob.glob(f"{builder.cache_dir}/*"):
        shutil.copy(f, target / os.path.basename(f).replace("someone___cppe5", "cppe5"))
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "config_name": "default", "dataset_name": "cppe5"}))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(hub_cache))

    assert detect("someone/cppe5") == "hf"
    data = load_dataset_splits("someone/cppe5", DatasetOptions(offline=True), cache_dir=str(tmp_path / "cache"))
    assert data["train"].dataset["image_id"] == [10, 11, 12] and len(data["validation"].dataset) == 2
    with pytest.raises(DataError, match=r"^--dataset nobody/nothing: not a path here, not in the local datasets "
                                        r"cache .*, and offline mode is on; load it once online, or pass a local "
                                        r"folder") as e:
        load_dataset_splits("nobody/nothing", DatasetOptions(offline=True), cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(e.value)


def test_a_dataset_without_objects_or_with_another_bbox_layout_names_its_columns(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Image, Sequence, Value

    paths = _jpegs(tmp_path / "jpg", 2)
    plain = Dataset.from_dict({"image": paths, "label": [0, 1]}, features=Features({"image": Image(),
                                                                                   "label": Value("int64")}))
    DatasetDict({"train": plain}).save_to_disk(str(tmp_path / "a"))
    with pytest.raises(DataError, match=r"a \[train\]: no 'objects' column \(columns: \['image', 'label'\]\)"):
        _load(tmp_path / "a", tmp_path)
    other = Dataset.from_dict({"image": paths, "objects": [{"boxes": [[1, 2, 3, 4]], "label": [0]}] * 2},
                              features=Features({"image": Image(), "objects": Sequence(
                                  {"boxes": Sequence(Value("float32"), length=4), "label": Value("int64")})}))
    DatasetDict({"train": other}).save_to_disk(str(tmp_path / "b"))
    with pytest.raises(DataError, match=r"b \[train\]: objects has \['boxes', 'label'\]; expected bbox"):
        _load(tmp_path / "b", tmp_path)


def test_rewriting_a_parquet_file_rebuilds_the_table(tmp_path):
    repo, _, _ = parquet_repo(tmp_path)
    assert _load(repo, tmp_path)["train"].dataset[0]["objects"]["category"] == [2, 0]
    assert _load(repo, tmp_path)["train"].from_cache
    ds = cppe5(_jpegs(tmp_path / "jpg2", 3))
    ds = ds.map(lambda r: {"objects": {**r["objects"], "category": [1, 1]}}, features=ds.features)
    ds.to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    again = _load(repo, tmp_path)["train"]
    assert not again.from_cache and again.dataset[0]["objects"]["category"] == [1, 1]


def test_images_stored_as_paths_are_read_where_they_are(tmp_path):
    from datasets import Dataset, Features, Image, Sequence, Value

    files = _jpegs(tmp_path / "jpg", 2)
    features = Features({"image": Image(), "objects": Sequence({"bbox": Sequence(Value("float32"), length=4),
                                                               "category": Value("int64")})})
    ds = Dataset.from_dict({"image": [{"path": p, "bytes": None} for p in files],
                            "objects": [{"bbox": [[1, 2, 3, 4]], "category": [1]}] * 2}, features=features)
    (tmp_path / "repo" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet"))  # paths, not bytes
    with pytest.raises(DataError, match=r"objects\.category holds plain integers, not a ClassLabel; pass the class"):
        _load(tmp_path / "repo", tmp_path, train_val_split=0)
    data = _load(tmp_path / "repo", tmp_path, train_val_split=0, options=DatasetOptions(class_names=("a", "b")))
    rows = data["train"].dataset.with_format(None)
    assert rows["image_path"] == files and rows["image_id"] == [1, 2]  # no image_id column: row numbers
    assert rows[0]["objects"]["category"] == [1] and data["train"].categories[1] == {"id": 1, "name": "b"}


def test_objects_with_more_boxes_than_categories_is_one_line(tmp_path):
    from datasets import DatasetDict

    ds = cppe5(_jpegs(tmp_path / "jpg", 2))
    ds = ds.map(lambda r: {"objects": {**r["objects"], "category": r["objects"]["category"][:1]}}, features=ds.features)
    DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "s"))
    with pytest.raises(DataError, match=r"s \[train\] row 0 \(image_id 10\): objects has 2 bbox but 1 category"):
        _load(tmp_path / "s", tmp_path)
