"""The numbers behind the plots, on hand-made cases computed by hand; the figures are written and are images."""

import json

import numpy as np
import pytest
from PIL import Image

from recipe.evaluation import analysis
from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, quiet_coco
from recipe.evaluation.plots import PLOT_FILES, write_plots

R = 101  # COCO's recall thresholds 0, .01, ..., 1

CATS = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"},
        {"id": 3, "name": "car", "supercategory": "vehicle"}]


def gt_of(images: dict[int, list[tuple]], size=(100, 100)):
    """images: id -> [(category_id, [x, y, w, h]) or (category_id, box, iscrowd)] -> COCO object."""
    anns = []
    for img_id, objs in images.items():
        for obj in objs:
            cat, box, crowd = (*obj, 0)[:3]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "bbox": list(box),
                         "area": box[2] * box[3], "iscrowd": crowd})
    return quiet_coco({"images": [{"id": i, "width": size[0], "height": size[1]} for i in images],
                       "annotations": anns, "categories": CATS})


def rows_of(dets: list[tuple]) -> np.ndarray:
    """[(image_id, [x, y, w, h], score, category_id)] -> result rows [N, 7]."""
    return np.array([[i, *box, s, c] for i, box, s, c in dets], dtype=np.float64).reshape(-1, 7)


def test_confusion_matrix_of_three_images_by_hand():
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (2, [20, 20, 10, 10])],
                2: [(3, [0, 0, 20, 20])],
                3: [(1, [0, 0, 10, 10]), (3, [30, 30, 40, 40], 1)]})  # image 3: a crowd region of cars
    rows = rows_of([
        (1, [0, 0, 10, 10], 0.9, 1),  # cat -> cat
        (1, [20, 20, 10, 10], 0.8, 1),  # dog predicted as cat
        (1, [60, 60, 5, 5], 0.7, 2),  # nothing there: background -> dog
        (1, [0, 0, 10, 10], 0.3, 2),  # below the score threshold: not counted
        (2, [0, 0, 20, 20], 0.95, 3),  # car -> car
        (2, [1, 1, 20, 20], 0.6, 3),  # duplicate of a matched car: background -> car
        (3, [35, 35, 10, 10], 0.9, 3),  # inside the crowd region: not counted; the cat of image 3 is missed
    ])
    cm = analysis.confusion_matrix(gt, rows, iou_threshold=0.5, score_threshold=0.5)
    assert cm["classes"] == ["cat", "dog", "car", "background"]
    assert cm["counts"] == [[1, 0, 0, 1],
                            [1, 0, 0, 0],
                            [0, 0, 1, 0],
                            [0, 1, 1, 0]]
    assert cm["normalized"] == [[0.5, 0, 0, 0.5], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0.5, 0.5, 0]]
    assert (cm["iou_threshold"], cm["score_threshold"]) == (0.5, 0.5)


def test_confusion_matrix_matches_the_highest_iou_and_counts_no_detections():
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (2, [4, 0, 10, 10])]})
    # IoU 70/130 = 0.54 with the cat, 90/110 = 0.82 with the dog: it goes to the dog.
    cm = analysis.confusion_matrix(gt, rows_of([(1, [3, 0, 10, 10], 0.9, 1)]), iou_threshold=0.5)
    assert cm["counts"][1] == [1, 0, 0, 0] and cm["counts"][0] == [0, 0, 0, 1]
    empty = analysis.confusion_matrix(gt, rows_of([]))
    assert empty["counts"] == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert empty["normalized"][2] == [0, 0, 0, 0]  # a class without objects: a row of zeros, not NaN


def test_pr_curves_and_per_class_ap_by_hand():
    # cat: 2 objects; TP (0.9), FP (0.8), TP (0.7): precision 1 up to recall .5, then 2/3 up to recall 1.
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (1, [50, 50, 10, 10]), (3, [20, 20, 10, 10])]})
    rows = rows_of([(1, [0, 0, 10, 10], 0.9, 1), (1, [80, 0, 10, 10], 0.8, 1), (1, [50, 50, 10, 10], 0.7, 1)])
    result = coco_eval(gt, rows, curves=True)
    curves = result.pop("curves")
    assert result == coco_eval(gt, rows)  # the 12 numbers and per-class AP do not change
    names = {c["id"]: c["name"] for c in CATS}
    pr = analysis.pr_curves(curves, names)
    cat = pr["classes"]["cat"]
    expected = [1.0] * 51 + [2 / 3] * 50
    assert cat["precision_50"] == pytest.approx(expected, abs=1e-12)
    assert cat["precision_50_95"] == pytest.approx(expected, abs=1e-12)  # exact boxes: every IoU threshold alike
    assert cat["ap_50"] == pytest.approx((51 + 50 * 2 / 3) / R, abs=1e-12)
    assert cat["ap"] == pytest.approx(result["per_class"]["cat"], abs=1e-12)
    assert pr["classes"]["dog"] is None  # no ground truth
    assert pr["classes"]["car"]["ap"] == 0.0 and pr["recall"][:3] == [0.0, 0.01, 0.02]
    per_class = analysis.per_class_ap(curves, names, gt)
    assert per_class["classes"] == ["cat", "dog", "car"] and per_class["num_gt"] == [2, 0, 1]
    assert per_class["ap"] == [cat["ap"], None, 0.0] and per_class["ap_75"][0] == pytest.approx(cat["ap_50"])


