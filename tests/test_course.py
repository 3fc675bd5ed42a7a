"""The course batch runner (geolab.course, ``geolab course run``) on tiny throwaway notebooks
written into tmp_path, so these tests do not depend on the real course notebooks.

Papermill executions are the slow part (a few seconds each); the two integration tests use
seven in total.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from geolab import cli, course

KERNEL = course.DEFAULT_KERNEL


def write_nb(path: Path, params: str, *cells: str) -> Path:
    """A course-shaped notebook: title, setup, a ``parameters`` cell, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (geolab)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {path.stem}"),
        nbformat.v4.new_code_cell("from geolab.course import record_result"),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        *[nbformat.v4.new_code_cell(c) for c in cells],
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def record_cell(method: str, seed: str = "0", top1: str = "0.5") -> str:
    return (
        f"record_result(results_path, dict(method={method!r}, data=data, arch='resnet18', image_size=32, "
        f"epochs=1, seed={seed}, probe_top1={top1}, probe_f1={top1}, knn_top1=0.25))"
    )


def injected_source(executed: Path) -> str:
    nb = nbformat.read(str(executed), as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0].source


@pytest.fixture(scope="module", autouse=True)
def _kernel_installed():
    try:
        course.check_kernel(KERNEL)
    except course.CourseError as exc:
        pytest.skip(f"needs the Jupyter kernel 'geolab' (make setup): {exc}")


# --------------------------------------------------------------------------- integration
def test_run_injects_declared_parameters_writes_results_report_and_skips_or_reruns(tmp_path: Path) -> None:
    """A run of two notebooks writes the executed notebooks, a schema-valid results.json and the
    report (banner, paper numbers, plot); each notebook gets only the profile keys its
    parameters cell declares; an identical rerun executes nothing; a changed parameter reruns
    only the notebook that declares it."""
    nbs = tmp_path / "nbs"
    write_nb(
        nbs / "01_train.ipynb",
        'data = "geoworld"\nepochs = 5\nseeds = [0]\nresults_path = ""',
        "assert 'image_size' not in globals(), 'image_size was injected but not declared'",
        "for s in seeds:\n    " + record_cell("moco-tp", "s", "0.5 + 0.2 * s"),
    )
    write_nb(
        nbs / "02_eval.ipynb",
        'data = "geoworld"\nimage_size = 16\nresults_path = ""',
        "assert 'epochs' not in globals() and 'seeds' not in globals()",
        record_cell("moco"),
        "print('image size', image_size)",
    )
    (nbs / "notes.ipynb").write_text((nbs / "02_eval.ipynb").read_text())  # not a course notebook
    profile = {
        "common": {"data": "geoworld", "epochs": 2, "seeds": [0, 1], "image_size": 8, "unused_knob": 3},
        "notebooks": {"02_eval": {"image_size": 12}},
    }
    out = tmp_path / "run"
    logs: list[str] = []
    run = course.run_course(profile, out, notebooks_dir=nbs, kernel_name=KERNEL, log=logs.append)

    assert run.ok, "\n".join(logs)
    assert [(o.notebook, o.status) for o in run.outcomes] == [("01_train", "ok"), ("02_eval", "ok")]
    assert any("unused_knob" in w for w in run.warnings)
    assert any("unused_knob" in line for line in logs)
    inj1 = injected_source(out / "notebooks" / "01_train.ipynb")
    inj2 = injected_source(out / "notebooks" / "02_eval.ipynb")
    assert "epochs = 2" in inj1 and "seeds = [0, 1]" in inj1 and "image_size" not in inj1
    assert "image_size = 12" in inj2 and "epochs" not in inj2 and "unused_knob" not in inj1 + inj2
    assert f"results_path = \"{out / 'records' / '01_train.jsonl'}\"" in inj1

    results = json.loads((out / "results.json").read_text())
    course.validate_results(results)
    assert [(r["notebook"], r["method"], r["seed"]) for r in results["records"]] == [
        ("01_train", "moco-tp", 0),
        ("01_train", "moco-tp", 1),
        ("02_eval", "moco", 0),
    ]
    assert results["simulation"] is True
    assert [nb["wall_time_s"] > 0 for nb in results["notebooks"]] == [True, True]
    md = (out / "report.md").read_text()
    assert "**Simulation.**" in md and "not the paper's claims" in md
    assert "60.00 ± 14.14" in md  # moco-tp: seeds at 0.5 and 0.7
    assert "68.32" in md and "60.69" in md  # the paper's linear-probe numbers beside ours
    figs = sorted((out / "figures").glob("*.png"))
    assert len(figs) == 2 and all(f.stat().st_size > 1000 for f in figs)
    assert f"]({figs[0].relative_to(out)})" in md
    page = (out / "report.html").read_text()
    assert "<table>" in page and "<blockquote>" in page and "Simulation." in page

    # Same source and parameters: nothing runs, and the log says why.
    logs.clear()
    run2 = course.run_course(profile, out, notebooks_dir=nbs, kernel_name=KERNEL, log=logs.append)
    assert [o.status for o in run2.outcomes] == ["skipped", "skipped"]
    assert sum("skipped, already succeeded with the same source and parameters" in line for line in logs) == 2
    assert len(run2.results["records"]) == 3

    # A changed parameter that only 02 declares reruns 02 alone.
    logs.clear()
    run3 = course.run_course(
        profile, out, notebooks_dir=nbs, kernel_name=KERNEL, overrides={"image_size": 20}, log=logs.append
    )
    assert [o.status for o in run3.outcomes] == ["skipped", "ok"]
    assert any("parameters changed: image_size 12 -> 20" in line for line in logs)
    assert "image_size = 20" in injected_source(out / "notebooks" / "02_eval.ipynb")
    assert len(run3.results["records"]) == 3  # 02's old records were replaced, not appended


