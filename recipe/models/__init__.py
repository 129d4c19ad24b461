"""The detector families and their models: the family table, loading from a checkpoint, a Hub id or an ONNX
file, random initialisation, checkpoint weights, losses and post-processing of model outputs."""
