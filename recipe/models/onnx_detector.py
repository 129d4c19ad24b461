"""An exported ONNX graph (`export.export_onnx`) as a detector: ONNX Runtime behind the PyTorch model's call.

`OnnxDetector` stands where the PyTorch model stood in predict.py and evaluate.py: the same loader, resize, collator
(padding every batch to the graph's frame), post-processing and results files; only the forward call differs. What
it needs besides the graph is in the JSON sidecar beside it (`PATH.onnx.json`).
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


def is_onnx(model_id: str | None) -> bool:
    return bool(model_id) and str(model_id).lower().endswith(".onnx")


def sidecar_path(onnx_path) -> Path:
    return Path(f"{onnx_path}.json")


class OnnxDetector(torch.nn.Module):
    """An exported graph behind the PyTorch detector's call: `(pixel_values [B, 3, H, W], pixel_mask [B, H, W])`
    -> `.logits`, `.pred_boxes` (float32 torch tensors), `.loss` None. A graph of batch 1 runs image by image.

    A torch Module (holding no weights) so that the evaluation's Trainer runs it as it runs the model."""

    def __init__(self, path, meta: dict | None = None):
        super().__init__()
        onnxruntime = require_export_packages("onnxruntime")

        self.path = str(path)
        self.meta = meta if meta is not None else read_sidecar(path)
        self.config = onnx_config(self.meta)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's warnings about unused initialisers are not the user's
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            options.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for unreadable graphs
            raise ModelNotAvailable(f"{self.path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:200]}); "
                                    "export it again with detr-export") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.frame = tuple(self.meta["frame"])
        self.batch = None if self.meta["batch"] == "dynamic" else int(self.meta["batch"])

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
            out_logits, out_boxes = self.session.run(["logits", "pred_boxes"], feed)
            logits.append(out_logits)
            boxes.append(out_boxes)
        device = pixel_values.device
        return SimpleNamespace(loss=None, logits=torch.from_numpy(np.concatenate(logits)).to(device),
                               pred_boxes=torch.from_numpy(np.concatenate(boxes)).to(device))


def read_sidecar(path) -> dict:
    """The `.onnx.json` beside an exported graph, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailable(f"{path}: no such ONNX file; export one with detr-export")
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


def load_onnx_detector(path: str):
    """-> (OnnxDetector, image processor, label -> dataset category id list): `loading.load_detector`'s triple."""
    meta = read_sidecar(path)
    detector = OnnxDetector(path, meta)
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