def test_failing_notebook_is_named_earlier_outputs_kept_and_rerun_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A notebook that raises: the command names the notebook, the cell (source index, In [n],
    first line) and the exception, exits non-zero, keeps the earlier notebook's outputs and does
    not run the later one. After the fix, rerunning skips what succeeded and continues from the
    fixed notebook."""
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_ok.ipynb", 'data = "geoworld"\nresults_path = ""', record_cell("moco"))
    bad = write_nb(
        nbs / "02_bad.ipynb",
        'data = "geoworld"\nresults_path = ""',
        "k = 1",
        "# build the geo clusters\nif k < 2:\n    raise ValueError(f'need at least 2 geo clusters, got {k}')",
        record_cell("moco-geo"),
    )
    write_nb(nbs / "03_after.ipynb", 'data = "geoworld"\nresults_path = ""', record_cell("moco-tp-geo"))
    out = tmp_path / "run"
    argv = ["course", "run", "--profile", "smoke", "--notebooks-dir", str(nbs), "--out", str(out), "--no-progress"]

    assert cli.main(argv) == 1
    text = capsys.readouterr().out
    # cells: title, setup, parameters, k = 1, the raising cell -> source index 4, In [5]
    # (papermill's injected cell is In [3] and is not counted in the index)
    assert "02_bad.ipynb failed in cell 4 (In [5]): `# build the geo clusters`" in text
    assert "ValueError: need at least 2 geo clusters, got 1" in text
    assert "[3/3] 03_after" not in text
    state = json.loads((out / "state" / "02_bad.json").read_text())
    assert state["status"] == "failed" and state["error"]["cell_index"] == 4
    executed_ok = out / "notebooks" / "01_ok.ipynb"
    first = nbformat.read(str(executed_ok), as_version=4)
    assert any(c.get("outputs") is not None and c.get("execution_count") for c in first.cells if c.cell_type == "code")
    ok_mtime = executed_ok.stat().st_mtime_ns
    assert (out / "notebooks" / "02_bad.ipynb").is_file()  # kept, with the traceback
    results = json.loads((out / "results.json").read_text())
    course.validate_results(results)
    assert [nb["status"] for nb in results["notebooks"]] == ["ok", "failed", "not-run"]
    assert [r["notebook"] for r in results["records"]] == ["01_ok"]
    assert "02_bad failed" in (out / "report.md").read_text()

    # Fix the notebook and rerun the same command.
    nb = nbformat.read(str(bad), as_version=4)
    nb.cells[3].source = "k = 3"
    nbformat.write(nb, str(bad))
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "[1/3] 01_ok: skipped, already succeeded with the same source and parameters" in text
    assert "[2/3] 02_bad: running (the notebook changed since its last successful run" not in text
    assert "[2/3] 02_bad: running (it failed last time" in text
    assert "[3/3] 03_after: running (first run" in text
    assert executed_ok.stat().st_mtime_ns == ok_mtime
    results = json.loads((out / "results.json").read_text())
    course.validate_results(results)
    assert [r["method"] for r in results["records"]] == ["moco", "moco-geo", "moco-tp-geo"]
    assert [nb["status"] for nb in results["notebooks"]] == ["skipped", "ok", "ok"]


def _cmdline(p) -> str:  # noqa: ANN001 - a psutil.Process
    try:
        return " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone meanwhile
        return "?"


def test_killed_run_leaves_no_process_behind(tmp_path: Path) -> None:
    """Issue 23: `kill -9` of `geolab course run` left the training workers a notebook had started
    (and multiprocessing's resource tracker) running, reparented to init, ~1 GB each. A notebook
    starts two workers with geolab's own pool (geolab.processes.process_pool, what run_experiments
    and the geoworld renderer use) that would sleep for minutes; the runner is SIGKILLed; within
    seconds none of its descendants (kernel, workers, resource tracker) may be left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    nbs = tmp_path / "nbs"
    ready = tmp_path / "ready"
    write_nb(nbs / "01_pool.ipynb", 'data = "geoworld"\nresults_path = ""',
             "import time\nfrom pathlib import Path\nfrom geolab.processes import process_pool",
             "pool = process_pool(2)\nlist(pool.map(time.sleep, [0.5, 0.5]))  # both workers up and tied to the kernel\n"
             f"Path({str(ready)!r}).touch()\n[f.result() for f in [pool.submit(time.sleep, 300) for _ in range(2)]]")
    cmd = [sys.executable, "-m", "geolab.cli", "course", "run", "--profile", "smoke", "--notebooks-dir", str(nbs),
           "--out", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    runner = psutil.Process(proc.pid)
    tree: list = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not ready.exists():
            assert proc.poll() is None, "the run ended before its workers started"
            time.sleep(0.2)
        assert ready.exists(), "the notebook's workers did not start within 90 s"
        tree = runner.children(recursive=True)
        workers = [p for p in tree if "multiprocessing" in _cmdline(p)]
        assert len(tree) >= 4 and len(workers) >= 3, [_cmdline(p) for p in tree]  # kernel, 2 workers, tracker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        def alive() -> list:
            out = []
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # orphans may wait unreaped
                        out.append(p)
            return out

        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [(p.pid, _cmdline(p)[:80]) for p in alive()]
        assert not left, f"left running after the runner was killed: {left}"
    finally:
        for p in [runner, *tree]:
            with contextlib.suppress(psutil.Error):
                p.kill()


# --------------------------------------------------------------------------- no papermill
def _results(records: list[dict]) -> dict:
    return {
        "schema_version": 1,
        "geolab_version": "0",
        "created": "2026-01-01T00:00:00+00:00",
        "profile": "smoke",
        "data": "geoworld",
        "kernel": "geolab",
        "simulation": True,
        "notebooks": [{"notebook": "02_gap", "status": "ok"}],
        "records": records,
    }


GOOD = dict(notebook="02_gap", method="moco", data="geoworld", arch="resnet18", image_size=32, epochs=1, seed=0, probe_top1=0.61)


def test_validate_results_rejects_bad_records_with_a_clear_message() -> None:
    """A percentage where a fraction belongs, a missing key or an unknown data tier is rejected,
    naming the record, its notebook and the key, and saying what to do."""
    course.validate_results(_results([GOOD]))
    with pytest.raises(course.ResultsValidationError) as e:
        course.validate_results(_results([GOOD, {**GOOD, "probe_top1": 60.69}]))
    msg = str(e.value)
    assert "record 1 (notebook 02_gap)" in msg and "'probe_top1'" in msg and "divide percentages by 100" in msg
    bad = dict(GOOD)
    del bad["seed"]
    with pytest.raises(course.ResultsValidationError, match=r"record 0 .*'seed' is a required property"):
        course.validate_results(_results([bad]))
    with pytest.raises(course.ResultsValidationError, match="data tiers: geoworld, fmow-mini"):
        course.validate_results(_results([{**GOOD, "data": "imagenet"}]))
    with pytest.raises(course.ResultsValidationError, match="schema_version"):
        course.validate_results({**_results([GOOD]), "schema_version": 2})


def test_record_result_checks_converts_and_appends(tmp_path: Path) -> None:
    """record_result checks the record even interactively (no path), converts numpy scalars,
    refuses NaN, and in a run appends one JSON line per call with the notebook's name."""
    rec = {k: v for k, v in GOOD.items() if k != "notebook"}
    rec["probe_top1"] = np.float32(0.5)
    out = course.record_result(None, rec)
    assert out["probe_top1"] == 0.5 and type(out["probe_top1"]) is float and "notebook" not in out
    with pytest.raises(course.ResultsValidationError, match="probe_top1"):
        course.record_result("", {**rec, "probe_top1": 61.2})
    with pytest.raises(course.ResultsValidationError, match="NaN"):
        course.record_result(None, {**rec, "knn_top1": float("nan")})
    path = tmp_path / "records" / "03_tp.jsonl"
    course.record_result(path, rec)
    course.record_result(str(path), {**rec, "seed": 1, "extra": {"geo_k": 10}})
    lines = course.read_records(path)
    assert [(r["notebook"], r["seed"]) for r in lines] == [("03_tp", 0), ("03_tp", 1)]
    assert lines[1]["extra"] == {"geo_k": 10}


def test_summary_and_report_without_running(tmp_path: Path) -> None:
    """Mean and sample std over seeds per group, variants kept apart, the paper's numbers and
    the simulation banner in the report."""
    recs = [
        {**GOOD, "seed": 0, "probe_top1": 0.5},
        {**GOOD, "seed": 1, "probe_top1": 0.7},
        {**GOOD, "method": "moco-tp", "variant": "K=10", "probe_top1": 0.9},
        {**GOOD, "experiment": "fine-tune", "method": "moco-tp", "label_fraction": 1.0, "finetune_top1": 0.8},
    ]
    rows = course.summarize(recs)
    assert [(r["method"], r["variant"], r["seeds"]) for r in rows][:2] == [("moco", "", [0, 1]), ("moco-tp", "K=10", [0])]
    assert rows[0]["probe_top1_mean"] == pytest.approx(0.6)
    assert rows[0]["probe_top1_std"] == pytest.approx(0.1414, abs=1e-4)
    assert rows[1]["probe_top1_std"] is None
    md_path, html_path = course.write_report(tmp_path, _results(recs))
    md = md_path.read_text()
    assert "| 60.00 ± 14.14 |" in md and "| 90.00 |" in md and "moco-tp (K=10)" in md
    assert "## Frozen and fine-tuned" in md and "71.55" in md  # the fine-tune record beside the paper's fine-tuned column
    assert md.index("**Simulation.**") < md.index("## Notebooks")
    fmow = {**_results([{**GOOD, "data": "fmow"}]), "data": "fmow", "simulation": False}
    assert "**Simulation.**" not in course.report_markdown(fmow)


def test_discover_notebooks_and_only(tmp_path: Path) -> None:
    """Only files named NN_name.ipynb count, in order; --only takes names, file names or numbers
    and names the available notebooks when one does not match."""
    for name in ("10_last", "02_b", "01_a"):
        write_nb(tmp_path / f"{name}.ipynb", "x = 1")
    (tmp_path / "README.ipynb").write_text("{}")
    (tmp_path / "1_short.ipynb").write_text("{}")
    assert [p.stem for p in course.discover_notebooks(tmp_path)] == ["01_a", "02_b", "10_last"]
    assert [p.stem for p in course.discover_notebooks(tmp_path, ["10", "01_a.ipynb"])] == ["01_a", "10_last"]
    with pytest.raises(course.CourseError, match="Available: 01_a, 02_b, 10_last"):
        course.discover_notebooks(tmp_path, ["03"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(course.CourseError, match="No course notebooks"):
        course.discover_notebooks(tmp_path / "empty")


def test_setup_errors_stop_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown profile or tier, a real tier without a manifest, a missing kernel and a notebook
    without a parameters cell fail with what to do, before any notebook executes."""
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_a.ipynb", "x = 1")
    out = tmp_path / "run"
    with pytest.raises(course.CourseError, match="choose one of smoke, cpu, cpu-long, gpu, gpu-full"):
        course.run_course("tiny", out, notebooks_dir=nbs)
    with pytest.raises(course.CourseError, match="Unknown data tier 'mnist'"):
        course.run_course("smoke", out, data="mnist", notebooks_dir=nbs)
    with pytest.raises(course.CourseError, match="pass --manifest PATH"):
        course.run_course("gpu-full", out, notebooks_dir=nbs)
    with pytest.raises(course.CourseError, match="no fmow-mini manifest"):
        course.run_course("smoke", out, data="fmow-mini", notebooks_dir=nbs)
    monkeypatch.setattr(course.profiles, "DEFAULT_KERNEL", "geolab-test-missing")
    with pytest.raises(course.CourseError, match="make setup"):
        course.run_course("smoke", out, notebooks_dir=nbs, kernel_name="geolab-test-missing")
    monkeypatch.undo()
    nb = nbformat.read(str(nbs / "01_a.ipynb"), as_version=4)
    nb.cells[2].metadata["tags"] = []
    nbformat.write(nb, str(nbs / "01_a.ipynb"))
    with pytest.raises(course.CourseError, match="no cell tagged 'parameters'"):
        course.run_course("smoke", out, notebooks_dir=nbs)
    assert not (out / "notebooks").exists()
    with pytest.raises(course.CourseError, match="sets 'results_path'"):
        course.load_profile({"common": {"results_path": "x"}})


def test_run_out_that_is_a_file_or_not_a_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    """Issue 23: --out that is a file gave a raw "[Errno 17]"; --out the repository (or any folder
    whose notebooks/, report.md... are not a run's) would have its files replaced by the run's.
    Refused before anything runs, --force included (for course run it means "rerun notebooks");
    a folder of an earlier run (state/ or .lock) is still a run folder."""
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_a.ipynb", "x = 1")
    (tmp_path / "a-file").write_text("x")
    assert cli.main(["course", "run", "--profile", "smoke", "--notebooks-dir", str(nbs),
                     "--out", str(tmp_path / "a-file" / "run")]) == 2
    err = capsys.readouterr().err
    assert "a-file is a file, so the folder cannot be made" in err and "Errno" not in err
    with pytest.raises(NotADirectoryError, match="a-file is a file, not a folder"):
        course.run_course("smoke", tmp_path / "a-file", notebooks_dir=nbs)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own report\n")
    with pytest.raises(FileExistsError, match=r"not a folder made by geolab course run, but it holds .*report\.md"):
        course.run_course("smoke", mine, notebooks_dir=nbs, force=True)
    write_nb(tmp_path / "notebooks" / "01_a.ipynb", "x = 1")
    with pytest.raises(FileExistsError, match="would write over its input"):  # out/notebooks is the course's own
        course.run_course("smoke", tmp_path, notebooks_dir=tmp_path / "notebooks")
    with pytest.raises(FileExistsError, match="the input folder"):
        course.run_course("smoke", nbs, notebooks_dir=nbs)
    assert (mine / "report.md").read_text() == "my own report\n" and sorted(p.name for p in mine.iterdir()) == [
        "report.md"]
    (mine / "state").mkdir()  # an earlier run's folder: not refused (the missing kernel is the next check)
    with pytest.raises(course.CourseError, match="'geolab-test-missing' is not installed"):
        course.run_course("smoke", mine, notebooks_dir=nbs, kernel_name="geolab-test-missing")


def test_set_typos_and_wrong_types_are_errors_in_run_and_plan(tmp_path: Path) -> None:
    """--set keys no notebook declares (a typo) and values whose type does not fit the declared
    default are errors naming each problem, in `course plan` and before `course run` executes
    anything; None defaults take anything and null passes where a profile sets None."""
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_a.ipynb", 'data = "geoworld"\nepochs = 1\nlr = 0.1\nseeds = [0]\nflag = False\nanything = None')
    write_nb(nbs / "02_b.ipynb", 'data = "geoworld"\nmax_steps_per_epoch = 4')
    plan = course.describe_plan("smoke", notebooks_dir=nbs, only=["02"], overrides={"epochs": 3, "lr": 1,
                                "seeds": [1, 2], "flag": True, "anything": "x", "max_steps_per_epoch": None})
    assert "max_steps_per_epoch=None" in plan
    bad = {"epoch": 2, "epochs": "two", "seeds": [0, "a"], "flag": 1}
    for call in (lambda: course.describe_plan("smoke", notebooks_dir=nbs, overrides=bad),
                 lambda: course.run_course("smoke", tmp_path / "run", notebooks_dir=nbs, overrides=bad)):
        with pytest.raises(course.CourseError) as err:
            call()
        msg = str(err.value)
        assert "--set epoch: no notebook declares this parameter (did you mean epochs?)" in msg
        assert '--set epochs="two": epochs takes a whole number (declared `epochs = 1` in 01_a)' in msg
        assert "seeds takes a list of whole numbers" in msg and "flag takes true or false" in msg
    assert not (tmp_path / "run" / "notebooks").exists()


def test_values_are_checked_by_geolabs_own_rules_before_anything_runs(tmp_path: Path) -> None:
    """Issue 23: `--set seeds=[]`, `max_steps_per_epoch=-5`, `device=tpu`, a bad arch... were
    accepted and failed 10-35 s later inside a notebook as raw IndexError/KeyError, blamed on the
    notebook. Now every value a selected notebook would run with (its defaults, the profile, --set)
    is checked first by the rules of PretrainConfig (geolab pretrain's options) and, for
    notebook-only parameters, by geolab.course.profiles.NOTEBOOK_RULES: one line naming each
    parameter, its value and the rule, the notebook where only some are concerned; nothing runs."""
    nbs = tmp_path / "nbs"
    write_nb(nbs / "01_a.ipynb", 'data = "geoworld"\nepochs = 1\nwarmup_epochs = 0.0\nseeds = [0]\n'
             'max_steps_per_epoch = 4\ndevice = "cpu"\narch = "resnet18"')
    write_nb(nbs / "02_b.ipynb", 'data = "geoworld"\nepochs = 1\nseeds = [0]\ngeo_k_values = [4]\n'
             'strategies = ["any-other"]\nmax_locations = None')
    good = {"seeds": [1, 2], "max_locations": 3, "arch": "resnet18-w16", "device": "auto", "max_steps_per_epoch": None}
    assert "02_b: " in course.describe_plan("smoke", notebooks_dir=nbs, overrides=good)
    cases = {
        "seeds": ([], "--set seeds=[]: is empty; list at least 1 (each a valid PretrainConfig.seed)."),
        "max_steps_per_epoch": (-5, "--set max_steps_per_epoch=-5: PretrainConfig.max_steps_per_epoch: -5 must be "
                                    ">= 1 (in 01_a)."),
        "device": ("tpu", "--set device=\"tpu\": PretrainConfig.device: invalid choice 'tpu'; choose one of auto, "
                          "cpu, cuda (in 01_a)."),
        "epochs": (-1, "--set epochs=-1: PretrainConfig.epochs: -1 must be >= 1."),
        "arch": ("resnet999", "PretrainConfig.arch: invalid choice 'resnet999'; choose one of resnet18, resnet34"),
        "geo_k_values": ([8, 1], "--set geo_k_values=[8, 1]: item 1: Method 'moco-tp-geo' needs geo_k >= 2 geo "
                                 "clusters, got 1 (in 02_b)."),
        "strategies": (["sideways"], "item 'sideways': PretrainConfig.strategy: invalid choice 'sideways'"),
        "max_locations": (0, "--set max_locations=0: 0 must be >= 1 (in 02_b)."),
        "warmup_epochs": (2.0, "these values together: PretrainConfig.warmup_epochs must be in [0, epochs=1], got "
                               "2.0 (in 01_a)."),
    }
    for key, (value, expected) in cases.items():
        for call in (lambda: course.describe_plan("smoke", notebooks_dir=nbs, overrides={key: value}),
                     lambda: course.run_course("smoke", tmp_path / "run", notebooks_dir=nbs, overrides={key: value})):
            with pytest.raises(course.CourseError) as err:
                call()
            assert expected in str(err.value) and "\n" not in str(err.value), (key, str(err.value))
    # a profile's notebook section and a notebook's own default are named as such
    profile = {"common": {"data": "geoworld"}, "notebooks": {"02_b": {"seeds": [-1]}}}
    with pytest.raises(course.CourseError, match=r"profile 'custom', section 02_b: seeds=\[-1\]: item -1: "
                       r"PretrainConfig.seed: -1 must be >= 0 \(in 02_b\)"):
        course.run_course(profile, tmp_path / "run", notebooks_dir=nbs)
    write_nb(nbs / "03_c.ipynb", 'data = "geoworld"\nbn_splits = -1')
    with pytest.raises(course.CourseError, match=r"the default `bn_splits = -1`: PretrainConfig.bn_splits: -1 must "
                       r"be >= 0 \(in 03_c\)"):
        course.describe_plan("smoke", notebooks_dir=nbs, only=["03"])
    assert course.describe_plan("smoke", notebooks_dir=nbs, only=["01", "02"])  # --only: 03 is not checked
    assert not (tmp_path / "run" / "notebooks").exists() and not (tmp_path / "run" / "state").exists()


def test_profiles_have_the_documented_shape() -> None:
    """Every shipped profile loads and names its world seed (geoworld); gpu-full carries the paper's settings."""
    from geolab.config import PROFILES

    assert set(PROFILES) == {"smoke", "cpu", "cpu-long", "gpu", "gpu-full"}
    for name in PROFILES:
        prof = course.load_profile(name)
        assert prof["common"]["data"] in course.DATA_TIERS
        if prof["common"]["data"] == "geoworld":
            assert isinstance(prof["common"]["world_seed"], int)
    full = PROFILES["gpu-full"]["common"]
    assert (full["data"], full["arch"], full["image_size"], full["epochs"]) == ("fmow", "resnet50", 224, 200)
    assert (full["batch_size"], full["queue_size"], full["temperature"], full["geo_k"]) == (256, 65536, 0.02, 100)
    # a notebook's own entry overrides common, --set overrides both; 05 keeps 02-04's seeds and epochs (its
    # baseline is 04's run, reused) and trains each changed setting on variant_seeds only
    merged = course.notebook_parameters(course.load_profile("cpu"), "05_ablations", ["seeds", "variant_seeds", "epochs", "data"],
                                        {"data": "fmow"})
    cpu = PROFILES["cpu"]
    assert merged == {"seeds": cpu["common"]["seeds"], "variant_seeds": cpu["notebooks"]["05_ablations"]["variant_seeds"],
                      "epochs": cpu["common"]["epochs"], "data": "fmow"}
    assert full["preload"] is False and full["ema_momentum"] == 0.999


def test_dense_transfer_records_get_their_own_report_table() -> None:
    """Notebook 07's segmentation records (miou, pixel_acc) are reported as mIoU, not as empty
    linear-probe rows."""
    from geolab.course.report import report_markdown

    base = {"notebook": "07_transfer", "experiment": "transfer", "data": "geoworld", "arch": "resnet18", "image_size": 64, "epochs": 4}
    records = [
        {**base, "method": "moco", "seed": 0, "miou": 0.40, "pixel_acc": 0.80},
        {**base, "method": "moco", "seed": 1, "miou": 0.50, "pixel_acc": 0.90},
        {**base, "notebook": "02_supervised_gap", "experiment": "main", "method": "supervised", "seed": 0,
         "probe_top1": 0.6, "probe_f1": 0.5, "knn_top1": 0.55},
    ]
    results = {"profile": "cpu", "data": "geoworld", "simulation": True, "geolab_version": "0", "created": "now",
               "notebooks": [], "records": records}
    text = report_markdown(results)
    dense = text.split("## Dense transfer")[1].split("##")[0]
    assert "| 07_transfer | moco | geoworld | 0, 1 | 45.0" in dense
    probe = text.split("## Linear probe and kNN")[1].split("##")[0]
    assert "supervised" in probe and "07_transfer" not in probe
