"""detr-evaluate --model ... --tile: predict's tiled detections on every image of the evaluation data, scored by
COCOeval against the same ground truth as the untiled evaluation (`evaluate.evaluate_request`), without the Trainer
(one process). Without --tile detr-evaluate is `evaluate.evaluate`, unchanged."""

from __future__ import annotations

import os

import numpy as np

from recipe.core.errors import ConfigError, DataError
from recipe.evaluation.evaluate import EvaluateRequest, evaluate, export_predictions, match_classes, request_from_args


def evaluate_command(data_args, model_args, eval_args, script_args, tile_args=None) -> dict:
    """What detr-evaluate asks: tiled (`evaluate_tiled`) with --tile on a model, else `evaluate.evaluate`."""
    if tile_args is None or not tile_args.on:
        return evaluate(data_args, model_args, eval_args, script_args)
    return evaluate_tiled(request_from_args(data_args, model_args, eval_args, script_args), tile_args)


def evaluate_tiled(request: EvaluateRequest, tile_args) -> dict:
    """-> the metrics JSON of `evaluate_request` (12 keys, `per_class`, `num_images`, `num_processes` 1) for the
    tiled detections (`predict.detect_tiled`) above `score_threshold`; writes the request's output, predictions
    and plots as it does."""
    from recipe.data.source import load_table
    from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, gt_from_table, quiet_coco
    from recipe.evaluation.results_writer import write_results_file
    from recipe.evaluation.score_results import check_output_folder, check_output_path, write_json
    from recipe.models.loading import load_detector

    r = request
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"--tile {tile_args.tile}: tiled evaluation runs in one process; run detr-evaluate "
                          "without accelerate launch / torchrun")
    check_output_path(r.output)
    check_output_path(r.predictions_out, "--predictions-out")
    check_output_folder(r.plots)
    model, processor, _ = load_detector(r.model)
    data = match_classes(load_table(r.source, image_check=r.image_check, skip_bad_images=r.skip_bad_images),
                         model.config, r.source.name)
    table, categories = data.dataset, data.categories
    # labels to the table's category ids, as the untiled evaluation maps them (CocoDetectionMetrics)
    rows = tiled_rows(model, processor, [c["id"] for c in categories], table, r, tile_args)
    coco_gt = quiet_coco(gt_from_table(table, categories))
    metrics = coco_eval(coco_gt, rows, backend=r.backend)
    result = {**{k: metrics[k] for k in METRIC_KEYS}, "per_class": metrics["per_class"],
              "num_images": len(table), "num_processes": 1}
    if r.output:
        write_json(r.output, result)
    if r.predictions_out:
        write_results_file(r.predictions_out, export_predictions(rows, table, categories, r.predictions_format,
                                                                 r.source.options.box_convention))
    if r.plots:
        from recipe.evaluation.plots import write_plots

        paths = table.select_columns(["image_id", "image_path"])
        write_plots(r.plots, coco_gt, rows, image_paths=dict(zip(paths["image_id"], paths["image_path"])))
    return result


def tiled_rows(model, processor, category_ids: list[int], table, r: EvaluateRequest, tile_args) -> np.ndarray:
    """-> rows [N, 7] (image_id, x, y, w, h `xywh_abs`, score, category_id: `coco_eval.ROW_*`) of every image of
    `table` through `predict.detections_per_image` with `tile_args`, above `r.score_threshold`."""
    from recipe.inference.inputs import collate_readable
    from recipe.inference.predict import check_tile_fits, detections_per_image, pick_device
    from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of

    device = pick_device("auto")
    model = model.to(device)
    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor), source=r.model)
    check_tile_fits(model, augmentation, tile_args, source=r.model)
    plain = table.with_format(None)
    files, ids = list(plain["image_path"]), list(plain["image_id"])
    rows = []
    for item, dets in detections_per_image(model, files, augmentation, collate_readable(model.config, processor),
                                           device, tile_args, batch_size=r.batch_size, num_workers=r.num_workers,
                                           top_k=r.top_k):
        if dets is None:
            raise DataError(f"{files[item['index']]}: {item['error']}")
        dets = dets[dets[:, DET_SCORE] > r.score_threshold]
        image_id = np.full((len(dets), 1), ids[item["index"]], np.float64)
        rows.append(np.concatenate([image_id, dets[:, DET_BOX], dets[:, DET_SCORE:DET_SCORE + 1],
                                    np.asarray([[category_ids[int(k)]] for k in dets[:, DET_LABEL]]).reshape(-1, 1)],
                                   axis=1))
    return np.concatenate(rows or [np.zeros((0, 7))]).reshape(-1, 7)
