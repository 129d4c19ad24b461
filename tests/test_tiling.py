"""Tiled inference: exact windows, boxes moved back into the image, the border rule on hand-placed boxes crossing
window borders, NMS and weighted fusion by hand, predict and evaluate with --tile on the 2-step demo model (evaluate's
numbers are predict's results scored by pycocotools; an exported ONNX graph gives PyTorch's detections, slow), and the
one-line errors of every new flag."""

import json
import shutil

import numpy as np
import pytest

from conftest import one_line_error as _one_line_error
from recipe.cli.main import evaluate_main, export_main, make_demo_data_main, predict_main
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.score_results import evaluate_files
from recipe.inference.tiling import cut_by_window, merge_detections, shift_detections, tile_windows


def test_windows_step_by_tile_times_one_minus_overlap_the_last_flush_with_the_edge():
    assert tile_windows(100, 200, 100, 0.5) == [(0, 0, 100, 100), (50, 0, 150, 100), (100, 0, 200, 100)]
    assert tile_windows(64, 128, 64, 0.0) == [(0, 0, 64, 64), (64, 0, 128, 64)]
    # 1280x720 at 320 px, overlap 0.2: step 256; columns 0 256 512 768 960, rows 0 256 400
    windows = tile_windows(720, 1280, 320, 0.2)
    assert len(windows) == 15
    assert windows[:5] == [(0, 0, 320, 320), (256, 0, 576, 320), (512, 0, 832, 320), (768, 0, 1088, 320),
                           (960, 0, 1280, 320)]
    assert windows[-1] == (960, 400, 1280, 720)
    assert [w[1] for w in windows[::5]] == [0, 256, 400]


def test_an_image_side_shorter_than_the_tile_is_one_window_of_that_side():
    assert tile_windows(50, 60, 320, 0.2) == [(0, 0, 60, 50)]
    assert tile_windows(50, 400, 320, 0.5) == [(0, 0, 320, 50), (80, 0, 400, 50)]


def test_shift_moves_boxes_by_the_windows_corner():
    dets = np.array([[0.5, 2, 1, 2, 3, 4]], np.float32)
    assert shift_detections(dets, (10, 20, 50, 60)).tolist() == [[0.5, 2, 11, 22, 3, 4]]
    assert dets.tolist() == [[0.5, 2, 1, 2, 3, 4]]  # not changed in place
    assert shift_detections(np.zeros((0, 6)), (10, 20, 50, 60)).shape == (0, 6)


def test_a_box_near_an_inner_window_edge_is_cut_one_on_the_image_border_is_not():
    # image 100x200, window x 50..150 of a 100 px tile: within 2 px (2% of the tile) of x=50 or x=150 is cut
    boxes = np.array([[1, 0, 52, 10, 10, 10],  # left edge 2 px from x=50: cut
                      [1, 0, 53, 10, 10, 10],  # 3 px: not
                      [1, 0, 130, 80, 18, 20],  # right edge at 148: cut; bottom at 100 is the image's border
                      [1, 0, 60, 0, 10, 10]], np.float32)  # top at 0: the image's border
    assert cut_by_window(boxes, (50, 0, 150, 100), 100, 200, 100).tolist() == [True, False, True, False]


def crossing_object():
    """A car at x 80..110, y 30..60 (`xywh_abs` 80 30 30 30) in a 100x200 image tiled by 100 px at overlap 0.5
    (windows x 0..100, 50..150, 100..200): the first and last windows cut it at x=100, the middle one sees it whole."""
    windows = tile_windows(100, 200, 100, 0.5)
    local = [np.array([[0.6, 0, 80, 30, 20, 30]]),  # window 0: x 80..100
             np.array([[0.9, 0, 30, 30, 30, 30]]),  # window 1: whole
             np.array([[0.95, 0, 0, 30, 10, 30]])]  # window 2: x 100..110, its best score
    parts = [shift_detections(d, w) for d, w in zip(local, windows)]
    cuts = [cut_by_window(p, w, 100, 200, 100) for p, w in zip(parts, windows)]
    return parts, cuts


def test_an_object_crossing_window_borders_merges_to_its_whole_box():
    parts, cuts = crossing_object()
    assert [c.tolist() for c in cuts] == [[True], [False], [True]]
    for method in ("nms", "wbf"):
        assert merge_detections(parts, cuts, method=method).tolist() == [[pytest.approx(0.9), 0, 80, 30, 30, 30]]
    # Without the border rule the 10 px part (IoU 1/3 with the whole box) survives NMS, above the whole box.
    merged = merge_detections(parts, None)
    assert merged[:, 2:].tolist() == [[100, 30, 10, 30], [80, 30, 30, 30]]


def test_a_cut_box_survives_without_a_whole_box_of_its_class_covering_it():
    parts, cuts = crossing_object()
    truck_part = np.array([[0.7, 1, 90, 30, 10, 30]], np.float32)  # in the car's box, but a truck
    merged = merge_detections([*parts, truck_part], [*cuts, np.array([True])])
    assert merged[:, :2].tolist() == [[pytest.approx(0.9), 0], [pytest.approx(0.7), 1]]
    only_parts = merge_detections([parts[0], parts[2]], [cuts[0], cuts[2]])  # the whole box never detected
    assert only_parts[:, 2:].tolist() == [[100, 30, 10, 30], [80, 30, 20, 30]]


