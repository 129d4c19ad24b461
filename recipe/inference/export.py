"""Export of a trained detector to ONNX or OpenVINO, fp32 or INT8, which predict.py and evaluate.py run in its place
(`recipe.models.exported`).

`export_model` writes `PATH.onnx` (inputs `pixel_values` [B, 3, H, W] float32 and, for models that read it,
`pixel_mask` [B, H, W] int64; outputs `logits` [B, Q, C] and `pred_boxes` [B, Q, 4] `cxcywh_norm`, by name) and
beside it `PATH.onnx.json`: what inference needs (the model config with `id2label` and `category_ids`, the image
processor's config, the post-processing, the graph's frame; `recipe.models.exported` reads it back). Exporter:
`torch.onnx.export(dynamo=True)`: optimum-onnx (0.1.0, its newest) needs transformers < 4.58 and has no ONNX config
for Deformable / Conditional / DAB-DETR, DEIMv2, LW-DETR or RF-DETR.

The graph takes one frame (H, W): the models' Python code branches on feature-map sizes, so torch.export fixes them
(asked for dynamic height and width, it specialises them to the sample's without a word). The batch is 1, or any
size with `dynamic_batch`.

`--format openvino` converts that graph to an OpenVINO IR (`PATH.xml` + `.bin`, checked against PyTorch as the
graph is); `--int8` quantises it (`recipe.inference.deploy`) on the training images; with a validation set the
sidecar gets "measured": the file's map and latency next to PyTorch's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from unittest.mock import patch

import torch

from recipe.config.command_arguments import ExportArguments
from recipe.core.errors import ConfigError, ModelNotAvailable
from recipe.inference.graph_checks import check_dynamic_batch, checked, differences
from recipe.models.exported import (
    FORMAT_SUFFIX,
    SIDECAR_FORMAT,
    is_exported,
    sidecar_path,
)

logger = logging.getLogger(__name__)



class OnnxGraph(torch.nn.Module):
    """What is exported: the detector called by keyword, its outputs returned by name (`output_names`)."""

    def __init__(self, model, *, takes_mask: bool, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model, self.takes_mask, self.dtype = model, takes_mask, dtype

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None):
        inputs = {"pixel_values": pixel_values.to(self.dtype)}
        if self.takes_mask:
            inputs["pixel_mask"] = pixel_mask
        outputs = self.model(**inputs)
        return outputs.logits.float(), outputs.pred_boxes.float()


def takes_pixel_mask(model) -> bool:
    """Whether the model reads `pixel_mask` (mask-blind families take it only to drop it, YOLOS has none)."""
    import inspect

    from recipe.models.families import ignores_pixel_mask

    return ("pixel_mask" in inspect.signature(model.forward).parameters
            and not ignores_pixel_mask(model.config.model_type))


def graph_frame(config, processor, image_size: list[int] | None = None) -> tuple[int, int]:
    """(H, W) the graph takes: `image_size`, else the processor's canvas (`pad_size`), else its fixed
    {height, width}, else its eval size (shortest_edge x longest_edge, landscape); rounded up to the family's
    `size_multiple`, as the collator pads."""
    from recipe.models.families import size_multiple
    from recipe.pipeline.processor_size import canvas_of, size_dict

    size = size_dict(processor.size)
    if image_size:
        frame = tuple(image_size)
    elif canvas_of(processor):
        frame = canvas_of(processor)
    elif {"height", "width"} <= set(size):
        frame = (size["height"], size["width"])
    elif {"max_height", "max_width"} <= set(size):
        frame = (size["max_height"], size["max_width"])
    else:
        frame = (size["shortest_edge"], size["longest_edge"])
    m = size_multiple(config)
    return tuple(-(-int(v) // m) * m for v in frame)


def check_output(path: str, fmt: str = "onnx") -> Path:
    """Before any model is loaded: a file name of the format's suffix whose folder exists or can be made and
    written."""
    out, suffix = Path(path), FORMAT_SUFFIX[fmt]
    if out.is_dir():
        raise ConfigError(f"--output {path}: is a folder; give a file name, e.g. {out / ('model' + suffix)}")
    if out.suffix != suffix:
        raise ConfigError(f"--output {path}: give a file name ending in {suffix} for --format {fmt} "
                          f"(e.g. {out.with_suffix(suffix)})")
    parent = out.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: {existing} is not writable; choose another path")
    return out


def load_exportable(model_id: str):
    """-> (model, processor, category ids), the family checked before the weights are read."""
    from recipe.config.model_config import local_model_type
    from recipe.models.families import family_of
    from recipe.models.loading import load_detector

    if is_exported(model_id):
        raise ConfigError(f"--model {model_id}: already an exported graph; export the PyTorch folder it came from")
    model_type = local_model_type(model_id)
    if model_type is not None:
        family_of(model_type)
    model, processor, category_ids = load_detector(model_id)
    family_of(model.config.model_type)
    return model, processor, category_ids


# An operator the ONNX exporter has no translation for (torch.onnx `_core.py`: "No ONNX function found for <op>").
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OPERATOR = re.compile(r"No ONNX function found for \W*(?:OpOverload\(op=')?([A-Za-z0-9_]+[:.]{1,2}[A-Za-z0-9_.]+)")


def export_model(args: ExportArguments, data_args=None) -> dict:
    """Export `args.model` to `args.output` (+ its `.json` sidecar): the ONNX graph, checked against PyTorch on one
    random batch of the graph's frame; then, as asked, converted to OpenVINO (checked the same way) and / or
    quantised to INT8 on the training images; with a validation set (`data_args`), the file's map and latency next to
    PyTorch's written into the sidecar ("measured"). -> the sidecar's contents, with the check's differences."""
    import tempfile

    from recipe.inference import deploy

    out = check_output(args.output, args.format)
    deploy.check_options(args)
    calibration, validation = deploy.export_sources(data_args)
    if args.int8 and (calibration is None or validation is None):
        raise ConfigError("--int8 needs the data: --dataset PATH_OR_ID, or --train_ann/--train_img (the calibration "
                          "images) and --val_ann/--val_img (its measured map: what INT8 costs, before shipping it)")
    calibration_files = deploy.calibration_files(calibration, args.calibration_images) if args.int8 else []
    model, processor, category_ids = load_exportable(args.model)
    frame = graph_frame(model.config, processor, args.image_size)
    dtype = torch.float16 if args.fp16 else torch.float32
    graph = OnnxGraph(model.to(dtype), takes_mask=takes_pixel_mask(model), dtype=dtype).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recipe-export-") as tmp:
        direct = args.format == "onnx" and not args.int8
        onnx_path = out if direct else Path(tmp) / "model.onnx"
        export_graph(graph, onnx_path, frame, opset=args.opset, dynamic_batch=args.dynamic_batch)
        if args.dynamic_batch:
            check_dynamic_batch(onnx_path, model.config.model_type, out)
        meta = sidecar(model.config, processor, category_ids, frame=frame, takes_mask=graph.takes_mask, args=args)
        meta["opset"] = written_opset(onnx_path)
        if meta["opset"] != args.opset:  # the exporter keeps its own opset when it cannot convert, with a log only
            logger.warning("%s: written at opset %d (the conversion to %d failed)", out, meta["opset"], args.opset)
        meta["runtime"] = "onnxruntime"
        write_sidecar(onnx_path, meta)
        batch = 3 if args.dynamic_batch else 1  # not the export's sample batch (2)
        meta["check"] = checked(graph, onnx_path, frame, batch=batch, limit=1e-2 if args.fp16 else 1e-4, out=out)
        if not direct:
            meta.update(deploy.convert(onnx_path, out, meta, args, calibration_files, model.config))
            write_sidecar(out, meta)
            # INT8 has no parity to hold: what it costs is measured on the validation set below
            meta["check"] = differences(graph, out, frame, batch=batch) if args.int8 else \
                checked(graph, out, frame, batch=batch, limit=1e-4, out=out)
    if validation is not None:
        from recipe.inference.measure import measure

        meta["measured"] = measure(out, args.model, validation, threads=args.threads)
    write_sidecar(out, meta)
    return meta


