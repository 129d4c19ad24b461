"""Checks of the model options made at parse time, before any weights load: `model_config` is a JSON object of a
known `model_type`, and costs and loss weights are whole numbers where the model's config class says int.
transformers is imported only inside the checks, so the argument dataclasses stay light to import.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from recipe.core.errors import ConfigError

DEFAULT_MODEL_TYPE = "deformable_detr"  # a model_config without a model_type builds this family


def parse_model_config(text: str | None) -> dict | None:
    """model_config (a JSON object) -> dict, or None when not given: the one reader of `--model_config` (the
    argument check, the availability check and the model builder all call it, with the same errors)."""
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model_config is not valid JSON ({e.msg} at character {e.pos}): {text[:60]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model_config must be a JSON object of config fields, got {text[:60]!r}")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type", DEFAULT_MODEL_TYPE)
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"model_config: unknown model_type {model_type!r} (transformers has no such config)")
    unread = unread_model_config_keys(config, CONFIG_MAPPING[model_type])
    if unread:
        raise ConfigError(_unread_message(unread, CONFIG_MAPPING[model_type], model_type))
    return config


# Keys a config class takes without a field of its own: the legacy backbone keys that its __post_init__ folds into
# backbone_config, the old name of `dtype`, a saved config's path, and the recipe's own `category_ids`.
TAKEN_WITHOUT_FIELD = frozenset({"backbone", "use_timm_backbone", "use_pretrained_backbone", "backbone_kwargs",
                                 "torch_dtype", "_name_or_path", "model_type", "category_ids"})


def unread_model_config_keys(config: dict, config_class) -> list[str]:
    """The keys of `config` that `config_class` neither has as a field nor maps to one nor writes itself: transformers'
    configs keep any key as an attribute without a word, so a misspelt or other family's name (DAB-DETR's width is
    `hidden_size`, not DETR's `d_model`) would build a model without it. A saved config.json passes as it is: what
    the class's own `to_dict()` writes (D-FINE's derived `head_dim`, the base class's `output_attentions`) is known."""
    return sorted(k for k in config if k not in _known_keys(config_class) and k not in TAKEN_WITHOUT_FIELD)


@functools.cache
def _known_keys(config_class) -> frozenset[str]:
    fields = {f.name for f in dataclasses.fields(config_class)} | set(getattr(config_class, "attribute_map", {}))
    return frozenset(fields | set(config_class().to_dict()))


def _unread_message(keys: list[str], config_class, model_type: str) -> str:
    import difflib

    fields = [f.name for f in dataclasses.fields(config_class)] + list(getattr(config_class, "attribute_map", {}))
    hints = [f"{k} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(k, fields, n=1)) else k
             for k in keys]
    return (f"model_config: {', '.join(hints)} not read by transformers' {config_class.__name__} ({model_type}), so "
            f"it would have no effect; remove it or use the config's own field")


def model_type_of(model_args) -> str | None:
    """A run's model_type, resolved in this one place: its model_config's (DEFAULT_MODEL_TYPE when it names none),
    else its checkpoint's config.json when local or cached; None when only the network would tell."""
    config = parse_model_config(model_args.model_config)
    if config is not None:
        return config.get("model_type", DEFAULT_MODEL_TYPE)
    return local_model_type(model_args.model_name_or_path)


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
