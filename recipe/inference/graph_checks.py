"""Checks of an exported file against the PyTorch model it came from: the largest output differences on a seeded
random batch (`differences`), a limit above which nothing is left to deploy (`checked`), and a dynamic batch that
the exporter fixed after all (`check_dynamic_batch`). Each failure is one line, its files removed."""

from __future__ import annotations

from pathlib import Path

import torch

from recipe.core.errors import ModelNotAvailable
from recipe.models.exported import OnnxDetector, OpenVinoDetector, is_openvino, sidecar_path


def written_files(path: Path) -> list[Path]:
    """An exported file and what goes with it: its sidecar, and an OpenVINO IR's .bin."""
    return [path, sidecar_path(path), *([path.with_suffix(".bin")] if is_openvino(path) else [])]


def checked(graph, path: Path, frame, *, batch: int, limit: float, out: Path) -> dict:
    """`differences`, or, above `limit`, no file left to deploy ("exported and silently wrong" is what to catch)
    and one line."""
    check = differences(graph, path, frame, batch=batch)
    worst = max(check.values())
    if worst > limit:
        for name in {*written_files(path), *written_files(out)}:
            name.unlink(missing_ok=True)
        runtime = "OpenVINO" if is_openvino(path) else "ONNX Runtime"
        raise ModelNotAvailable(
            f"{out}: not written: {runtime}'s outputs differ from PyTorch's by up to {worst:.2g} on a random batch "
            f"(limit {limit:g}), so the graph does not reproduce the model; try another --image_size or --opset")
    return check


def check_dynamic_batch(path: Path, model_type: str, out: Path) -> None:
    """A --dynamic_batch graph whose batch the exporter fixed after all (torch.export's fallback specialises the
    sample's size without an error: RT-DETR's family, measured) is refused in one line, no file left: it would fail
    at the first other batch size, in deployment (rf-detr #949, D-FINE #18, DEIM #55)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    fixed = [f"{i.name} {d.dim_value}" for i in graph.graph.input
             for d in i.type.tensor_type.shape.dim[:1] if d.HasField("dim_value")]
    if fixed:
        for name in {*written_files(path), *written_files(out)}:
            name.unlink(missing_ok=True)
        raise ModelNotAvailable(f"{out}: not written: {model_type}'s graph came out with a fixed batch "
                                f"({', '.join(fixed)}) despite --dynamic_batch; export without it (batch 1: predict "
                                "and evaluate run a batch image by image)")


def differences(graph, path: Path, frame: tuple[int, int], *, batch: int) -> dict:
    """Largest |exported - PyTorch| of logits and boxes on one seeded random batch (mask: the right quarter of the
    last image is padding), the exported file run by its runtime."""
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch, 3, *frame, generator=generator)
    pixel_mask = torch.ones(batch, *frame, dtype=torch.int64)
    pixel_mask[-1, :, frame[1] * 3 // 4:] = 0
    with torch.no_grad():
        logits, boxes = graph(pixel_values, pixel_mask)
    detector = (OpenVinoDetector if is_openvino(path) else OnnxDetector)(path)
    outputs = detector(pixel_values=pixel_values, pixel_mask=pixel_mask)
    return {"logits_max_abs_diff": float((outputs.logits - logits).abs().max()),
            "pred_boxes_max_abs_diff": float((outputs.pred_boxes - boxes).abs().max())}
