"""An exported graph (`recipe.inference.export`) as a detector: ONNX Runtime (`.onnx`) or OpenVINO (`.xml` with its
`.bin`) behind the PyTorch model's call.

`OnnxDetector` and `OpenVinoDetector` stand where the PyTorch model stood in predict.py and evaluate.py: the same
loader, resize, collator (padding every batch to the graph's frame), post-processing and results files; only the
forward call differs. What they need besides the graph is in the JSON sidecar beside it (`PATH.json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from recipe.core.errors import ConfigError, ModelNotAvailable

SIDECAR_FORMAT = "detr-finetune-recipe onnx 1"


# The exported formats by file suffix: what detr-export writes and what predict / evaluate run.
FORMAT_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


def is_onnx(model_id: str | None) -> bool:
    return bool(model_id) and str(model_id).lower().endswith(".onnx")


def is_openvino(model_id: str | None) -> bool:
    return bool(model_id) and str(model_id).lower().endswith(".xml")


def is_exported(model_id: str | None) -> bool:
    """An exported graph (ONNX or OpenVINO) rather than a PyTorch model folder or Hub id."""
    return is_onnx(model_id) or is_openvino(model_id)


def threads_from_environment() -> int | None:
    """OMP_NUM_THREADS as the runtimes' thread count (None: theirs)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return int(threads) if threads and threads.isdigit() and int(threads) > 0 else None


def sidecar_path(onnx_path) -> Path:
    return Path(f"{onnx_path}.json")


class ExportedDetector(torch.nn.Module):
    """An exported graph behind the PyTorch detector's call: `(pixel_values [B, 3, H, W], pixel_mask [B, H, W])`
    -> `.logits`, `.pred_boxes` (float32 torch tensors), `.loss` None. A graph of batch 1 runs image by image.
    Subclasses load the graph (`threads`: the runtime's intra-op threads, default OMP_NUM_THREADS) and `run` a feed.

    A torch Module (holding no weights) so that the evaluation's Trainer runs it as it runs the model."""

    runtime = ""

    def __init__(self, path, meta: dict | None = None, *, threads: int | None = None):
        super().__init__()
        self.path = str(path)
        self.meta = meta if meta is not None else read_sidecar(path)
        self.config = onnx_config(self.meta)
        self.threads = threads or threads_from_environment()
        self.frame = tuple(self.meta["frame"])
        self.batch = None if self.meta["batch"] == "dynamic" else int(self.meta["batch"])
        self.input_names = list(self.meta.get("inputs", ["pixel_values", "pixel_mask"]))

    def run(self, feed: dict) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, **_ignored):
        """`_ignored`: the labels the evaluation's Trainer passes (no loss here)."""
        if tuple(pixel_values.shape[-2:]) != self.frame:
            h, w = pixel_values.shape[-2:]
            raise ConfigError(f"{self.path}: a batch of {h}x{w} pixels does not fit the graph's frame "
                              f"{self.frame[0]}x{self.frame[1]} (an image resized larger than it); export again "
                              f"with --image_size covering it (longest_edge x longest_edge covers every image)")
        values = pixel_values.detach().float().cpu().numpy()
        mask = None if pixel_mask is None else pixel_mask.detach().cpu().numpy().astype(np.int64)
        step = self.batch or len(values)
        logits, boxes = [], []
        for start in range(0, len(values), step):
            feed = {"pixel_values": values[start:start + step]}
            if "pixel_mask" in self.input_names:
                feed["pixel_mask"] = mask[start:start + step]
            out_logits, out_boxes = self.run(feed)
            logits.append(out_logits)
            boxes.append(out_boxes)
        device = pixel_values.device
        return SimpleNamespace(loss=None, logits=torch.from_numpy(np.concatenate(logits)).to(device),
                               pred_boxes=torch.from_numpy(np.concatenate(boxes)).to(device))


