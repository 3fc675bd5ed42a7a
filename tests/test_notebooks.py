"""Every course notebook keeps the course's skeleton, so learners always find the same parts
and papermill/nbval can run it: title and "In this lab you will", the time it takes, Setup,
one `parameters` cell right after Setup, Summary, Exercises, References; short cells; no
machine paths or stray outputs in git."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_LINES = 30  # "no cell over a screen"
MACHINE_PATH = re.compile(r"/(work|root|home|Users|tmp)/[A-Za-z0-9_.-]+")


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no numbered notebooks"


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def nb(request):
    return nbformat.read(request.param, as_version=4)


def _headings(nb) -> list[str]:
    return [
        line.lstrip("#").strip()
        for c in nb.cells
        if c.cell_type == "markdown"
        for line in c.source.splitlines()
        if line.startswith("#")
    ]


def test_opens_with_title_goal_and_time(nb):
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "In this lab you will" in first.source
    assert re.search(r"\*Time:\*", first.source), "the first cell says how long the notebook takes"


def test_has_the_course_sections_in_order(nb):
    heads = _headings(nb)
    wanted = ["Setup", "Parameters", "Summary", "Exercises", "References"]
    positions = [next((i for i, h in enumerate(heads) if h.startswith(w)), None) for w in wanted]
    assert None not in positions, f"missing sections: {[w for w, p in zip(wanted, positions) if p is None]}"
    assert positions == sorted(positions), f"sections out of order: {heads}"


def test_one_parameters_cell_right_after_setup(nb):
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    code_before = [c for c in nb.cells[: tagged[0]] if c.cell_type == "code"]
    assert len(code_before) == 1, "the parameters cell is the first code cell after the Setup cell"
    assert "results_path" in nb.cells[tagged[0]].source, "every notebook accepts results_path"


def test_code_cells_fit_on_a_screen(nb):
    long = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CODE_LINES]
    assert not long, f"cells longer than {MAX_CODE_LINES} lines belong in geolab: {long}"


def test_only_checked_cells_keep_outputs_and_no_machine_paths(nb):
    """Cells whose output nbval compares carry the ``nbval-check-output`` tag in their metadata;
    no nbval marker shows in the source students read; other cells are stored without outputs."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        assert "NBVAL_" not in c.source, f"use the nbval-check-output cell tag, not a comment: {c.source[:60]!r}"
        if "nbval-check-output" not in c.metadata.get("tags", []):
            assert not c.outputs, f"run scripts/nb_strip.py: unchecked cell has outputs: {c.source[:60]!r}"
        text = nbformat.writes(nbformat.v4.new_notebook(cells=[c]))
        assert not MACHINE_PATH.search(text), f"machine path in a stored output: {c.source[:60]!r}"


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def test_solutions_are_nbgrader_solution_cells(nb):
    """Solutions live in the same notebook, in nbgrader solution cells (scripts/make_student_copy.py
    releases the notebooks with nbgrader, which replaces them by stubs): one marker, no `solution` tag."""
    for c in nb.cells:
        assert "solution" not in c.metadata.get("tags", []), f"mark solutions with nbgrader metadata: {c.source[:60]!r}"
        first = c.source.lstrip("# *").lower()
        if first.startswith("solution") or "### BEGIN SOLUTION" in c.source:
            assert _nbgrader(c).get("solution") is True, c.source[:60]
        if _nbgrader(c).get("solution") and c.cell_type == "markdown":
            assert _nbgrader(c).get("grade") is True, "nbgrader grades a written answer by hand: grade true, points"


def test_solution_code_is_collapsed_in_the_lab(nb):
    """A student reading the lab sees each exercise, not its solution: solution code cells are
    collapsed (``jupyter.source_hidden``) and still run under nbval."""
    for c in nb.cells:
        if c.cell_type == "code" and _nbgrader(c).get("solution"):
            assert c.metadata.get("jupyter", {}).get("source_hidden") is True, c.source[:60]


@pytest.mark.parametrize("name", ["02_supervised_gap", "03_temporal_positives", "04_geo_pretext"])
def test_method_notebooks_have_implementation_exercises_checked_against_geolab(name):
    """02, 03 and 04 each ask the student to write at least two parts of the method (02: InfoNCE, the
    momentum update, the training step; 03: two temporal positives; 04: the geo step, spherical
    K-means' assignment): a function whose body is an nbgrader solution region, followed by a locked,
    autograded check cell that compares it with geolab's own code (geolab.course.checks)."""
    nb = nbformat.read(NOTEBOOKS[0].parent / f"{name}.ipynb", as_version=4)
    exercises = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.startswith("# Implementation exercise")]
    assert len(exercises) >= 2, f"{name}: {len(exercises)} implementation exercise(s)"
    for i in exercises:
        assert "### BEGIN SOLUTION" in nb.cells[i].source and _nbgrader(nb.cells[i]).get("solution") is True
        assert re.search(r"^def \w+\(", nb.cells[i].source, re.M), "the stub keeps the function's signature"
        check = nb.cells[i + 1]
        assert _nbgrader(check).get("grade") is True and _nbgrader(check).get("locked") is True, check.source[:60]
        assert "checks.check_" in check.source, "the check compares the learner's code with geolab's"
    ids = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c)]
    assert len(ids) == len(set(ids)), "nbgrader needs one grade_id per cell"


@pytest.mark.parametrize("name", ["02_supervised_gap", "03_temporal_positives", "04_geo_pretext"])
def test_method_notebooks_train_with_the_learners_step_for_a_parameter_number_of_steps(name):
    """The in-notebook training's length is the notebook parameter `scratch_steps` (a quick default for
    nbval; the cpu profile of `make course` sets it for each method notebook)."""
    from geolab.config import PROFILES  # only this test needs torch's import time

    nb = nbformat.read(NOTEBOOKS[0].parent / f"{name}.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    default = int(re.search(r"^scratch_steps = (\d+)", params.source, re.M).group(1))
    assert 0 < default <= 10, "the quick run trains a few steps"
    assert PROFILES["cpu"]["notebooks"][name]["scratch_steps"] > default
    assert any("scratch_steps" in c.source and "LiveLoss" in c.source for c in nb.cells if c.cell_type == "code")
