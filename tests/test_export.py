"""ONNX export: ONNX Runtime gives the PyTorch model's outputs, evaluation numbers and results files on the demo's
validation images; fixed batch 1 or any batch; bad input is one line; every family's published structure exports
(slow)."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from conftest import ROOT
from conftest import one_line_error as _one_line_error
from published import FAMILY_MODELS, family_model_config
from recipe.cli.main import export_main, predict_main, train_main
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.evaluate import evaluate_checkpoint
from recipe.inference.export import ExportArguments, export_model
from recipe.inference.inputs import ImageFiles, collate_readable
from recipe.inference.predict import PredictArguments, predict
from recipe.models.exported import OnnxDetector, load_exported_detector
from recipe.models.loading import load_detector
from recipe.pipeline.augment import eval_augmentation_for
from recipe.pipeline.processor_size import rule_of

# The demo scenes are 320x240; at the tests' eval size 128 they resize to 128x170, the batches' frame in PyTorch.
FRAME = ["128", "170"]


@pytest.fixture(scope="module")
def trained(trained_demo, tmp_path_factory):
    """conftest's 2-step demo run, its final evaluation's metrics, and its exports (batch 1, dynamic batch)."""
    tmp = tmp_path_factory.mktemp("export-run")
    folder, metrics = trained_demo
    export_main(["--model", str(folder), "--output", str(tmp / "demo.onnx"), "--image_size", *FRAME])
    export_main(["--model", str(folder), "--output", str(tmp / "demo_dynamic.onnx"), "--image_size", *FRAME,
                 "--dynamic_batch"])
    return folder, metrics, tmp / "demo.onnx", tmp / "demo_dynamic.onnx"


def validation_batch(folder, demo_dir, count=8):
    """The demo's validation images as predict.py batches them for the PyTorch model (resize, normalise, pad)."""
    model, processor, _ = load_detector(str(folder))
    files = sorted((demo_dir / "val" / "images").iterdir())[:count]
    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor))
    batch = collate_readable(model.config, processor)([ImageFiles(files, augmentation)[i] for i in range(count)])
    return model, batch


def test_onnx_outputs_equal_pytorch_on_the_demo_validation_images(trained, demo_dir, capsys):
    folder, _, path, _ = trained
    model, batch = validation_batch(folder, demo_dir)
    assert tuple(batch["pixel_values"].shape) == (8, 3, 128, 170)
    with torch.no_grad():
        expected = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
    detector, processor, category_ids = load_exported_detector(str(path))
    got = detector(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])  # 8 runs of batch 1
    diffs = {name: float((getattr(got, name) - getattr(expected, name)).abs().max())
             for name in ("logits", "pred_boxes")}
    with capsys.disabled():
        print(f"\nONNX Runtime vs PyTorch on 8 demo validation images: max |diff| {diffs}")
    assert diffs["logits"] <= 1e-4 and diffs["pred_boxes"] <= 1e-4
    assert got.logits.shape == expected.logits.shape == (8, 50, 5) and got.loss is None
    # What inference needs came along: labels, dataset ids, the processor's eval size and the post-processing.
    meta = json.loads(path.with_name("demo.onnx.json").read_text())
    assert meta["id2label"] == {str(k): v for k, v in model.config.id2label.items()}
    assert category_ids == meta["category_ids"] == model.config.category_ids == [1, 2, 3, 4, 5]
    assert meta["postprocess"] == "sigmoid top-k" and meta["box_frame"] == "image"
    assert meta["inputs"] == ["pixel_values", "pixel_mask"] and meta["frame"] == [128, 170] and meta["batch"] == 1
    assert dict(processor.size) == dict(load_detector(str(folder))[1].size)
    graph = onnx.load(str(path))
    assert [o.name for o in graph.graph.output] == ["logits", "pred_boxes"]
    assert {op.domain: op.version for op in graph.opset_import}[""] == 17


