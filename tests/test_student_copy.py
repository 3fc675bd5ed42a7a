"""The student copy comes from nbgrader: releasing the course replaces every solution by a stub and
keeps every check; nbgrader's autograder, running those checks, gives a right submission the points
and a wrong one none, with the check's explanation in the graded notebook."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_student_copy", ROOT / "scripts" / "make_student_copy.py")
msc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(msc)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = os.environ.get("GEOLAB_TEST_KERNEL", "geolab")
REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)\n *### END SOLUTION", re.S)
STUB = "# YOUR CODE HERE\n    raise NotImplementedError()"


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    msc.release(NOTEBOOKS, out)
    return out


def test_release_writes_every_notebook_with_stubs_in_place_of_solutions(released):
    assert sorted(p.name for p in released.iterdir()) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        teacher = nbformat.read(path, as_version=4)
        student = nbformat.read(released / path.name, as_version=4)
        assert len(student.cells) == len(teacher.cells), path.name
        for t, s in zip(teacher.cells, student.cells):
            meta = _nbgrader(t)
            if meta.get("solution"):
                assert "BEGIN SOLUTION" not in s.source
                for region in REGION.findall(t.source):
                    assert region.strip() not in s.source, f"{path.name}: a solution leaked: {region[:60]!r}"
                if t.cell_type == "code":
                    assert "raise NotImplementedError()" in s.source
                    assert not s.metadata.get("jupyter", {}).get("source_hidden"), "stubs are in sight"
                else:
                    assert s.source == "YOUR ANSWER HERE"
            else:
                assert s.source == t.source, f"{path.name}: a cell that is no solution changed"
            if t.cell_type == "code":
                assert s.outputs == [], "the release has no outputs"


def test_method_notebooks_release_each_implementation_stub_with_its_check(released):
    """02-04: the learner's function keeps its signature and docstring; its check follows it, locked."""
    for name in ("02_supervised_gap", "03_temporal_positives", "04_geo_pretext"):
        cells = nbformat.read(released / f"{name}.ipynb", as_version=4).cells
        stubs = [i for i, c in enumerate(cells) if c.cell_type == "code" and STUB in c.source]
        assert len(stubs) >= 2, name
        for i in stubs:
            assert re.search(r"^def \w+\(", cells[i].source, re.M) and '"""' in cells[i].source
            check = cells[i + 1]
            assert _nbgrader(check).get("grade") and _nbgrader(check).get("locked")
            assert "checks.check_" in check.source


def _fill(source: str, body: str) -> str:
    return source.replace(STUB, body.strip("\n").lstrip())


@pytest.mark.filterwarnings("ignore:Object of type:Warning")  # nbgrader's own gradebook session
def test_autograde_gives_a_right_submission_the_points_and_a_wrong_one_none(tmp_path):
    """Notebook 02's three implementation exercises, released by nbgrader, filled right by one
    student and with a step that never enqueues by another, graded by nbgrader's autograder."""
    teacher = nbformat.read(ROOT / "notebooks" / "02_supervised_gap.ipynb", as_version=4)
    ids = ("02-info-nce", "02-momentum-update", "02-training-step")
    picked = [c for c in teacher.cells if _nbgrader(c).get("grade_id", "").removesuffix("-check") in ids]
    assert len(picked) == 6
    setup = nbformat.v4.new_code_cell("import torch\nimport torch.nn.functional as F\nfrom geolab.course import checks")
    nb = nbformat.v4.new_notebook(cells=[setup, *picked], metadata=teacher.metadata)
    nb.metadata["kernelspec"] = {**nb.metadata["kernelspec"], "name": KERNEL}
    root = tmp_path / "course"
    (root / "source" / msc.ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nb, root / "source" / msc.ASSIGNMENT / "ex.ipynb")
    api = msc.nbgrader_api(root, Execute={"timeout": 300})
    assert api.generate_assignment(msc.ASSIGNMENT)["success"]
    release = nbformat.read(root / "release" / msc.ASSIGNMENT / "ex.ipynb", as_version=4)
    bodies = {_nbgrader(c)["grade_id"]: REGION.search(c.source).group(1) for c in picked if REGION.search(c.source)}
    wrong = {**bodies, "02-training-step": bodies["02-training-step"].split("    with torch.no_grad():  # 5.")[0]
             + "    return loss.item()"}
    for student, answers in (("right", bodies), ("wrong", wrong)):
        filled = nbformat.from_dict(release)
        for cell in filled.cells:
            if _nbgrader(cell).get("grade_id") in answers:
                cell.source = _fill(cell.source, answers[_nbgrader(cell)["grade_id"]])
        (root / "submitted" / student / msc.ASSIGNMENT).mkdir(parents=True)
        nbformat.write(filled, root / "submitted" / student / msc.ASSIGNMENT / "ex.ipynb")
        result = api.autograde(msc.ASSIGNMENT, student)
        assert result["success"], result.get("log")
    with api.gradebook as gb:
        def score(student: str, check: str) -> float:
            return gb.find_grade(f"{check}-check", "ex", msc.ASSIGNMENT, student).score

        assert [score("right", c) for c in ids] == [1, 1, 1]
        assert [score("wrong", c) for c in ids] == [1, 1, 0]  # the checks tell the two apart, exercise by exercise
    graded = nbformat.read(root / "autograded" / "wrong" / msc.ASSIGNMENT / "ex.ipynb", as_version=4)
    errors = [o for c in graded.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "CheckFailed"
    assert "queue['ptr'] is 16, geolab's 0" in errors[0].evalue  # and the learner reads what to fix
