"""Export a trained detector to ONNX, with what inference needs beside it:

python scripts/export.py --model outputs/demo --output demo.onnx [--opset 17] [--dynamic_batch] [--fp16]
    [--image_size H W]

Writes demo.onnx and demo.onnx.json; `scripts/predict.py --model demo.onnx` and `scripts/evaluate.py --model
demo.onnx` run it with ONNX Runtime.
"""

from recipe.cli.main import export_main

if __name__ == "__main__":
    export_main()