def test_nms_keeps_the_best_box_wbf_fuses_the_cluster_by_score_weights():
    a = [0.75, 0, 0, 0, 10, 10]  # xyxy 0 0 10 10
    b = [0.25, 0, 2, 0, 10, 10]  # xyxy 2 0 12 10: IoU 80 / 120 with a
    other_class = [0.5, 1, 0, 0, 10, 10]
    far = [0.125, 0, 50, 50, 10, 10]
    dets = np.array([b, a, other_class, far], np.float32)
    assert merge_detections([dets], method="nms").tolist() == [a, other_class, far]
    # x0 = 0.75 * 0 + 0.25 * 2, x1 = 0.75 * 10 + 0.25 * 12 -> w 10
    assert merge_detections([dets], method="wbf").tolist() == [[0.75, 0, 0.5, 0, 10, 10], other_class, far]
    assert merge_detections([dets], method="nms", iou=0.7).tolist() == [a, other_class, b, far]
    assert merge_detections([dets], top_k=2).tolist() == [a, other_class]
    assert merge_detections([np.zeros((0, 6))], [np.zeros(0, bool)]).shape == (0, 6)
    assert merge_detections([]).shape == (0, 6)


def test_large_frames_are_grids_of_scenes_and_the_default_data_is_unchanged(tmp_path):
    make_demo_data_main(["--output", str(tmp_path / "lf"), "--num_train", "1", "--num_val", "1", "--large_frame"])
    make_demo_data_main(["--output", str(tmp_path / "small"), "--num_train", "1", "--num_val", "1"])
    large = json.loads((tmp_path / "lf" / "val" / "annotations.json").read_text())
    small = json.loads((tmp_path / "small" / "val" / "annotations.json").read_text())
    assert [(i["width"], i["height"]) for i in large["images"]] == [(1280, 720)]
    assert (small["images"][0]["width"], small["images"][0]["height"]) == (320, 240)
    boxes = [a["bbox"] for a in large["annotations"]]
    assert len(boxes) > 12 and max(x + w for x, _, w, _ in boxes) <= 1280 and max(y + h for _, y, _, h in boxes) <= 720
    assert max(w for _, _, w, _ in boxes) <= 320  # each object inside its 320x240 scene
    # A frame's first scene draws from the stream that the small image of the same number draws from: same boxes.
    assert large["annotations"][0]["bbox"] == small["annotations"][0]["bbox"]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--tile", "16"], "--tile 16: a window must be at least 32 pixels (0 turns tiling off)"),
    (["--tile", "64", "--tile_overlap", "0.9"], "tile_overlap must be in [0, 0.9), got 0.9"),
    (["--tile", "64", "--tile_overlap", "-0.1"], "tile_overlap must be in [0, 0.9), got -0.1"),
    (["--tile", "64", "--tile_merge", "max"], "tile_merge"),
    (["--tile_overlap", "0.5", "--tile_merge", "wbf"], "--tile_overlap, --tile_merge: take effect with --tile SIZE "
                                                       "only; add it or drop them"),
])
def test_bad_tile_flags_are_one_line(tmp_path, capsys, flags, expected):
    for main, argv in ((predict_main, ["--model", "m", "--images", str(tmp_path)]),
                       (evaluate_main, ["--model", "m", "--images", str(tmp_path), "--ann", "a.json"])):
        assert expected in _one_line_error(capsys, main, argv + flags)


def test_tile_with_a_results_file_is_one_line(capsys):
    line = _one_line_error(capsys, evaluate_main, ["--gt", "g.json", "--predictions", "p.json", "--tile", "64"])
    assert "--tile 64 runs a model (--model); a results file (--predictions) is scored as it is: drop --tile" in line


def test_tiled_evaluation_under_a_multi_process_launch_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; checked before the model or the data load
    line = _one_line_error(capsys, evaluate_main, ["--model", "m", "--images", "i", "--ann", "a.json", "--tile", "64"])
    assert line == ("error: --tile 64: tiled evaluation runs in one process; run detr-evaluate without accelerate "
                    "launch / torchrun")


