"""From a table row to a model batch: augmentation, the processor's resize rules, training transforms, the
worker transport, collation and the batch step on the device (flip, resize, colour jitter, normalisation)."""
