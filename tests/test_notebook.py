"""The notebook tour runs top to bottom without an error, so it cannot rot."""

import os

import pytest

nbclient = pytest.importorskip(
  "nbclient", reason="install the test extra: pip install -e '.[test]'"
)
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOUR = os.path.join(ROOT, "experiments", "notebooks", "tour.ipynb")


def test_tour_notebook_executes_every_cell(monkeypatch):
  monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's path-migration warning
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  notebook = nbformat.read(TOUR, as_version=4)
  assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
    "commit the tour with its outputs cleared"
  )
  client = nbclient.NotebookClient(
    notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": ROOT}}
  )
  client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
  code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.get("execution_count") for cell in code_cells)
  errors = [out for cell in code_cells for out in cell.outputs if out.output_type == "error"]
  assert not errors
  printed = "".join(out.get("text", "") for cell in code_cells for out in cell.outputs)
  assert "[0.4711 0.2645 0.2645]" in printed  # the worked example, corrected
  assert "'token_accuracy'" in printed
