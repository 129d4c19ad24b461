"""Deployment formats from an exported ONNX graph: OpenVINO IR, INT8 (ONNX Runtime's static QDQ quantisation or
OpenVINO's NNCF post-training quantisation, calibrated on the user's training images), and what each costs: the
exported file's map / map_50 / map_small on the validation set and its latency per image, next to the PyTorch
model's (`measure`, written into the sidecar by `recipe.inference.export`).

Layers kept in float by default (`FLOAT_OPS`): LayerNorm, grid_sample and softmax, where the originals' fp16 exports
lost their accuracy (D-FINE #98, DEIM #107, rf-detr #176); int8 goes to the convolutions and matrix products, where
the arithmetic is.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from recipe.core.errors import ConfigError, DataError, ModelNotAvailable
from recipe.models.exported import require_export_packages, require_openvino

logger = logging.getLogger("recipe")

# The layers --int8 keeps in float, by their ONNX operator name, and the same layers as OpenVINO names them after
# reading the ONNX graph (LayerNormalization becomes MVN followed by a scale and shift).
FLOAT_OPS = {"LayerNormalization": "MVN", "GridSample": "GridSample", "Softmax": "Softmax"}
# What ONNX Runtime's QDQ pass quantises: the weights' layers.
ORT_INT8_OPS = ["Conv", "MatMul", "Gemm"]
MIN_CALIBRATION_IMAGES = 8


def to_openvino(onnx_path: Path):
    """The ONNX graph read by OpenVINO (an `openvino.Model`), after `empty_expands_as_identity`, or one line naming
    the operator it cannot convert."""
    import onnx

    openvino = require_openvino()
    graph = onnx.load(str(onnx_path))
    if empty_expands_as_identity(graph):
        onnx_path = onnx_path.with_name(onnx_path.stem + "_for_openvino.onnx")
        onnx.save(graph, str(onnx_path))
    try:
        return openvino.Core().read_model(str(onnx_path))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its frontend's page of text
        text = " ".join(str(e).split())
        failed = re.search(r"(?:Conversion is failed for|No conversion rule found for operations): ([\w.\-, ]+)",
                           text)
        what = f"operator {failed.group(1).strip()} does not convert" if failed else text[:300]
        raise ModelNotAvailable(f"OpenVINO cannot read this model's ONNX graph ({what}); deploy the .onnx with ONNX "
                                "Runtime instead") from None


def empty_expands_as_identity(graph) -> int:
    """Rewrite in place each `Expand` to an empty shape (torch.full of a 0-d tensor, in RT-DETR's graph) as the
    `Identity` it is: broadcasting to the shape [] leaves any input as it is. ONNX Runtime runs the original;
    OpenVINO 2026.4's converter refuses it ("Broadcast shape rank must be 1, but has 0"). -> how many."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(graph)
    empty = {value.name for value in inferred.graph.value_info
             if value.type.tensor_type.HasField("shape")
             and [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim] == [0]}
    count = 0
    for node in graph.graph.node:
        if node.op_type == "Expand" and node.input[1] in empty:
            node.op_type = "Identity"
            del node.input[1]
            count += 1
    return count


def save_openvino(model, out: Path) -> None:
    """`out` (.xml) and its .bin, weights in float32 (OpenVINO's default halves them: not the model checked)."""
    openvino = require_openvino()
    openvino.save_model(model, str(out), compress_to_fp16=False)


def calibration_files(source, count: int, *, seed: int = 0) -> list[Path]:
    """`count` image files drawn (seeded) from the training split of `source`, or one line where it has too few."""
    from recipe.data.source import load_table

    files = [Path(p) for p in load_table(source).dataset.select_columns(["image_path"])["image_path"]]
    where = f"the training split of {source.name}"
    if len(files) < MIN_CALIBRATION_IMAGES:
        raise DataError(f"--int8: {where} has {len(files)} images, too few to calibrate on (at least "
                        f"{MIN_CALIBRATION_IMAGES}); quantise with more data or export without --int8")
    if len(files) < count:
        raise DataError(f"--calibration_images {count}: {where} has {len(files)} images; ask for at most "
                        f"{len(files)}")
    chosen = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
    return [files[i] for i in sorted(chosen.tolist())]


def calibration_feeds(files: list[Path], config, processor) -> list[dict]:
    """Each image resized, normalised and padded as inference does (the exported graph's processor), as the
    graph's inputs {"pixel_values", "pixel_mask"} of batch 1."""
    from recipe.inference.inputs import ImageFiles, collate_readable
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of

    images = ImageFiles(files, eval_augmentation_for(processor.size, rule=rule_of(processor)))
    collate = collate_readable(config, processor)
    feeds = []
    for i in range(len(images)):
        batch = collate([images[i]])
        if batch["failed"]:
            raise DataError(f"--int8 calibration: {batch['failed'][0]['error']}")
        feeds.append({"pixel_values": batch["pixel_values"].numpy().astype(np.float32),
                      "pixel_mask": batch["pixel_mask"].numpy().astype(np.int64)})
    return feeds


def quantize_onnx(src: Path, out: Path, feeds: list[dict], *, float_ops: list[str], input_names: list[str]) -> dict:
    """ONNX Runtime static quantisation, QDQ format (int8 weights per channel, uint8 activations), of the
    convolutions and matrix products; `float_ops` and every other operator stay float. -> the sidecar's "int8"."""
    import onnx

    require_export_packages("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{k: v for k, v in feed.items() if k in input_names} for feed in feeds])

        def get_next(self):
            return next(self.items, None)

    graph = onnx.load(str(src), load_external_data=False)
    excluded = [node.name for node in graph.graph.node if node.op_type in float_ops]
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process the graph first, on the root logger
    try:
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=ORT_INT8_OPS,
                        nodes_to_exclude=excluded, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    quantized = onnx.load(str(out), load_external_data=False)
    counts = {"QuantizeLinear": 0}
    for node in quantized.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    return {"method": "onnxruntime static quantisation (QDQ, per-channel int8 weights, uint8 activations)",
            "quantized_op_types": ORT_INT8_OPS, "kept_float_op_types": sorted(float_ops),
            "kept_float_nodes": len(excluded), "quantize_nodes": counts["QuantizeLinear"],
            "calibration_images": len(feeds)}


def quantize_openvino(model, feeds: list[dict], *, float_ops: list[str], input_names: list[str]):
    """NNCF post-training quantisation of an OpenVINO model (transformer preset), `float_ops` ignored by type.
    -> (the quantised model, the sidecar's "int8")."""
    require_openvino("nncf")
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    data = nncf.Dataset([{k: v for k, v in feed.items() if k in input_names} for feed in feeds])
    ignored = nncf.IgnoredScope(types=[FLOAT_OPS[op] for op in float_ops], validate=False)
    quantized = nncf.quantize(model, data, subset_size=len(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              ignored_scope=ignored)
    fake = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return quantized, {"method": f"NNCF {nncf.__version__} post-training quantisation (transformer preset)",
                       "kept_float_op_types": sorted(float_ops), "fake_quantize_nodes": fake,
                       "calibration_images": len(feeds)}


def check_options(args) -> None:
    """Combinations that have no meaning, and the extras a format needs, before any model is loaded."""
    if args.fp16 and (args.int8 or args.format == "openvino"):
        raise ConfigError("--fp16 is for ONNX graphs run on GPUs; --int8 and --format openvino take the float32 "
                          "model (drop --fp16)")
    require_export_packages("onnx", "onnxscript", "onnxruntime")
    if args.format == "openvino":
        require_openvino(*(["nncf"] if args.int8 else []))


def export_sources(data_args):
    """(calibration source: the training split, validation source) the data flags name; None where not given."""
    from recipe.data.source import data_source

    if data_args is None or not (data_args.dataset or data_args.val_ann or data_args.train_ann):
        return None, None

    def source(split, ann, images):
        if not data_args.dataset and not (ann and images):
            return None
        return data_source(data_args, annotation_file=ann, image_root=images, split=split,
                           annotation_format=data_args.annotation_format, box_convention=data_args.box_convention,
                           bdd_image_size=data_args.bdd_image_size, cache_dir=data_args.dataset_cache_dir)

    return (source("train", data_args.train_ann, data_args.train_img),
            source("validation", data_args.val_ann, data_args.val_img))


def convert(onnx_path: Path, out: Path, meta: dict, args, calibration_files: list[Path], config) -> dict:
    """The checked ONNX graph at `onnx_path` as `args` asks: quantised to INT8 by ONNX Runtime, or converted to
    OpenVINO (quantised there by NNCF with --int8), written to `out`. -> the sidecar's new entries."""
    from recipe.models.exported import onnx_processor

    feeds = calibration_feeds(calibration_files, config, onnx_processor(meta)) if args.int8 else []
    entries = {"runtime": "openvino" if args.format == "openvino" else "onnxruntime",
               "dtype": "int8" if args.int8 else meta["dtype"]}
    if args.format == "onnx":
        entries["int8"] = quantize_onnx(onnx_path, out, feeds, float_ops=args.int8_float_ops,
                                        input_names=meta["inputs"])
        return entries
    ir = to_openvino(onnx_path)
    if args.int8:
        ir, entries["int8"] = quantize_openvino(ir, feeds, float_ops=args.int8_float_ops, input_names=meta["inputs"])
    save_openvino(ir, out)
    return entries
