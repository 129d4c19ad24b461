"""Deployment formats on the demo model: OpenVINO fp32 gives the ONNX graph's 12 numbers, INT8 (ONNX Runtime QDQ
and NNCF) is calibrated on the training images with the listed layers kept float and writes what it costs beside
the file; each new path's bad input is one line."""

import json

import numpy as np
import onnx
import pytest

from recipe.cli.main import export_main
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.evaluate import evaluate_checkpoint
from recipe.inference.export import ExportArguments, export_model
from recipe.inference.predict import PredictArguments, predict

FRAME = ["128", "170"]  # the demo's validation scenes at the tests' eval size (tests/test_export.py)


def data_flags(demo_dir) -> list[str]:
    train, val = demo_dir / "train", demo_dir / "val"
    return ["--train_ann", str(train / "annotations.json"), "--train_img", str(train / "images"),
            "--val_ann", str(val / "annotations.json"), "--val_img", str(val / "images")]


@pytest.fixture(scope="module")
def exports(trained_demo, demo_dir, tmp_path_factory):
    """The 2-step demo model as ONNX fp32 and OpenVINO fp32 (the latter measured on the validation set), and as ONNX
    Runtime INT8 and OpenVINO INT8 (calibrated on 16 of the 24 training images)."""
    folder, _ = trained_demo
    tmp = tmp_path_factory.mktemp("deploy")
    base = ["--model", str(folder), "--image_size", *FRAME]
    export_main([*base, "--output", str(tmp / "fp32.onnx")])
    export_main([*base, "--output", str(tmp / "fp32.xml"), "--format", "openvino", *data_flags(demo_dir)])
    for fmt, suffix in (("onnx", "onnx"), ("openvino", "xml")):
        export_main([*base, "--output", str(tmp / f"int8.{suffix}"), "--format", fmt, "--int8",
                     "--calibration_images", "16", *data_flags(demo_dir)])
    return folder, tmp


def sidecar(path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_openvino_gives_the_onnx_graphs_12_numbers_and_results(exports, demo_dir, tmp_path, capsys):
    folder, tmp = exports
    images, ann = str(demo_dir / "val" / "images"), str(demo_dir / "val" / "annotations.json")
    onnx_scores = evaluate_checkpoint(str(tmp / "fp32.onnx"), images, ann, num_workers=0)
    ov_scores = evaluate_checkpoint(str(tmp / "fp32.xml"), images, ann, num_workers=0)
    with capsys.disabled():
        print("\nOpenVINO fp32 - ONNX Runtime fp32: " + " ".join(f"{k}={ov_scores[k] - onnx_scores[k]:+.1e}"
                                                               for k in METRIC_KEYS))
    assert {k: ov_scores[k] for k in METRIC_KEYS} == pytest.approx({k: onnx_scores[k] for k in METRIC_KEYS}, abs=1e-4)
    assert max(onnx_scores[k] for k in METRIC_KEYS) > 0
    meta = sidecar(tmp / "fp32.xml")
    assert meta["runtime"] == "openvino" and meta["dtype"] == "float32" and (tmp / "fp32.bin").is_file()
    assert max(meta["check"].values()) <= 1e-4
    # measured beside the file: its numbers are detr-evaluate's, and PyTorch's the same at fp32
    measured = meta["measured"]
    assert measured["exported"]["map"] == round(ov_scores["map"], 4) == measured["pytorch"]["map"]
    assert measured["threads"] == 1 and measured["images"] == 8 and measured["latency_images"] == 8
    for side in ("exported", "pytorch"):
        assert measured[side]["ms_per_image_batch_1"] > 0 and measured[side]["ms_per_image_batch_8"] > 0
    outs = {}
    for name in ("fp32.onnx", "fp32.xml"):
        predict(PredictArguments(model=str(tmp / name), images=images, output=str(tmp_path / name), threshold=0.0))
        outs[name] = json.loads((tmp_path / name / "predictions.json").read_text())
    assert len(outs["fp32.xml"]) == len(outs["fp32.onnx"]) == 8 * 100
    for a, b in zip(outs["fp32.onnx"], outs["fp32.xml"]):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4) and a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)


