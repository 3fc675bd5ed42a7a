"""The student copy drops exactly the solution cells and every output, and keeps the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_student_copy", ROOT / "scripts" / "make_student_copy.py")
msc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msc)


def _nb():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Exercises\n1. Compute 2 + 2."),
        nbformat.v4.new_code_cell("print(2 + 2)", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output("stream", text="hi")], execution_count=3),
    ]
    return nb


def test_solution_cells_and_outputs_are_removed():
    out = msc.student_copy(_nb())
    assert [c.source for c in out.cells] == ["## Exercises\n1. Compute 2 + 2.", "x = 1"]
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None


def test_script_writes_a_copy_of_every_numbered_notebook(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    nbformat.write(_nb(), src / "01_demo.ipynb")
    nbformat.write(_nb(), src / "notes.ipynb")  # not part of the course
    assert msc.main(["--out", str(tmp_path / "student"), "--notebooks", str(src)]) == 0
    written = sorted(p.name for p in (tmp_path / "student").iterdir())
    assert written == ["01_demo.ipynb"]
    copy = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    assert all("solution" not in c.metadata.get("tags", []) for c in copy.cells)
