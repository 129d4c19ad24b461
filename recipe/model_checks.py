"""Checks of the model options made at parse time, before any weights load: `model_config` is a JSON object of a
known `model_type`, and costs and loss weights are whole numbers where the model's config class says int.
transformers is imported only inside the checks, so the argument dataclasses stay light to import.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import ConfigError


def parse_model_config(text: str | None) -> dict | None:
    """model_config (a JSON object) -> dict, or None when not given."""
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model_config is not valid JSON ({e.msg} at character {e.pos}): {text[:60]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model_config must be a JSON object of config fields, got {text[:60]!r}")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type", "deformable_detr")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"model_config: unknown model_type {model_type!r} (transformers has no such config)")
    return config


def local_model_type(name_or_path: str | None) -> str | None:
    """The model_type of a local folder or an already-cached Hub model (no network); None when unknown."""
    if not name_or_path:
        return None
    path = Path(name_or_path) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name_or_path, "config.json")
        except Exception:  # noqa: BLE001 - an id the hub library cannot parse is simply "not cached"
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # the model loader reports unreadable configs, naming the file


def check_whole_numbers(model_args, model_type: str) -> None:
    """Costs and loss weights that the model's config class declares as int (DETR, Deformable DETR, ... in
    transformers 5) must be whole numbers: the config's strict validation rejects 2.5 only when the model is built."""
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        return
    config_class = CONFIG_MAPPING[model_type]
    annotations = {}
    for klass in reversed(config_class.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    for f in dataclasses.fields(model_args):
        value = getattr(model_args, f.name)
        if annotations.get(f.name) in (int, "int") and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{f.name} must be a whole number for {model_type} models "
                              f"({config_class.__name__} declares it int), got {value}")
