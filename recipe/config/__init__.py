"""The recipe's options: argument dataclasses (shared and per command), the parser (dataclass defaults < YAML <
command line, unknown keys fail), the one `model_config` reader, and assembling a run's arguments."""