def test_without_dynamic_batch_the_graph_takes_batch_1_with_it_1_and_3(trained, demo_dir):
    folder, _, fixed, dynamic = trained
    model, batch = validation_batch(folder, demo_dir, count=3)
    fixed_session = onnxruntime.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    dynamic_session = onnxruntime.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    assert fixed_session.get_inputs()[0].shape == [1, 3, 128, 170]
    assert dynamic_session.get_inputs()[0].shape[0] == "batch"
    feed = {"pixel_values": batch["pixel_values"].numpy(), "pixel_mask": batch["pixel_mask"].numpy().astype(np.int64)}
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument, match="index: 0 Got: 3"):
        fixed_session.run(None, feed)
    for count in (1, 3):
        with torch.no_grad():
            expected = model(pixel_values=batch["pixel_values"][:count], pixel_mask=batch["pixel_mask"][:count])
        logits, boxes = dynamic_session.run(["logits", "pred_boxes"], {k: v[:count] for k, v in feed.items()})
        assert logits.shape == (count, 50, 5)
        assert np.abs(logits - expected.logits.numpy()).max() <= 1e-4
        assert np.abs(boxes - expected.pred_boxes.numpy()).max() <= 1e-4


def test_evaluate_on_the_onnx_file_gives_the_trained_folders_numbers(trained, demo_dir, capsys):
    folder, metrics, path, dynamic = trained
    images, ann = str(demo_dir / "val" / "images"), str(demo_dir / "val" / "annotations.json")
    pytorch = evaluate_checkpoint(str(folder), images, ann, num_workers=0)
    for exported in (path, dynamic):
        scored = evaluate_checkpoint(str(exported), images, ann, num_workers=0)
        with capsys.disabled():
            print(f"\n{exported.name}: " + " ".join(f"{k}={scored[k]:.6f} ({scored[k] - pytorch[k]:+.1e})"
                                                    for k in METRIC_KEYS))
        assert {k: scored[k] for k in METRIC_KEYS} == pytest.approx({k: pytorch[k] for k in METRIC_KEYS}, abs=1e-4)
        # ... which are the training run's own final evaluation
        assert {k: scored[k] for k in METRIC_KEYS} == pytest.approx({k: metrics[f"eval_{k}"] for k in METRIC_KEYS},
                                                                    abs=1e-4)
    assert max(pytorch[k] for k in METRIC_KEYS) > 0  # not a comparison of empty results


