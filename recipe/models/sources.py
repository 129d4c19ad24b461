"""Where a model comes from, checked before any data is read: a Hub id, the local cache (offline-safe), a local
folder or a `model_config`; an architecture the recipe trains; the packages its checkpoint needs."""

from __future__ import annotations

import importlib.util
import logging
import os

from transformers import AutoConfig

from recipe.config.model_config import model_type_of
from recipe.core.errors import ModelNotAvailable
from recipe.models.exported import is_exported
from recipe.models.families import family_of

logger = logging.getLogger(__name__)


def is_offline(model_args=None) -> bool:
    """--offline (`model_args.offline`, when given) or HF_HUB_OFFLINE."""
    return bool(getattr(model_args, "offline", False)) or \
        os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def check_model_available(model_args) -> None:
    """Fail early (before any data is read): a checkpoint not in the cache offline, an architecture that is
    not a DETR-family detector, or a package the checkpoint needs that is not installed."""
    if model_args.model_config:
        family_of(model_type_of(model_args))
        return
    if not model_args.model_name_or_path:
        raise ModelNotAvailable("set model_name_or_path (Hub id or local folder) or model_config")
    if is_exported(model_args.model_name_or_path):
        raise ModelNotAvailable(f"model {model_args.model_name_or_path!r} is an exported graph (ONNX or OpenVINO), "
                                "for predict and evaluate only; train from the PyTorch folder it was exported from")
    offline = is_offline(model_args)
    if not offline and not os.path.isdir(model_args.model_name_or_path):
        offline = offline_if_hub_unreachable(model_args)
    try:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, local_files_only=offline)
    except ImportError as e:
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r} needs a package that is missing: {e}") from None
    except Exception as e:  # noqa: BLE001 - the hub raises many types; all mean "not here"
        where = "the local cache (offline mode)" if offline else "the Hub or the local cache"
        scratch = ("for random weights without any Hub file, name the architecture instead: --model_config "
                   "deformable_detr (any family name: transformers' default architecture) or a config with a "
                   "model_config mapping (configs/scratch.yaml)")
        if model_args.random_init:  # --random_init builds the checkpoint's architecture: it needs its config.json
            hint = f"--random_init still needs its config.json; {scratch}"
        else:
            hint = f"pass a local folder; or, {scratch}"
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r} is not in {where} ({type(e).__name__}). Download it once "
            f"where there is network (`hf download ID`), {hint}.") from None
    family_of(config.model_type)
    check_packages(config, model_args.model_name_or_path)


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """One request to the Hub's endpoint (no retries): None when it answers (any HTTP status), else the reason. In a
    daemon thread, since a resolver without network can take ~20 s to give up and the socket timeout does not
    cover name resolution."""
    import threading
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    def probe() -> str | None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            return None
        except (urllib.error.URLError, OSError) as e:
            return str(getattr(e, "reason", e))
        return None

    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(probe()), daemon=True)  # never joined at exit
    thread.start()
    thread.join(timeout)
    return answer[0] if answer else f"no answer from {constants.ENDPOINT} within {timeout:g} s"


def offline_if_hub_unreachable(model_args) -> bool:
    """Without a network, huggingface_hub retries each file 5 times with back-off (~30 s, each warning printed
    twice) before failing. One quick request instead: unreachable and cached -> the run goes on offline (said once);
    unreachable and not cached -> one line suggesting --offline and the ways out. -> whether to load offline."""
    reason = hub_unreachable_reason()
    if reason is None:
        return False
    try:
        AutoConfig.from_pretrained(model_args.model_name_or_path, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: whatever the type
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r}: the Hub cannot be reached ({reason}) and it is not in the "
            "local cache. On a machine without network pass --offline (or HF_HUB_OFFLINE=1) and a cached model or "
            "local folder; for random weights without any Hub file: --model_config deformable_detr (any family "
            "name) or a config with a model_config mapping (configs/scratch.yaml).") from None
    logger.warning("the Hub cannot be reached (%s): using the cached copy of %s (pass --offline to skip this check)",
                   reason, model_args.model_name_or_path)
    model_args.offline = True
    return True


def check_packages(config, name: str) -> None:
    """A checkpoint whose backbone is a timm model cannot be built without timm: say so, with the command."""
    backbone = getattr(config, "backbone_config", None)
    timm_backbone = getattr(backbone, "model_type", None) == "timm_backbone"
    if (timm_backbone or getattr(config, "use_timm_backbone", False)) and importlib.util.find_spec("timm") is None:
        raise ModelNotAvailable(f"model {name!r} has a timm backbone ({getattr(backbone, 'backbone', '?')}) "
                                "and needs the timm package: pip install 'timm>=1.0,<2'")