@pytest.mark.parametrize(("name", "method"), [("int8.onnx", "onnxruntime static"), ("int8.xml", "NNCF")])
def test_int8_is_calibrated_keeps_the_listed_layers_float_and_says_what_it_costs(exports, demo_dir, name, method):
    folder, tmp = exports
    meta = sidecar(tmp / name)
    assert meta["dtype"] == "int8" and meta["int8"]["method"].startswith(method)
    assert meta["int8"]["kept_float_op_types"] == ["GridSample", "LayerNormalization", "Softmax"]
    assert meta["int8"]["calibration_images"] == 16
    measured = meta["measured"]
    scored = evaluate_checkpoint(str(tmp / name), str(demo_dir / "val" / "images"),
                                 str(demo_dir / "val" / "annotations.json"), num_workers=0)
    assert measured["exported"]["map"] == round(scored["map"], 4)  # the file's own numbers, as evaluate gives them
    assert measured["pytorch"] == pytest.approx(sidecar(tmp / "fp32.xml")["measured"]["pytorch"], rel=10) \
        and measured["pytorch"]["map"] == sidecar(tmp / "fp32.xml")["measured"]["pytorch"]["map"]
    if name.endswith(".onnx"):
        graph = onnx.load(str(tmp / name))
        ops = [node.op_type for node in graph.graph.node]
        assert ops.count("QuantizeLinear") == meta["int8"]["quantize_nodes"] > 0
        # Deformable DETR's sampling, its LayerNorms and softmaxes: float, by name
        assert meta["int8"]["kept_float_nodes"] == sum(op in ("GridSample", "LayerNormalization", "Softmax")
                                                       for op in ops) > 0
        # every MatMul's weight comes quantised: a DequantizeLinear feeds each MatMul
        produced_by = {out: node.op_type for node in graph.graph.node for out in node.output}
        matmuls = [node for node in graph.graph.node if node.op_type == "MatMul"]
        assert matmuls and all("DequantizeLinear" in {produced_by.get(i) for i in node.input} for node in matmuls)
    else:
        assert meta["int8"]["fake_quantize_nodes"] > 0
    # not the float model: the quantisation changed the outputs
    assert max(meta["check"].values()) > 1e-4


@pytest.mark.slow
@pytest.mark.extended  # two more INT8 exports (22 s): the flag's effect, beside command 2's default-flag proofs
@pytest.mark.timeout(240)
def test_keeping_fewer_layers_float_quantises_more(trained_demo, demo_dir, tmp_path):
    folder, _ = trained_demo
    kept = {}
    for ops in (["GridSample", "LayerNormalization", "Softmax"], ["GridSample"]):
        meta = export_model(ExportArguments(model=str(folder), output=str(tmp_path / f"{len(ops)}.onnx"), int8=True,
                                            image_size=[128, 170], calibration_images=8, int8_float_ops=ops),
                            _data(demo_dir))
        kept[len(ops)] = meta["int8"]
    assert kept[1]["kept_float_nodes"] < kept[3]["kept_float_nodes"]
    assert kept[1]["kept_float_op_types"] == ["GridSample"]


def _data(demo_dir):
    from recipe.config.arguments import DataArguments

    train, val = demo_dir / "train", demo_dir / "val"
    return DataArguments(train_ann=str(train / "annotations.json"), train_img=str(train / "images"),
                         val_ann=str(val / "annotations.json"), val_img=str(val / "images"))


def _one_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        export_main(argv)
    # before it, the progress bars of reading the data's table; the error is the last line, and one line
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and lines[-1].startswith("error: "), lines
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], lines
    return lines[-1]


def test_a_calibration_set_too_small_is_one_line_and_no_file(trained_demo, tmp_path, capsys):
    from recipe.data.synthetic import make_demo_dataset

    folder, _ = trained_demo
    small = tmp_path / "small"
    make_demo_dataset(small, seed=0, num_train=5, num_val=2)
    out = tmp_path / "m.onnx"
    argv = ["--model", str(folder), "--output", str(out), "--int8", "--image_size", *FRAME, *data_flags(small)]
    assert "has 5 images, too few to calibrate on (at least 8)" in _one_line(capsys, argv)
    assert "--calibration_images 100: the training split" in _one_line(capsys, [*argv[:-8], *data_flags(
        _demo_with(tmp_path, 12))]) and not out.exists()


def _demo_with(tmp_path, count):
    from recipe.data.synthetic import make_demo_dataset

    make_demo_dataset(tmp_path / f"d{count}", seed=0, num_train=count, num_val=2)
    return tmp_path / f"d{count}"