@pytest.mark.parametrize("threshold", [0.0, 0.3])
def test_predict_on_the_onnx_file_writes_the_same_results_and_drawn_images(trained, demo_dir, tmp_path, threshold):
    folder, _, path, _ = trained
    images = str(demo_dir / "val" / "images")
    outs = {}
    for name, model in (("pytorch", folder), ("onnx", path)):
        predict(PredictArguments(model=str(model), images=images, output=str(tmp_path / name), threshold=threshold))
        outs[name] = json.loads((tmp_path / name / "predictions.json").read_text())
    theirs, ours = outs["pytorch"], outs["onnx"]
    assert len(ours) == len(theirs) > 0 and (threshold > 0 or len(ours) == 8 * 100)
    for a, b in zip(theirs, ours):
        assert (a["image_id"], a["file_name"], a["category_id"]) == (b["image_id"], b["file_name"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)  # pixels of the 320x240 image
    drawn = sorted(p.name for p in (tmp_path / "pytorch" / "images").iterdir())
    assert drawn == sorted(p.name for p in (tmp_path / "onnx" / "images").iterdir()) and len(drawn) == 8
    for name in drawn:
        a, b = (np.asarray(Image.open(tmp_path / side / "images" / name)) for side in ("pytorch", "onnx"))
        assert np.array_equal(a, b), name


def test_an_image_larger_than_the_graphs_frame_is_one_line(trained, tmp_path):
    _, _, path, _ = trained
    Image.new("RGB", (240, 320)).save(tmp_path / "portrait.png")  # resizes to 170x128: taller than 128
    with pytest.raises(Exception, match=r"does not fit the graph's frame 128x170 .* --image_size"):
        predict(PredictArguments(model=str(path), images=str(tmp_path / "portrait.png"), output=str(tmp_path / "o")))


def test_bad_input_is_one_line(tmp_path, capsys):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "deformable_detr"}))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "notes.txt").write_text("not a model")
    out = str(tmp_path / "m.onnx")
    cases = {
        "cannot load a detector": ["--model", str(no_weights), "--output", out],
        "cannot load a detector ": ["--model", str(tmp_path / "notes.txt"), "--output", out],
        "model_type 'bert' is not a DETR-family detector": ["--model", str(unknown), "--output", out],
        "is a file, not a folder": ["--model", str(no_weights), "--output", str(tmp_path / "notes.txt" / "m.onnx")],
        "is a folder": ["--model", str(no_weights), "--output", str(tmp_path)],
        "ending in .onnx": ["--model", str(no_weights), "--output", str(tmp_path / "m.pt")],
        "already an exported graph": ["--model", out, "--output", str(tmp_path / "n.onnx")],
        "ending in .xml for --format openvino": ["--model", str(no_weights), "--output", out, "--format", "openvino"],
        "--int8 and --format openvino take the float32": ["--model", str(no_weights), "--output", out, "--fp16",
                                                          "--int8"],
        "--int8 needs the data": ["--model", str(no_weights), "--output", out, "--int8"],
        "int8_float_ops: 'Conv' is not one of": ["--model", str(no_weights), "--output", out, "--int8_float_ops",
                                                 "Conv"],
        "calibration_images must be in [8, inf)": ["--model", str(no_weights), "--output", out,
                                                   "--calibration_images", "4"],
        "format: 'tflite' is not one of onnx, openvino": ["--model", str(no_weights), "--output", out, "--format",
                                                          "tflite"],
        "opset must be in": ["--model", str(no_weights), "--output", out, "--opset", "16"],
        "output is required": ["--model", str(no_weights)],
    }
    for expected, argv in cases.items():
        assert expected.strip() in _one_line_error(capsys, export_main, argv), argv
    assert not (tmp_path / "m.onnx").exists()
    # Training from an exported graph: one line, before any data is read.
    line = _one_line_error(capsys, train_main, [str(ROOT / "configs" / "demo.yaml"), "--model_config", "none",
                                                "--model_name_or_path", out, "--train_img", str(tmp_path / "none"),
                                                "--output_dir", str(tmp_path / "run")])
    assert "is an exported graph (ONNX or OpenVINO), for predict and evaluate only" in line


def test_a_missing_sidecar_is_one_line(tmp_path, capsys):
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"the sidecar is read first")
    Image.new("RGB", (32, 24)).save(tmp_path / "x.png")
    line = _one_line_error(capsys, predict_main, ["--model", str(lonely), "--images", str(tmp_path),
                                                  "--output", str(tmp_path / "o")])
    assert "lonely.onnx.json (written by detr-export beside the graph) is missing" in line
    # a sidecar beside a file that is not a graph
    (tmp_path / "lonely.onnx.json").write_text(json.dumps({"format": "detr-finetune-recipe onnx 1", "frame": [8, 8],
                                                           "batch": 1, "model_type": "detr", "config": {}}))
    line = _one_line_error(capsys, predict_main, ["--model", str(lonely), "--images", str(tmp_path),
                                                  "--output", str(tmp_path / "o")])
    assert "lonely.onnx: ONNX Runtime cannot load it" in line


