"""Make the student copy of the course with nbgrader: each solution replaced by a stub, each check kept.

Exercises, their solutions and their checks have one source, the notebooks in ``notebooks/``,
marked with nbgrader's cell metadata (the Jupyter convention for assignments):

- a *solution* cell (``nbgrader.solution``): in the student copy its ``### BEGIN SOLUTION`` ...
  ``### END SOLUTION`` region becomes ``raise NotImplementedError()`` (the function's signature and
  docstring stay); a solution cell without a region becomes the stub as a whole (a markdown
  answer becomes "YOUR ANSWER HERE");
- a *check* cell (``nbgrader.grade``, locked): an autograded test, kept as it is; it calls
  :mod:`geolab.course.checks`, which says what is wrong with the learner's code.

This script is a thin wrapper around nbgrader's ``generate_assignment`` (run in a temporary
course folder, assignment ``course``): it copies the numbered notebooks in, releases them, and
un-collapses the stubs (the teacher's copy collapses solution cells so that they stay out of
sight in JupyterLab while nbval still runs them). ``nbgrader autograde`` grades a filled-in copy
against the same checks (``tests/test_student_copy.py`` does it for a right and a wrong answer).

Usage: ``python scripts/make_student_copy.py [--out student/]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "course"


def nbgrader_api(course_root: Path, **config: dict) -> object:
    """nbgrader's Python API over the course folder ``course_root`` (gradebook inside it).

    ``config`` adds traitlets sections, e.g. ``Execute={"timeout": 120}``.
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    # nbgrader's gradebook runs the `alembic` command, installed beside this interpreter: a venv's python
    # run without activating the venv (as `make test` does) has it off PATH
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    c = Config()
    c.CourseDirectory.root = str(course_root)
    c.CourseDirectory.course_id = ASSIGNMENT
    for section, values in config.items():
        c[section].update(values)
    return NbGraderAPI(config=c)


def uncollapse(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with its stubs in sight (solution cells are collapsed in the teacher's copy)."""
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.metadata.get("jupyter", {}).pop("source_hidden", None)
            if cell.metadata.get("jupyter") == {}:
                del cell.metadata["jupyter"]
    return nb


def release(notebooks: list[Path], out: Path, course_root: Path | None = None) -> list[Path]:
    """Release ``notebooks`` with nbgrader's ``generate_assignment`` into ``out``; the written paths.

    Args:
        notebooks: the teacher's notebooks.
        out: folder for the student copies.
        course_root: nbgrader's course folder (``source/``, ``release/``, the gradebook); a
            temporary one when None. Keep it to ``autograde`` submissions later.

    Raises:
        RuntimeError: nbgrader refused the notebooks (its log says why: e.g. a solution region in a
            cell not marked as a solution, or two cells with one ``grade_id``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(course_root or tmp)
        source = root / "source" / ASSIGNMENT
        source.mkdir(parents=True, exist_ok=True)
        for path in notebooks:
            shutil.copy(path, source / path.name)
        result = nbgrader_api(root).generate_assignment(ASSIGNMENT, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.get('error', '')}\n"
                               f"{result.get('log', '')}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for path in notebooks:
            nb = uncollapse(nbformat.read(root / "release" / ASSIGNMENT / path.name, as_version=4))
            nbformat.write(nb, out / path.name)
            written.append(out / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "student")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    args = ap.parse_args(argv)
    for path in release(sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb")), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