def test_coco_error_breakdown_by_hand():
    # 3 cats (A found, B found badly, C missed), a dog and a car; five "cat" detections, best score first:
    # background, on the car, on the dog, on B with IoU 1/3, exactly on A.
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (1, [40, 0, 10, 10]), (1, [80, 80, 10, 10]), (2, [0, 40, 10, 10]),
                    (3, [40, 40, 10, 10])]})
    rows = rows_of([(1, [20, 80, 10, 10], 0.95, 1), (1, [40, 40, 10, 10], 0.9, 1), (1, [0, 40, 10, 10], 0.85, 1),
                    (1, [45, 0, 10, 10], 0.8, 1), (1, [0, 0, 10, 10], 0.7, 1)])
    out = analysis.coco_error_breakdown(gt, rows)
    # Recall thresholds up to 1/3: 34 of 101; up to 2/3: 67.
    expected = {"C75": 34 * (1 / 5) / R,  # 4 false positives then A: precision 1/5 up to recall 1/3
                "C50": 34 * (1 / 5) / R,
                "Loc": 67 * (2 / 5) / R,  # B counts at IoU .1: precision 2/5 up to recall 2/3
                "Sim": 67 * (2 / 4) / R,  # the dog (same supercategory) is forgiven
                "Oth": 67 * (2 / 3) / R,  # and the car
                "BG": 67 / R,  # and the background: 1 up to the highest recall
                "FN": 1.0}
    assert out["per_class"]["cat"] == pytest.approx(expected, abs=1e-12)
    # dog and car have ground truth but no detections: 0 at every stage but FN.
    assert out["per_class"]["dog"] == {s: (1.0 if s == "FN" else 0.0) for s in analysis.ANALYZE_STAGES}
    assert out["ap"]["Oth"] == pytest.approx(expected["Oth"] / 3, abs=1e-12)
    assert out["errors"]["localisation"] == pytest.approx((67 * 2 / 5 - 34 / 5) / R / 3, abs=1e-12)
    assert out["errors"]["missed"] == pytest.approx((1 - 67 / R) / 3 + 2 / 3, abs=1e-12)
    assert out["stages"] == ["C75", "C50", "Loc", "Sim", "Oth", "BG", "FN"]
    # Without supercategories the dog is "another class": Sim equals Loc.
    flat = analysis.coco_error_breakdown(gt, rows, supercategories={1: None, 2: None, 3: None})
    assert flat["per_class"]["cat"]["Sim"] == pytest.approx(expected["Loc"], abs=1e-12)


def test_training_history_series():
    log = [{"loss": 3.0, "loss_ce": 1.0, "learning_rate": 1e-3, "learning_rate_backbone": 1e-4, "grad_norm": 2.0,
            "epoch": 0.5, "step": 10},
           {"eval_loss": 2.5, "eval_map": 0.1, "eval_map_50": 0.2, "step": 20},
           {"loss": 2.0, "loss_ce": 0.5, "learning_rate": 5e-4, "learning_rate_backbone": 5e-5, "grad_norm": 1.0,
            "epoch": 1.0, "step": 20},
           {"train_runtime": 12.0, "train_loss": 2.5, "step": 20}]
    h = analysis.training_history(log)
    assert h["train"] == {"step": [10, 20], "grad_norm": [2.0, 1.0], "learning_rate": [1e-3, 5e-4],
                          "learning_rate_backbone": [1e-4, 5e-5], "loss": [3.0, 2.0], "loss_ce": [1.0, 0.5]}
    assert h["eval"] == {"step": [20], "eval_map": [0.1], "eval_map_50": [0.2], "eval_loss": [2.5]}


