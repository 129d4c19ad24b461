"""notebooks/finetune.ipynb: committed without outputs, and it runs top to bottom (on the demo cut to 2 steps)."""

import json

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "finetune.ipynb"


def test_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_runs_top_to_bottom_on_the_demo_cut_to_a_few_steps(demo_dir, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    extra = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--shortest_edges", "128", "--eval_size",
             "128", "--dataset_cache_dir", str(tmp_path / "cache"), "--logging_steps", "1"]
    params.source = (f"DEMO_DATA = {str(demo_dir)!r}\nOUTPUT_DIR = {str(tmp_path / 'out')!r}\nEXTRA_ARGS = {extra!r}\n"
                     "THRESHOLD = 0.0")  # two steps do not make confident detections
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and ("image/png" in o.data or
                                                                         "image/jpeg" in o.data)]
    assert len(images) == 6 + 3  # the six plots, then three images with predictions drawn
    last = nb.cells[-1].outputs[-1].data["text/plain"]
    assert "'score'" in last and "'box'" in last  # pipeline() loaded the folder and detected
    assert (tmp_path / "out" / "plots" / "error_breakdown.png").is_file()
    assert len(list((tmp_path / "out" / "predictions" / "images").iterdir())) == 3
