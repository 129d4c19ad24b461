"""Where a command's data comes from, decided in one place: an annotation file with its image folder, or a dataset
named by `--dataset` (a folder, a file or a Hub id) and one of its splits.

Every entry point (train, evaluate, predict, check, browse) builds a `DataSource` with `data_source` and reads
through it, so the two routes take the same options everywhere: the annotation format, the BDD100K box convention
and frame size, class names, the Arrow cache folder, offline, and the seeded validation split."""

from __future__ import annotations

from dataclasses import dataclass, field

from recipe.core.errors import ConfigError, DataError
from recipe.data.builder import DetectionData, load_detection_dataset
from recipe.data.files import file_split
from recipe.data.formats import DatasetOptions, Split, open_dataset
from recipe.data.splits import load_dataset_splits


@dataclass(frozen=True)
class DataSource:
    """One command's data: `dataset` and its `split`, or `annotation_file` and `image_root`."""

    dataset: str | None = None
    split: str = "validation"
    annotation_file: str | None = None
    image_root: str | None = None
    annotation_format: str = "auto"
    options: DatasetOptions = field(default_factory=DatasetOptions)
    train_val_split: float = 0.15
    seed: int = 42

    @property
    def name(self) -> str:
        """What error messages and reports call it: `demo [validation]` or the annotation file."""
        return f"{self.dataset} [{self.split}]" if self.dataset else str(self.annotation_file)


def data_source(dataset_args=None, *, annotation_file: str | None = None, image_root: str | None = None,
                annotation_format: str = "auto", box_convention: str = "inclusive", bdd_image_size=(1280, 720),
                split: str | None = None, cache_dir: str | None = None, offline: bool = False,
                needs: str | None = None) -> DataSource:
    """The source the arguments name: `dataset_args.dataset` (with its class names, split and validation draw), or
    the annotation file and image folder. `needs` (e.g. "the data to check: --ann FILE with --images DIR") makes a
    command that takes exactly one of the two refuse none or both with that one line."""
    dataset = getattr(dataset_args, "dataset", None)
    if needs and bool(dataset) == bool(annotation_file and image_root):
        raise ConfigError(f"give {needs}, or --dataset PATH_OR_ID (one of them)")
    names = getattr(dataset_args, "class_names", None)
    options = DatasetOptions(class_names=tuple(names) if names else None, box_convention=box_convention,
                             bdd_image_size=tuple(bdd_image_size), offline=offline, cache_dir=cache_dir)
    return DataSource(dataset=dataset or None, split=split or getattr(dataset_args, "split", "validation"),
                      annotation_file=None if dataset else annotation_file, image_root=None if dataset else image_root,
                      annotation_format=annotation_format, options=options,
                      train_val_split=getattr(dataset_args, "train_val_split", 0.15),
                      seed=getattr(dataset_args, "train_val_split_seed", 42))


def load_tables(source: DataSource, splits: tuple[str, ...] = ("train", "validation"), *, subset: int | None = None,
                image_check: str = "decode", skip_bad_images: bool = False) -> dict[str, DetectionData]:
    """{split: table} of a dataset source (a split the source lacks is absent; validation is drawn from train when
    the dataset has none); an annotation-file source gives its one table under its `split`."""
    if not source.dataset:
        return {source.split: load_detection_dataset(
            source.annotation_file, source.image_root, source.annotation_format, source.options.cache_dir, subset,
            source.options.box_convention, source.options.bdd_image_size, image_check=image_check,
            skip_bad_images=skip_bad_images, class_names=source.options.class_names)}
    return load_dataset_splits(source.dataset, source.options, cache_dir=source.options.cache_dir, subset=subset,
                               image_check=image_check, skip_bad_images=skip_bad_images,
                               train_val_split=source.train_val_split, seed=source.seed, splits=splits)


def load_table(source: DataSource, **kwargs) -> DetectionData:
    """The table of the source's one split (see `load_tables` for the keywords)."""
    table = load_tables(source, (source.split,), **kwargs).get(source.split)
    if table is None:
        raise DataError(f"{source.dataset}: no {source.split} split (and train_val_split is 0); pick --split train "
                        "or set --train_val_split")
    return table


def open_splits(source: DataSource) -> dict[str, Split]:
    """{title: split} not yet read (the dataset check reads them itself): every split of a dataset, or the file."""
    if source.dataset:
        opened = open_dataset(source.dataset, source.options)
        return {f"{name} ({split.source})": split for name, split in opened.splits.items()}
    _, split = file_split(source.annotation_file, source.image_root, source.annotation_format,
                          source.options.box_convention, source.options.bdd_image_size)
    return {str(source.annotation_file): split}