def test_a_graph_whose_frame_cannot_hold_a_window_is_one_line(trained_demo, demo_dir, tmp_path, capsys):
    folder, _ = trained_demo
    graph = tmp_path / "narrow.onnx"
    export_main(["--model", str(folder), "--output", str(graph), "--image_size", "128", "100"])
    capsys.readouterr()
    # a 64 px window resizes as the demo's images do, to the eval size 128: 128x128, wider than 100
    line = _one_line_error(capsys, predict_main, ["--model", str(graph), "--images", str(demo_dir / "val" / "images"),
                                                  "--output", str(tmp_path / "o"), "--tile", "64"])
    assert line == (f"error: --tile 64: a window resizes to 128x128 pixels, larger than the frame 128x100 of {graph}; "
                    "choose a smaller --tile or export again with --image_size 128 128")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_predict_tile_with_onnx_and_openvino_graphs_gives_pytorchs_detections(trained_demo, demo_dir, tmp_path):
    """The exported graphs (any batch, frame 128x170: the demo scenes at eval size 128; ONNX Runtime's and OpenVINO's)
    behind the same tiled loop: the windows (160 px -> 128x128) and the frame share one batch, padded to 128x170 in
    every runtime, so the merged detections are PyTorch's (scores within 1e-4, as the export's parity)."""
    folder, _ = trained_demo
    graph, ir = tmp_path / "demo.onnx", tmp_path / "demo.xml"
    export_main(["--model", str(folder), "--output", str(graph), "--image_size", "128", "170", "--dynamic_batch"])
    export_main(["--model", str(folder), "--output", str(ir), "--image_size", "128", "170", "--dynamic_batch",
                 "--format", "openvino"])
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((demo_dir / "val" / "images").iterdir())[:2]:
        shutil.copy(path, images / path.name)
    common = ["--images", str(images), "--threshold", "0", "--draw", "false", "--tile", "160"]
    predict_main(["--model", str(folder), "--output", str(tmp_path / "torch"), *common])
    predict_main(["--model", str(graph), "--output", str(tmp_path / "onnx"), *common])
    predict_main(["--model", str(ir), "--output", str(tmp_path / "openvino"), *common])
    torch_dets = _predictions(tmp_path / "torch")
    assert len(torch_dets) == 2
    for runtime in ("onnx", "openvino"):
        exported = _predictions(tmp_path / runtime)
        assert sorted(torch_dets) == sorted(exported), runtime
        for name, dets in torch_dets.items():
            assert dets.shape == exported[name].shape == (100, 6)
            np.testing.assert_allclose(exported[name][:, :2], dets[:, :2], atol=1e-4, err_msg=runtime)
            np.testing.assert_allclose(exported[name][:, 2:], dets[:, 2:], atol=1e-2, err_msg=runtime)


def _predictions(folder) -> dict:
    """predictions.json by file name -> detections [K, 6] in file order (the category id as the label: a merge is
    class-wise whatever the labels' numbers)."""
    rows = {}
    for r in json.loads((folder / "predictions.json").read_text()):
        rows.setdefault(r["file_name"], []).append([r["score"], r["category_id"], *r["bbox"]])
    return {k: np.array(v, np.float32) for k, v in rows.items()}


def test_a_tile_covering_the_image_gives_the_untiled_detections_merged(trained_demo, demo_dir, tmp_path):
    """A 320 px tile holds a whole 320x240 scene: one window, resized and batched as the image itself, so the tiled
    detections are the untiled ones after the merge (nothing is cut: every window edge is the image's)."""
    folder, _ = trained_demo
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((demo_dir / "val" / "images").iterdir())[:3]:
        shutil.copy(path, images / path.name)
    common = ["--model", str(folder), "--images", str(images), "--threshold", "0", "--draw", "false"]
    predict_main([*common, "--output", str(tmp_path / "plain"), "--batch_size", "1"])  # as each image's one window
    predict_main([*common, "--output", str(tmp_path / "tiled"), "--tile", "320", "--tile_full_frame", "false"])
    plain, tiled = _predictions(tmp_path / "plain"), _predictions(tmp_path / "tiled")
    assert sorted(plain) == sorted(tiled) and len(plain) == 3
    for name, dets in plain.items():
        np.testing.assert_array_equal(tiled[name], merge_detections([dets]))


def test_evaluate_with_tile_scores_predicts_tiled_results(trained_demo, demo_dir, tmp_path, capsys):
    """detr-evaluate --tile's 12 numbers are pycocotools' on detr-predict --tile's results file (threshold 0: the
    top 100 of every image), with the full frame and WBF."""
    folder, _ = trained_demo
    val = demo_dir / "val"
    tile = ["--tile", "160", "--tile_overlap", "0.25", "--tile_merge", "wbf"]
    predict_main(["--model", str(folder), "--images", str(val / "images"), "--threshold", "0", "--draw", "false",
                  "--output", str(tmp_path / "p"), *tile])
    evaluate_main(["--model", str(folder), "--images", str(val / "images"), "--ann", str(val / "annotations.json"),
                   "--output", str(tmp_path / "tiled.json"), "--num-workers", "0", *tile])
    evaluate_main(["--model", str(folder), "--images", str(val / "images"), "--ann", str(val / "annotations.json"),
                   "--output", str(tmp_path / "plain.json"), "--num-workers", "0"])
    scored = evaluate_files(str(val / "annotations.json"), str(tmp_path / "p" / "predictions.json"))
    tiled = json.loads((tmp_path / "tiled.json").read_text())
    assert {k: tiled[k] for k in METRIC_KEYS} == {k: scored[k] for k in METRIC_KEYS}
    assert tiled["per_class"] == scored["per_class"] and tiled["num_images"] == 8
    assert tiled != json.loads((tmp_path / "plain.json").read_text())  # the tiles changed the detections
    per_image = {}
    for d in json.loads((tmp_path / "p" / "predictions.json").read_text()):
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    assert max(per_image.values()) == 100  # top_k after the merge, as without tiles