class OnnxDetector(ExportedDetector):
    """An `.onnx` graph run by ONNX Runtime on the CPU."""

    runtime = "onnxruntime"

    def __init__(self, path, meta: dict | None = None, *, threads: int | None = None):
        super().__init__(path, meta, threads=threads)
        onnxruntime = require_export_packages("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's warnings about unused initialisers are not the user's
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for unreadable graphs
            raise ModelNotAvailable(f"{self.path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:200]}); "
                                    "export it again with detr-export") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feed: dict) -> tuple[np.ndarray, np.ndarray]:
        logits, boxes = self.session.run(["logits", "pred_boxes"], feed)
        return logits, boxes


class OpenVinoDetector(ExportedDetector):
    """An OpenVINO IR (`.xml` + `.bin`) compiled for the CPU at float32 precision: OpenVINO's default on CPUs with
    bf16 or fp16 units is to compute in them (`INFERENCE_PRECISION_HINT`), which is not the model the user
    checked. An INT8 IR keeps its quantised layers in int8 under this hint."""

    runtime = "openvino"

    def __init__(self, path, meta: dict | None = None, *, threads: int | None = None):
        super().__init__(path, meta, threads=threads)
        openvino = require_openvino()
        properties = {"INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            properties["INFERENCE_NUM_THREADS"] = self.threads
        try:
            self.compiled = openvino.Core().compile_model(self.path, "CPU", properties)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with pages of text
            raise ModelNotAvailable(f"{self.path}: OpenVINO cannot load it ({' '.join(str(e).split())[:200]}); "
                                    "export it again with detr-export --format openvino (keep the .bin beside "
                                    "the .xml)") from None
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()

    def run(self, feed: dict) -> tuple[np.ndarray, np.ndarray]:
        result = self.request.infer(feed)
        by_name = {output.get_any_name(): value for output, value in result.items()}
        return np.array(by_name["logits"], copy=True), np.array(by_name["pred_boxes"], copy=True)


def read_sidecar(path) -> dict:
    """The `.onnx.json` beside an exported graph, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailable(f"{path}: no such exported file; export one with detr-export")
    meta_path = sidecar_path(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise ModelNotAvailable(f"{path}: {meta_path} (written by detr-export beside the graph) is missing or "
                                "not JSON; keep the two files together") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise ModelNotAvailable(f"{meta_path}: not a detr-export sidecar ({SIDECAR_FORMAT!r}); export again")
    return meta


def onnx_config(meta: dict):
    """The model config of an exported graph (id2label, category_ids, the family's sizes)."""
    from transformers import CONFIG_MAPPING

    return CONFIG_MAPPING[meta["model_type"]].from_dict(meta["config"])


def onnx_processor(meta: dict):
    """The image processor, padding every batch to the graph's frame (`processor_size.canvas_of`)."""
    import transformers

    values = dict(meta["image_processor"])
    processor = getattr(transformers, values["image_processor_type"]).from_dict(values)
    height, width = meta["frame"]
    processor.do_pad, processor.pad_size = True, {"height": height, "width": width}
    return processor


def load_exported_detector(path: str, *, threads: int | None = None):
    """-> (OnnxDetector or OpenVinoDetector by the file's suffix, image processor, label -> dataset category id
    list): `loading.load_detector`'s triple."""
    meta = read_sidecar(path)
    kind = OpenVinoDetector if is_openvino(path) else OnnxDetector
    detector = kind(path, meta, threads=threads)
    return detector, onnx_processor(meta), [int(c) for c in meta["category_ids"]]


def require_export_packages(*names: str):
    """Import the export extra's packages, or one line saying how to install them. -> the last module."""
    import importlib

    module = None
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelNotAvailable(f"ONNX export and inference need {name}: pip install -e '.[export]'") from None
    return module


def require_openvino(*extra: str):
    """openvino (and `extra`, e.g. nncf), or one line saying how to install them. -> openvino."""
    import importlib

    for name in ("openvino", *extra):
        try:
            importlib.import_module(name)
        except ImportError:
            raise ModelNotAvailable(f"OpenVINO export and inference need {name}: pip install -e '.[openvino]'") \
                from None
    return importlib.import_module("openvino")
