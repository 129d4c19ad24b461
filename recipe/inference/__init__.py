"""Using a trained model: prediction on images and folders, and export to ONNX with parity checked."""