def write_sidecar(path: Path, meta: dict) -> None:
    sidecar_path(path).write_text(json.dumps(meta, indent=2))


def export_graph(graph: OnnxGraph, out: Path, frame: tuple[int, int], *, opset: int, dynamic_batch: bool) -> None:
    """torch.onnx.export (dynamo), inputs and outputs named; an operator ONNX lacks is one ModelNotAvailable line."""
    # The sample batch is 2 where the batch is dynamic: torch.export fixes a dimension of size 1.
    batch = 2 if dynamic_batch else 1
    inputs = {"pixel_values": torch.zeros(batch, 3, *frame)}
    if graph.takes_mask:
        inputs["pixel_mask"] = torch.ones(batch, *frame, dtype=torch.int64)
    dynamic = None
    if dynamic_batch:
        dim = torch.export.Dim("batch", min=1, max=1024)
        dynamic = {name: {0: dim} for name in inputs}
    # transformers' shape checks (`torch_compilable_check`) trace to `aten._is_all_true`, which has no ONNX
    # translation; the frame is fixed, so they hold by construction. transformers' documented switch turns them off.
    try:
        with torch.no_grad(), patch.dict(os.environ, {"TRANSFORMERS_DISABLE_TORCH_CHECK": "1"}), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name: batch will not be used")  # one name, two inputs
            torch.onnx.export(graph, (), str(out), kwargs=inputs, input_names=list(inputs),
                              output_names=["logits", "pred_boxes"], opset_version=opset, dynamo=True,
                              dynamic_shapes=dynamic, external_data=False,
                              # onnxscript's optimizer leaves a dangling input in Deformable DETR's graph
                              # (onnxscript 0.7.2: "Node input 'sigmoid_min_1' is not a graph input"); ONNX Runtime
                              # optimises the graph when it loads it anyway.
                              optimize=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; each is one line for the user
        causes = [e]
        while causes[-1].__cause__ is not None and len(causes) < 10:
            causes.append(causes[-1].__cause__)
        text = " ".join(_ANSI.sub("", str(c)) for c in causes)
        match = _OPERATOR.search(text)
        # else the innermost cause (the exporter's own message is a page of advice)
        what = f"operator {match.group(1)} has no ONNX translation" if match else \
            f"{type(causes[-1]).__name__}: {' '.join(_ANSI.sub('', str(causes[-1])).split())[:300]}"
        raise ModelNotAvailable(f"{graph.model.config.model_type}: cannot export to ONNX opset {opset} ({what})") \
            from None


def written_opset(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return next(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx"))


def sidecar(config, processor, category_ids, *, frame, takes_mask: bool, args: ExportArguments) -> dict:
    """What inference needs beside the graph, as plain JSON."""
    from recipe.models.families import ignores_pixel_mask, uses_softmax

    return {
        "format": SIDECAR_FORMAT,
        "source": args.model,
        "model_type": config.model_type,
        "inputs": ["pixel_values", "pixel_mask"] if takes_mask else ["pixel_values"],
        "outputs": ["logits", "pred_boxes"],
        "frame": list(frame),  # (H, W) of every batch the graph takes, padded bottom-right
        "batch": "dynamic" if args.dynamic_batch else 1,
        "dtype": "float16" if args.fp16 else "float32",
        "opset": args.opset,
        "postprocess": "softmax, last class no-object" if uses_softmax(config.model_type) else "sigmoid top-k",
        # mask-blind models predict boxes in the padded canvas (`DetectionCollator.boxes_on_canvas`)
        "box_frame": "canvas" if ignores_pixel_mask(config.model_type) else "image",
        "id2label": {str(k): v for k, v in config.id2label.items()},
        "category_ids": category_ids,
        "image_processor": json.loads(processor.to_json_string()),
        "config": config.to_dict(),
    }