def test_write_plots_writes_every_figure_with_its_numbers(tmp_path):
    gt = gt_of({1: [(1, [10, 10, 30, 30]), (3, [50, 40, 40, 30])], 2: [(2, [5, 5, 20, 40])]}, size=(120, 90))
    paths = {}
    for i in (1, 2):
        paths[i] = str(tmp_path / f"{i}.png")
        Image.new("RGB", (120, 90), (90, 90, 90)).save(paths[i])
    rows = rows_of([(1, [11, 10, 30, 30], 0.9, 1), (1, [50, 40, 40, 30], 0.4, 2), (2, [5, 5, 20, 40], 0.8, 2)])
    log = [{"loss": 3.0, "loss_ce": 1.0, "learning_rate": 1e-3, "learning_rate_backbone": 1e-4, "step": 1},
           {"eval_map": 0.2, "step": 1}]
    written = write_plots(str(tmp_path / "plots"), gt, rows, image_paths=paths, log_history=log)
    assert set(written) == set(PLOT_FILES)
    for name, path in written.items():
        with Image.open(path) as im:
            assert im.format in ("PNG", "JPEG") and min(im.size) > 100, name
        numbers = json.loads((tmp_path / "plots" / f"{name}.json").read_text())
        assert numbers, name
    per_class = json.loads((tmp_path / "plots" / "per_class_ap.json").read_text())
    assert per_class["ap"] == [coco_eval(gt, rows)["per_class"][n] for n in per_class["classes"]]
    grid = json.loads((tmp_path / "plots" / "val_predictions.json").read_text())
    assert [len(i["predictions"]) for i in grid["images"]] == [1, 1]  # the 0.4 detection is under 0.5
    assert grid["images"][0]["ground_truth"][1] == {"category": "car", "bbox": [50, 40, 40, 30], "iscrowd": 0}
    assert set(METRIC_KEYS) <= set(coco_eval(gt, rows))


def error_case():
    """The hand-made case of `test_coco_error_breakdown_by_hand` (3 cats, a dog, a car; five "cat" detections)."""
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (1, [40, 0, 10, 10]), (1, [80, 80, 10, 10]), (2, [0, 40, 10, 10]),
                    (3, [40, 40, 10, 10])]})
    rows = rows_of([(1, [20, 80, 10, 10], 0.95, 1), (1, [40, 40, 10, 10], 0.9, 1), (1, [0, 40, 10, 10], 0.85, 1),
                    (1, [45, 0, 10, 10], 0.8, 1), (1, [0, 0, 10, 10], 0.7, 1)])
    return gt, rows


def results_list(rows: np.ndarray, image_ids=None) -> list[dict]:
    ids = image_ids or {}
    return [{"image_id": ids.get(int(r[0]), int(r[0])), "category_id": int(r[6]), "bbox": [float(v) for v in r[1:5]],
             "score": float(r[5])} for r in rows]


def test_evaluate_writes_the_error_analysis_of_a_results_file(tmp_path, capsys):
    from recipe.cli.main import evaluate_main

    gt, rows = error_case()
    (tmp_path / "gt.json").write_text(json.dumps(gt.dataset))  # categories with their supercategory
    (tmp_path / "results.json").write_text(json.dumps(results_list(rows)))
    evaluate_main(["--gt", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "results.json"),
                   "--output", str(tmp_path / "metrics.json"), "--plots", str(tmp_path / "plots")])
    assert "map=0.0224" in capsys.readouterr().out
    figures = {"pr_curves", "per_class_ap", "confusion_matrix", "error_breakdown"}  # no images, no training log
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        [f"{n}.json" for n in figures] + [PLOT_FILES[n] for n in figures])
    for name in figures:
        with Image.open(tmp_path / "plots" / PLOT_FILES[name]) as im:
            assert im.format == "PNG" and min(im.size) > 100, name
    plots = {n: json.loads((tmp_path / "plots" / f"{n}.json").read_text()) for n in figures}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # Only A is found, by the 5th detection: precision 1/5 up to recall 1/3 (34 of 101 thresholds), at every IoU.
    cat_ap = 34 * (1 / 5) / R
    assert plots["per_class_ap"]["classes"] == ["cat", "dog", "car"] and plots["per_class_ap"]["num_gt"] == [3, 1, 1]
    assert plots["per_class_ap"]["ap"] == [metrics["per_class"][n] for n in ("cat", "dog", "car")]
    assert plots["per_class_ap"]["ap"] == pytest.approx([cat_ap, 0.0, 0.0], abs=1e-12)
    assert metrics["map"] == pytest.approx(cat_ap / 3, abs=1e-12)
    assert plots["pr_curves"]["classes"]["cat"]["precision_50"] == pytest.approx([0.2] * 34 + [0.0] * 67, abs=1e-12)
    # Greedy by score, IoU >= .5: nothing -> cat, car -> cat, dog -> cat, off B (IoU 1/3) -> cat, A -> cat.
    assert plots["confusion_matrix"]["counts"] == [[1, 0, 0, 2],  # A found; B and C missed
                                                   [1, 0, 0, 0],
                                                   [1, 0, 0, 0],
                                                   [2, 0, 0, 0]]  # the detection on nothing and the one off B
    # "Sim" forgives the detection on the dog only because the file's supercategories reached the evaluator.
    assert plots["error_breakdown"]["per_class"]["cat"] == pytest.approx(
        {"C75": cat_ap, "C50": cat_ap, "Loc": 67 * (2 / 5) / R, "Sim": 67 * (2 / 4) / R, "Oth": 67 * (2 / 3) / R,
         "BG": 67 / R, "FN": 1.0}, abs=1e-12)


