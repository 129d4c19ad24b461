"""Fine-tune DETR-family object detectors with `transformers.Trainer` and score them with the official COCO protocol.

The public API: what the README, the notebook and the benchmarks call. Files inside the packages may move; these
names stay. Imported lazily, so `import recipe` (and every command's `--help`) loads no torch or transformers.

    config = recipe.parse_config(["configs/demo.yaml", "--max_steps", "50"])   # defaults < YAML < arguments
    metrics = recipe.train(config)                                               # train, evaluate, save the folder
    scores = recipe.evaluate("outputs/demo", "val/images", "val/annotations.json")   # the 12 COCO numbers
    recipe.predict(recipe.PredictArguments(model="outputs/demo", images="val/images"))
    recipe.export(recipe.ExportArguments(model="outputs/demo", output="model.onnx"))
"""

from __future__ import annotations

import importlib

# name -> (module, attribute): the one place that says where each public name lives.
PUBLIC = {
    "parse_config": ("recipe.config.load", "parse_config"),
    "evaluate": ("recipe.evaluation.evaluate", "evaluate_checkpoint"),
    "print_metrics": ("recipe.evaluation.evaluate", "print_metrics"),
    "predict": ("recipe.inference.predict", "predict"),
    "PredictArguments": ("recipe.config.command_arguments", "PredictArguments"),
    "export": ("recipe.inference.export", "export_model"),
    "ExportArguments": ("recipe.config.command_arguments", "ExportArguments"),
    "make_demo_dataset": ("recipe.data.synthetic", "make_demo_dataset"),
}
__all__ = ["train", *PUBLIC]


def train(config, *, callbacks=()) -> dict:
    """Train as `detr-train` does on a parsed config (`parse_config(argv)`), evaluate the saved model, write the
    output folder; `callbacks`: extra `transformers.TrainerCallback`s. -> the final metrics (`eval_map`, ...)."""
    from recipe.training.run import run

    return run(*config, callbacks=callbacks)


def __getattr__(name: str):
    if name not in PUBLIC:
        raise AttributeError(f"module 'recipe' has no attribute {name!r}")
    module, attribute = PUBLIC[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
