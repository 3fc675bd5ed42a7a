"""Make the student copy of the course: the same notebooks without the solution cells.

Exercises and their solutions have one source, the notebooks in ``notebooks/``; a solution is
a cell tagged ``solution``. This script writes copies without those cells (and without any
outputs), so the copy can never drift from the course: make it again whenever you hand it out.

Usage: ``python scripts/make_student_copy.py [--out student/]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without solution cells and without outputs."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            continue
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        out.cells.append(cell)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "student")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb")):
        nbformat.write(student_copy(nbformat.read(path, as_version=4)), args.out / path.name)
        print(args.out / path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
