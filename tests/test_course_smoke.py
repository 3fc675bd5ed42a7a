"""``geolab course run --profile smoke`` over the real course notebooks: the whole batch path
(papermill, parameter injection, records, results.json, report) on the actual course.

Skipped, with the reason, while ``notebooks/`` holds no numbered notebook besides 00_welcome.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
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


#: The largest executed notebook the course may write (maps, figures and widget state included):
#: a notebook is opened in a browser, diffed and downloaded whole.
MAX_NOTEBOOK_BYTES = 2_000_000
#: The kernel the smoke course runs in (``GEOLAB_TEST_KERNEL`` picks another, e.g. a worktree's own).
KERNEL = os.environ.get("GEOLAB_TEST_KERNEL", course.DEFAULT_KERNEL)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """The whole course under the smoke profile, run once for this module: (run folder, exit code, output)."""
    try:
        course.check_kernel(KERNEL)
    except course.CourseError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("course") / "smoke"
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
        # the kernels draw figures inline, as in `make course` (conftest's Agg would keep every
        # figure out of the executed notebooks, and out of their size)
        mp.delenv("MPLBACKEND", raising=False)
        rc = cli.main(["course", "run", "--profile", "smoke", "--out", str(out), "--no-progress", "--kernel", KERNEL])
    return out, rc, buf.getvalue()


@needs_course
def test_smoke_profile_runs_the_whole_course(smoke_run: tuple[Path, int, str]) -> None:
    """Every course notebook executes under the smoke profile; results.json matches its schema,
    every notebook is ok, records are labelled geoworld, and the report carries the
    simulation banner."""
    out, rc, text = smoke_run
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


@needs_course
def test_every_executed_notebook_is_at_most_2_mb(smoke_run: tuple[Path, int, str]) -> None:
    """Each executed notebook of the course is at most 2 MB, its interactive maps included.

    Not vacuous: every course notebook was executed and written, the notebooks that draw a map
    (``location_map``) hold one in their outputs (the map's marker script), and figures are there
    (inline PNGs, as in ``make course``).
    """
    out, rc, text = smoke_run
    assert rc == 0, text
    expected = [p.name for p in course.discover_notebooks(paths.notebooks_dir())]
    sizes = {p.name: p.stat().st_size for p in sorted((out / "notebooks").glob("*.ipynb"))}
    assert sorted(sizes) == expected and len(expected) >= 9, sorted(sizes)
    with_maps = [name for name in expected if "location_map(" in (paths.notebooks_dir() / name).read_text()]
    assert with_maps, "no course notebook draws a map"
    for name in with_maps:
        assert "L.circleMarker(" in (out / "notebooks" / name).read_text(), f"{name}: no map in its outputs"
    with_figures = [name for name in expected if '"image/png"' in (out / "notebooks" / name).read_text()]
    assert len(with_figures) >= len(expected) // 2, f"figures are missing from the outputs (only in {with_figures})"
    table = ", ".join(f"{name[:2]} {size / 1e6:.2f} MB" for name, size in sizes.items())
    print(f"executed notebook sizes (smoke profile): {table}")
    too_big = {name: size for name, size in sizes.items() if size > MAX_NOTEBOOK_BYTES}
    assert not too_big, f"executed notebooks over {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB: {too_big} (all: {table})"


@needs_course
def test_records_carry_label_fractions_and_fine_tuning(smoke_run: tuple[Path, int, str]) -> None:
    """Issue 25 item 3: the course's records carry ``label_fraction`` below 1 for every self-supervised method and
    supervised (and random init), each with a probe score and its hits per test location, and ``finetune_top1`` (a
    fraction, with its hits) for each of them; the report shows both sections."""
    from geolab.config import METHOD_PARTS, RANDOM_INIT

    out, rc, text = smoke_run
    assert rc == 0, text
    records = json.loads((out / "results.json").read_text())["records"]
    main = {r["method"] for r in records if r.get("experiment", "main") == "main"}
    ssl = {m for m, parts in METHOD_PARTS.items() if parts.contrastive}
    assert ssl | {"supervised", RANDOM_INIT} <= main, sorted(main)
    below = [r for r in records if r.get("label_fraction") is not None and r["label_fraction"] < 1]
    assert {r["method"] for r in below} >= ssl | {"supervised", RANDOM_INIT}
    assert {r["label_fraction"] for r in below} == {0.01, 0.1}
    for r in below:
        assert 0 <= r["probe_top1"] <= 1 and len(r["probe_hits"]) == len(r["test_location_images"]), r["method"]
    labelled = {(r["method"], r["seed"], r["label_fraction"]): r["labelled_images"] for r in records
                if r.get("experiment") == "label-efficiency"}
    for (method, seed, f), n in labelled.items():  # a smaller fraction never uses more labels
        assert 0 < n <= min(m for (a, b, g), m in labelled.items() if (a, b) == (method, seed) and g >= f)
    tuned = [r for r in records if r.get("finetune_top1") is not None]
    assert {r["method"] for r in tuned} >= ssl | {"supervised", RANDOM_INIT}
    assert all(0 <= r["finetune_top1"] <= 1 and r["finetune_steps"] >= 1 and r["label_fraction"] == 1 for r in tuned)
    report = (out / "report.md").read_text()
    assert "## Label efficiency" in report and "## Frozen and fine-tuned" in report
    assert (out / "figures" / "label_efficiency_08_results.png").is_file()