def test_a_missing_extra_is_one_line(trained_demo, tmp_path, capsys, monkeypatch):
    import sys

    folder, _ = trained_demo
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    err = _one_line(capsys, ["--model", str(folder), "--output", str(tmp_path / "m.xml"), "--format", "openvino"])
    assert "need openvino: pip install -e '.[openvino]'" in err and not (tmp_path / "m.xml").exists()
    monkeypatch.setitem(sys.modules, "nncf", None)
    monkeypatch.delitem(sys.modules, "openvino")
    err = _one_line(capsys, ["--model", str(folder), "--output", str(tmp_path / "m.xml"), "--format", "openvino",
                             "--int8", *data_flags(tmp_path)])
    assert "need nncf: pip install -e '.[openvino]'" in err


def test_an_openvino_graph_without_parity_is_an_error_and_no_file(trained_demo, tmp_path, monkeypatch):
    from recipe.core.errors import ModelNotAvailable
    from recipe.models.exported import OpenVinoDetector

    folder, _ = trained_demo
    real_run = OpenVinoDetector.run
    monkeypatch.setattr(OpenVinoDetector, "run", lambda self, feed: tuple(a + 0.01 for a in real_run(self, feed)))
    with pytest.raises(ModelNotAvailable, match=r"m.xml: not written: OpenVINO's outputs differ from PyTorch's by up "
                                                r"to 0.01 on a random batch \(limit 0.0001\)"):
        export_model(ExportArguments(model=str(folder), output=str(tmp_path / "m.xml"), format="openvino",
                                     image_size=[128, 170]))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_latency_is_the_median_per_image():
    from recipe.inference.measure import latency_ms

    calls = []
    batch = {"pixel_values": np.zeros((8, 3, 4, 4))}
    assert latency_ms(lambda pixel_values: calls.append(len(pixel_values)), batch, size=8, runs=5) >= 0
    assert calls == [8] * 6  # one warm-up, then the timed runs


def test_an_expand_to_an_empty_shape_reads_in_openvino_as_identity(tmp_path):
    """RT-DETR's graph holds torch.full of a 0-d tensor: Expand(Cast(a scalar), Cast(an empty int64 shape)), which
    ONNX Runtime runs and OpenVINO 2026.4 refuses; read as Identity, OpenVINO gives ONNX Runtime's numbers."""
    import onnxruntime
    import openvino
    from onnx import TensorProto, helper

    from recipe.core.errors import ModelNotAvailable
    from recipe.inference.deploy import to_openvino

    nodes = [helper.make_node("Constant", [], ["v"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [1.5])),
             helper.make_node("Constant", [], ["s"], value=helper.make_tensor("s", TensorProto.INT64, [0], [])),
             helper.make_node("Cast", ["v"], ["vf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["s"], ["si"], to=TensorProto.INT64),
             helper.make_node("Expand", ["vf", "si"], ["e"], name="full"),
             helper.make_node("Add", ["x", "e"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10),
              tmp_path / "full.onnx")
    with pytest.raises(RuntimeError, match="Conversion is failed for: Expand-18"):
        openvino.Core().read_model(str(tmp_path / "full.onnx"))  # the converter's own refusal, as RT-DETR met it
    x = np.array([1.0, 2.0], dtype=np.float32)
    expected = onnxruntime.InferenceSession(str(tmp_path / "full.onnx")).run(None, {"x": x})[0]
    compiled = openvino.Core().compile_model(to_openvino(tmp_path / "full.onnx"), "CPU")
    assert expected.tolist() == list(compiled({"x": x}).values())[0].tolist() == [2.5, 3.5]
    # an operator no rule converts is named in one line
    custom = helper.make_graph([helper.make_node("FooBar", ["x"], ["y"], domain="com.example")], "g",
                               graph.input, graph.output)
    onnx.save(helper.make_model(custom, opset_imports=[helper.make_opsetid("", 18),
                                                       helper.make_opsetid("com.example", 1)]), tmp_path / "c.onnx")
    with pytest.raises(ModelNotAvailable, match=r"^OpenVINO cannot read this model's ONNX graph \(operator "
                                                r"com\.example\.FooBar does not convert\); deploy the \.onnx"):
        to_openvino(tmp_path / "c.onnx")


def test_evaluating_leaves_no_scratch_folder(trained_demo, demo_dir, tmp_path, monkeypatch):
    """evaluate's Trainer needs an output_dir; the scratch folder it gets goes when the evaluation ends."""
    import tempfile

    folder, _ = trained_demo
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scores = evaluate_checkpoint(str(folder), str(demo_dir / "val" / "images"),
                                 str(demo_dir / "val" / "annotations.json"), num_workers=0)
    assert scores["num_images"] == 8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("recipe-eval-")] == []
