"""What differs between DETR-family model types: classifier kind, loss terms, original-recipe defaults.

One entry per `model_type`; everything family-specific that the rest of the recipe needs is read from here.
"""

from __future__ import annotations

# Classifier is a softmax with a trailing "no object" class (the others use sigmoid / focal scores).
SOFTMAX_MODEL_TYPES = frozenset({"detr", "table-transformer", "yolos"})


def uses_softmax(model_type: str) -> bool:
    return model_type in SOFTMAX_MODEL_TYPES
