"""Rank families on your data: each trained with its own recipe, scored, exported and timed the same way.

python scripts/compare.py --families rt_detr d_fine deimv2 --budget 30m --dataset my_data
python scripts/compare.py configs/compare/demo_cpu.yaml          # the demo's three families at demo size, on the CPU

Writes OUTPUT_DIR/<family>/ (each run folder, model.onnx) and OUTPUT_DIR/leaderboard.md, .json, .png; run again to
continue a killed comparison with the families left.
"""

from recipe.cli.main import compare_main

if __name__ == "__main__":
    compare_main()
