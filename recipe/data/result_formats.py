"""Results files (scored detections) by format: what `evaluate.py --predictions` reads, and what
`--predictions-out` and `predict.py` write. COCO results are the common form; the other formats convert here, so
no format name is compared outside `recipe/data/`."""

from __future__ import annotations

from recipe.core.errors import DataError
from recipe.data.choices import RESULT_FORMATS



def check_result_format(fmt: str) -> None:
    if fmt not in RESULT_FORMATS:
        raise DataError(f"--format {fmt!r}: choose {' or '.join(RESULT_FORMATS)}")


def as_coco(fmt: str, gt_data, preds, box_convention: str, gt: str, predictions: str):
    """(ground truth, results) as read from files of `fmt` -> (COCO ground truth, COCO results); BDD100K frame
    lists are converted with the official rules."""
    check_result_format(fmt)
    if fmt == "coco":
        return gt_data, preds
    from recipe.data.bdd100k import bdd_predictions_to_coco_results, bdd_to_coco

    if not isinstance(gt_data, list) or not isinstance(preds, list):
        raise DataError(f"{gt} / {predictions}: with --format bdd100k both files are BDD100K frame lists")
    gt_data = bdd_to_coco(gt_data, box_convention, source=str(gt))
    name_to_id = {img["file_name"]: img["id"] for img in gt_data["images"]}
    return gt_data, bdd_predictions_to_coco_results(preds, name_to_id, box_convention, source=str(predictions))


def payload(fmt: str, results: list[dict], *, names: dict[int, str], category_names: dict[int, str],
            box_convention: str = "inclusive", coco=None) -> list:
    """What a results file of `fmt` holds for COCO `results` (int image ids): the COCO list itself (or what `coco()`
    makes of it, e.g. with the file's own image ids), or a BDD100K frame list (one frame per name in `names`) with
    a score on each label."""
    check_result_format(fmt)
    if fmt == "coco":
        return results if coco is None else coco()
    from recipe.data.bdd100k import coco_results_to_bdd_frames

    return coco_results_to_bdd_frames(results, names, category_names, box_convention)
