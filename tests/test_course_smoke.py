"""``geolab course run --profile smoke`` over the real course notebooks: the whole batch path
(papermill, parameter injection, records, results.json, report) on the actual course.

Skipped, with the reason, while ``notebooks/`` holds no numbered notebook besides 00_welcome.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geolab import cli, course, paths

pytestmark = pytest.mark.slow


def _course_notebooks() -> list[Path]:
    try:
        found = course.discover_notebooks(paths.notebooks_dir())
    except course.CourseError:
        return []
    return [p for p in found if p.stem != "00_welcome"]


needs_course = pytest.mark.skipif(
    not _course_notebooks(),
    reason=f"{paths.notebooks_dir()} has no numbered course notebooks besides 00_welcome yet",
)


@needs_course
def test_profiles_name_only_existing_notebooks() -> None:
    """A per-notebook section of a shipped profile names a real notebook (a renamed notebook
    would otherwise silently lose its overrides)."""
    from geolab.config import PROFILES

    stems = {p.stem for p in course.discover_notebooks(paths.notebooks_dir())}
    for name, prof in PROFILES.items():
        missing = sorted(set(prof.get("notebooks", {})) - stems)
        assert not missing, f"profile {name!r} has sections for notebooks that do not exist: {missing}"


@needs_course
def test_smoke_profile_runs_the_whole_course(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every course notebook executes under the smoke profile; results.json matches its schema,
    every notebook is ok, records are labelled geoworld, and the report carries the
    simulation banner."""
    try:
        course.check_kernel(course.DEFAULT_KERNEL)
    except course.CourseError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "smoke"
    rc = cli.main(["course", "run", "--profile", "smoke", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    results = json.loads((out / "results.json").read_text())
    course.validate_results(results)
    assert {nb["notebook"]: nb["status"] for nb in results["notebooks"]} == {
        p.stem: "ok" for p in course.discover_notebooks(paths.notebooks_dir())
    }
    assert results["records"], "no notebook reported a result with geolab.course.record_result"
    assert {r["data"] for r in results["records"]} == {"geoworld"}
    assert "**Simulation.**" in (out / "report.md").read_text()
    assert (out / "report.html").is_file()