def test_an_operator_onnx_lacks_is_one_line_naming_it(tmp_path):
    from types import SimpleNamespace

    from recipe.core.errors import ModelNotAvailable
    from recipe.inference.export import OnnxGraph, export_graph

    class EigenDetector(torch.nn.Module):
        config = SimpleNamespace(model_type="detr")

        def forward(self, pixel_values):
            values = torch.linalg.eigvals(pixel_values[:, 0, :4, :4]).real  # no ONNX translation
            return SimpleNamespace(logits=values[:, :, None], pred_boxes=values[:, :, None].expand(-1, -1, 4))

    with pytest.raises(ModelNotAvailable, match=r"detr: cannot export to ONNX opset 17 \(operator aten.*eig"):
        export_graph(OnnxGraph(EigenDetector(), takes_mask=False), tmp_path / "e.onnx", (8, 8), opset=17,
                     dynamic_batch=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fp16_export_keeps_float32_inputs_and_outputs(trained, tmp_path):
    folder = trained[0]
    meta = export_model(ExportArguments(model=str(folder), output=str(tmp_path / "half.onnx"), fp16=True,
                                       image_size=[int(v) for v in FRAME]))
    graph = onnx.load(str(tmp_path / "half.onnx"))
    sizes = {kind: sum(int(np.prod(t.dims)) for t in graph.graph.initializer if t.data_type == kind)
             for kind in (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)}
    assert sizes[onnx.TensorProto.FLOAT16] > 0.99 * sum(p.numel() for p in load_detector(str(folder))[0].parameters())
    print(f"fp16 graph: {sizes[onnx.TensorProto.FLOAT16]:,} float16 and {sizes[onnx.TensorProto.FLOAT]:,} float32 "
          "initialiser values")
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert meta["dtype"] == "float16"
    # float16 arithmetic: within float16's resolution of the float16 PyTorch model's outputs
    assert meta["check"]["logits_max_abs_diff"] < 0.05 and meta["check"]["pred_boxes_max_abs_diff"] < 0.01
    assert isinstance(OnnxDetector(tmp_path / "half.onnx"), torch.nn.Module)


# One published structure per family (tests/published.py); Deformable DETR's is the two-stage variant, the richest
# (its box-refine structure is the demo model's, exported above).
FAMILY_ROWS = [name for name, hub in FAMILY_MODELS.items()
               if hub is not None and name not in ("deformable_detr", "deformable_detr box refine")]
# Frame side and the noise added to the fresh weights (default 128, 0.1). Parity on random weights needs weights for
# which the query selection is well posed: a fresh model's encoder scores tie (RT-DETR: 43 of 336 tokens at the k-th
# score, boxes 0.75 apart), RT-DETR and RT-DETR v2 still have scores 1e-7 apart with noise 0.1 (distinct at 0.3),
# and D-FINE, DEIMv2 and LW-DETR with noise 0.3 grow activations whose top-k differs (logits 3e-3 to 3.1 apart;
# within 1e-5 at 0.1), all measured. RF-DETR at its smallest frame (2 x patch x windows), fresh: at 168 x 168 its
# graph gives other outputs than PyTorch, fresh or noised (the xfail below).
FRAME_AND_NOISE = {"rt_detr": (128, 0.3), "rt_detr_v2": (128, 0.3), "rf_detr": (112, 0.0)}
# The RT-DETR-style families' code fixes the batch (transformers' modeling_rt_detr.py: `batch_size =
# len(source_flatten)`, a Python int, which torch.export specialises to the sample's 2 without an error): a
# --dynamic_batch export of theirs is refused (the upstream reports of dynamic-batch graphs failing at deployment:
# D-FINE #18, DEIM #55); they export at batch 1.
FIXED_BATCH = {"rt_detr", "rt_detr_v2", "d_fine", "deimv2"}


@pytest.mark.slow
@pytest.mark.extended  # command 2's parity is the demo's (above); every family's structure here, 13-30 s each
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", FAMILY_ROWS)
def test_each_familys_published_structure_exports_with_parity(name, tmp_path):
    if name in FIXED_BATCH:
        from recipe.core.errors import ModelNotAvailable

        with pytest.raises(ModelNotAvailable, match=r"m.onnx: not written: .*'s graph came out with a fixed batch "
                                                    r"\(pixel_values 2\) despite --dynamic_batch; export without it"):
            export_family_structure(name, tmp_path, *FRAME_AND_NOISE.get(name, (128, 0.1)))
        assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.onnx.json").exists()
    meta, config = export_family_structure(name, tmp_path, *FRAME_AND_NOISE.get(name, (128, 0.1)),
                                           dynamic=name not in FIXED_BATCH)
    print(f"{name}: opset {meta['opset']}, frame {meta['frame']}, inputs {meta['inputs']}, {meta['check']}")
    assert meta["check"]["logits_max_abs_diff"] <= 1e-4 and meta["check"]["pred_boxes_max_abs_diff"] <= 1e-4
    from recipe.models.families import family_of, ignores_pixel_mask

    model_type = config["model_type"]
    # the exporter writes 18 and converts down with onnx's version converter, which lacks adapters for some ops
    # (Pad; ReduceSum with its axes as an input): those graphs stay at 18, as the sidecar says
    assert meta["opset"] in (17, 18) and onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == meta["opset"]
    assert meta["inputs"] == (["pixel_values"] if ignores_pixel_mask(model_type) else ["pixel_values", "pixel_mask"])
    assert meta["box_frame"] == ("canvas" if ignores_pixel_mask(model_type) else "image")
    softmax = family_of(model_type).softmax
    assert meta["postprocess"] == ("softmax, last class no-object" if softmax else "sigmoid top-k")
    # OpenVINO reads the same graph and gives ONNX Runtime's outputs (detr-export --format openvino's route); not
    # RF-DETR's fresh 112 px structure: OpenVINO's logits are ONNX Runtime's within 2.4e-4 but for a few entries up
    # to 0.22 apart (measured 2026-12-07; cause not traced). detr-export's own check refuses such an IR.
    if name == "rf_detr":
        return
    from recipe.inference.deploy import save_openvino, to_openvino
    from recipe.models.exported import OpenVinoDetector

    save_openvino(to_openvino(tmp_path / "m.onnx"), tmp_path / "m.xml")
    (tmp_path / "m.xml.json").write_text((tmp_path / "m.onnx.json").read_text())
    pixel_values = torch.randn(2, 3, *meta["frame"], generator=torch.Generator().manual_seed(0))
    pixel_mask = torch.ones(2, *meta["frame"], dtype=torch.int64)
    ours = OpenVinoDetector(tmp_path / "m.xml")(pixel_values=pixel_values, pixel_mask=pixel_mask)
    theirs = OnnxDetector(tmp_path / "m.onnx")(pixel_values=pixel_values, pixel_mask=pixel_mask)
    for key in ("logits", "pred_boxes"):
        assert float((getattr(ours, key) - getattr(theirs, key)).abs().max()) <= 1e-4, (name, key)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_graph_without_parity_is_an_error_and_no_file(tmp_path):
    """RF-DETR at 168 x 168: ONNX Runtime's logits 0.38 and boxes 0.89 from PyTorch's (measured, fresh weights;
    112 x 112 agrees; cause not traced). Exported and silently wrong is what must not happen: one line, nothing
    left to deploy."""
    from recipe.core.errors import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match=r"m.onnx: not written: ONNX Runtime's outputs differ from PyTorch's "
                                                r"by up to 0\.\d+ on a random batch \(limit 0.0001\)"):
        export_family_structure("rf_detr", tmp_path, 168, 0.0)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.onnx.json").exists()


def export_family_structure(name: str, tmp_path, side: int, noise: float, *, dynamic: bool = True):
    """Build `name`'s published structure (tiny widths), save it with a side x side processor, export it (with a
    dynamic batch unless not `dynamic`). -> (sidecar with the exporter's parity check, model config)."""
    from recipe.config.arguments import ModelArguments
    from recipe.models.loading import load_model_and_processor

    torch.manual_seed(0)
    config = family_model_config(FAMILY_MODELS[name])
    model, processor = load_model_and_processor(ModelArguments(model_config=json.dumps(config)),
                                                {0: "a", 1: "b", 2: "c"})
    # noise: see FRAME_AND_NOISE (which of tied scores the query top-k keeps is each runtime's own choice)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * noise)
    processor.size, processor.do_pad = {"height": side, "width": side}, False
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    meta = export_model(ExportArguments(model=str(tmp_path / "model"), output=str(tmp_path / "m.onnx"),
                                       dynamic_batch=dynamic))
    return meta, config
