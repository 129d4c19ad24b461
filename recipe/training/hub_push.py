"""Push the final output folder to the Hub: once, after the final evaluation, without secrets."""

from __future__ import annotations

import logging

from huggingface_hub import HfApi

logger = logging.getLogger("recipe")

# Checkpoints are for resuming, not for users of the model; training_args.bin pickles every argument.
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "training_args.bin", "runs/**", "*.tmp"]


def push_folder(output_dir: str, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str = "Fine-tuned with the detection recipe") -> str:
    """Create `repo_id` if needed and upload `output_dir` (weights, config, processor, card, metrics).
    -> the commit URL. The token is passed to the API only; it is never written or logged."""
    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
    info = api.upload_folder(folder_path=output_dir, repo_id=repo_id, repo_type="model",
                             commit_message=commit_message, ignore_patterns=IGNORE_PATTERNS)
    logger.warning("pushed %s to https://huggingface.co/%s", output_dir, repo_id)
    return str(getattr(info, "commit_url", info))
