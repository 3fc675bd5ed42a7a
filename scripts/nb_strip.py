"""Prepare executed notebooks for commit: keep outputs only where nbval compares them.

Cells tagged ``nbval-check-output`` (in the cell's metadata, out of the student's sight) keep
their outputs and execution count (nbval's ``--nbval-lax`` mode compares exactly those); every other cell is cleared, so plots, timings
and machine paths never enter git. Usage: ``python scripts/nb_strip.py notebooks/*.ipynb``.
"""

from __future__ import annotations

import sys

import nbformat

#: The cell tag nbval reads in --nbval-lax mode (a ``# NBVAL_CHECK_OUTPUT`` comment would show in the lesson).
MARK = "nbval-check-output"


def strip(path: str) -> bool:
    """Strip one notebook in place; return True when it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if MARK not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, path)
    return after != before


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(("stripped " if strip(p) else "clean    ") + p)