def test_evaluate_plots_with_string_image_ids_match_the_metrics(tmp_path):
    from recipe.evaluation.score_results import evaluate_files

    gt, rows = error_case()
    data = gt.dataset
    names = {1: "frame-b"}
    data = {**data, "images": [{**img, "id": names[img["id"]]} for img in data["images"]],
            "annotations": [{**a, "image_id": names[a["image_id"]]} for a in data["annotations"]]}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "results.json").write_text(json.dumps(results_list(rows, names)))
    metrics = evaluate_files(str(tmp_path / "gt.json"), str(tmp_path / "results.json"), plots=str(tmp_path / "p"))
    per_class = json.loads((tmp_path / "p" / "per_class_ap.json").read_text())
    assert per_class["ap"] == [metrics["per_class"][n] for n in per_class["classes"]]
    assert per_class["ap"][0] == pytest.approx(34 * (1 / 5) / R, abs=1e-12)


def test_evaluate_plots_folder_that_is_a_file_is_refused_before_any_work(tmp_path):
    from recipe.core.errors import ConfigError
    from recipe.evaluation.score_results import evaluate_files

    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match=r"--plots .*taken: is a file; give a folder"):
        evaluate_files(str(tmp_path / "missing.json"), str(tmp_path / "missing.json"), plots=str(tmp_path / "taken"))


def test_best_f1_threshold_by_hand():
    gt = gt_of({1: [(1, [0, 0, 10, 10]), (2, [20, 20, 10, 10])],
                2: [(3, [0, 0, 20, 20])],
                3: [(1, [0, 0, 10, 10]), (3, [30, 30, 40, 40], 1)]})  # 4 boxes + a crowd region
    rows = rows_of([
        (1, [0, 0, 10, 10], 0.9, 1),    # TP
        (1, [20, 20, 10, 10], 0.8, 1),  # FP: a dog called a cat (matching is per class)
        (1, [60, 60, 5, 5], 0.7, 2),    # FP
        (2, [0, 0, 20, 20], 0.6, 3),    # TP
        (3, [30, 30, 10, 10], 0.5, 3),  # on the crowd region: ignored
        (3, [0, 0, 10, 10], 0.4, 1),    # TP
        (1, [20, 20, 10, 10], 0.3, 2),  # TP
        (2, [50, 50, 10, 10], 0.2, 3),  # FP
        (3, [50, 50, 10, 10], 0.1, 1),  # FP
    ])
    # F1 after k kept (TP / k): 2/5, 2/6, 2/7, 4/8, 6/9, 8/10, 8/11, 8/12: best k = 6, between 0.3 and 0.2.
    best = analysis.best_f1_threshold(gt, rows)
    assert best == {"threshold": pytest.approx(0.25), "f1": pytest.approx(0.8), "precision": pytest.approx(4 / 6),
                    "recall": 1.0, "iou_threshold": 0.5, "max_score": 0.9, "detections": 8, "ground_truth_boxes": 4}
    # Ties: a threshold cannot split equal scores, so F1 is only read where the score drops.
    tied = rows.copy()
    tied[7, 5] = 0.3  # the FP at 0.2 now ties the TP at 0.3
    best = analysis.best_f1_threshold(gt, tied)
    assert best["threshold"] == pytest.approx(0.2) and best["f1"] == pytest.approx(8 / 11)  # k = 7, not 6
    assert analysis.best_f1_threshold(gt, rows[:0])["threshold"] is None
