"""The course's batch runner: runs the numbered notebooks with papermill, then writes results.json and the report.

A run folder (``--out``, default ``runs/<profile>-<data>``) holds::

    notebooks/<name>.ipynb     the executed notebooks (a failed one ends at its failing cell)
    records/<name>.jsonl       result records a notebook wrote with :func:`~geolab.course.record_result`
    state/<name>.json          status, wall time, hash of source + parameters (for reruns)
    work/<name>/               scratch space, injected as ``work_dir`` where a notebook declares it
    results.json               every record, validated against data_manifests/results.schema.json
    report.md, report.html     tables (mean +- std over seeds), plots, the paper's numbers
    figures/*.png

A folder that is neither new nor a run's (no ``state/``, no ``.lock``) and holds any of these names
is refused before anything runs, as is the notebooks' folder or the manifest's (:func:`check_run_out`,
the output rule of :mod:`geolab.io`).

How a notebook takes part: its ``parameters`` cell (tagged ``parameters``, the quick CPU
defaults) declares names such as ``data``, ``epochs``, ``seeds`` and ``results_path = None``.
The runner injects, for each notebook, only the profile's keys that the notebook declares
(found with ``papermill.inspect_notebook``), plus ``results_path`` always and ``work_dir`` where
declared. The notebook then calls ``geolab.course.record_result(results_path, {...})`` once per
training/evaluation run; interactively ``results_path`` is ``None`` and the call only checks
and returns the record.

Reruns: a notebook that succeeded before with the same source (cell types and sources, not
outputs) and the same injected parameters is skipped, and the runner says so; a changed
notebook, changed parameters, a failed or interrupted earlier attempt, or a missing executed
notebook reruns it. The first failing notebook stops the run; the runner names its cell (index,
``In [n]``, first source line) and the exception, keeps the earlier notebooks' outputs, still
writes results.json and the report for what succeeded, and the command exits non-zero.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock

from geolab import paths
from geolab.course.profiles import (
    DEFAULT_KERNEL,
    RUNNER_PARAMETERS,
    check_kernel,
    check_overrides,
    check_values,
    declared_parameters,
    discover_notebooks,
    load_profile,
    notebook_parameters,
)
from geolab.course.records import CourseError, now, read_records
from geolab.course.report import write_report
from geolab.course.state import (
    CellFailure,
    NotebookOutcome,
    collect_results,
    fmt_time,
    params_hash,
    read_state,
    rerun_reason,
    source_hash,
    write_state,
)
from geolab.envcheck import kernel_manager_config
from geolab.io import atomic_write_json, check_output_folder
from geolab.paths import RunFolder
from geolab.processes import process_pool
from geolab.tiers import Tier, check_tier, fmow_mini_manifest

#: Tiers that need a manifest the user already has (``--manifest``).
TIERS_NEEDING_MANIFEST: tuple[str, ...] = ("fmow", "geoimagenet")


@dataclasses.dataclass
class CourseRun:
    """The result of :func:`run_course`.

    Attributes:
        out: the run folder.
        outcomes: one per course notebook, in order.
        results: the results.json object.
        results_path: results.json.
        report_md: report.md.
        report_html: report.html.
        warnings: e.g. profile keys that no notebook declares.
    """

    out: Path
    outcomes: list[NotebookOutcome]
    results: dict[str, Any]
    results_path: Path
    report_md: Path
    report_html: Path
    warnings: list[str]

    @property
    def failure(self) -> CellFailure | None:
        """The failing cell, if a notebook failed."""
        return next((o.failure for o in self.outcomes if o.failure is not None), None)

    @property
    def ok(self) -> bool:
        """True when no notebook failed."""
        return all(o.status != "failed" for o in self.outcomes)


@dataclasses.dataclass
class CoursePlan:
    """What a run will do, settled before anything executes.

    Attributes:
        profile: the loaded profile.
        tier: the data tier.
        out: the run folder (resolved).
        kernel_name: the Jupyter kernel.
        notebooks: every notebook of the course, in order.
        selected: the notebooks to run (``--only``), in order.
        parameters: notebook name -> (injected parameters, names its parameters cell declares).
        warnings: profile or ``--set`` keys that no selected notebook declares.
    """

    profile: dict[str, Any]
    tier: Tier
    out: Path
    kernel_name: str
    notebooks: list[Path]
    selected: list[Path]
    parameters: dict[str, tuple[dict[str, Any], set[str]]]
    warnings: list[str]


#: What a course run writes directly inside its folder (``.lock``: :func:`_run_lock`).
RUN_FOLDER_FILES = frozenset({
    ".lock", "notebooks", "records", "state", "work", "results.json", "report.md", "report.html", "figures",
})


def check_run_out(out: Path, inputs: Sequence[str | os.PathLike]) -> None:
    """Check a course run's folder by :mod:`geolab.io`'s output rule, before anything runs.

    A folder is a course run's when it has ``state/`` or ``.lock`` (the runner makes ``.lock``
    first). Any other folder that holds a file of :data:`RUN_FOLDER_FILES`'s names (say the
    repository itself, whose ``notebooks/`` would be replaced by the executed copies) is refused;
    ``--force`` does not override this, since for ``course run`` it means "rerun notebooks".

    Raises:
        NotADirectoryError: ``out`` is a file, or a file stands where a folder above it would be.
        geolab.io.OutputRefusedError: ``out`` is the notebooks' folder or the manifest's, its
            ``notebooks/`` is the course's own, or it is not a run folder and holds those names.
    """
    check_output_folder(out, own=RUN_FOLDER_FILES, ours=RunFolder(out).state.is_dir() or (out / ".lock").is_file(),
                        command="geolab course run", inputs=inputs, force=None)


def default_out(profile_name: str, data: str) -> Path:
    """``runs/<profile>-<data>`` under :func:`geolab.paths.runs_dir` (stable, so reruns resume)."""
    return paths.runs_dir() / f"{profile_name}-{data}"


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>/.lock`` for the whole run; a second run of the same folder fails at once."""
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(out / ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as exc:
        raise CourseError(f"Another `geolab course run` is using {out}; wait for it or pick another --out.") from exc
    try:
        yield
    finally:
        lock.release()


class _QuietUnknownResultsPath(logging.Filter):
    """Silence papermill's warning about ``results_path``.

    papermill warns about every passed name a notebook does not declare; ``results_path`` is
    always passed on purpose, so that one warning is noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for papermill's "Passed unknown parameter" warning about a runner parameter."""
        msg = record.getMessage()
        return not any(msg == f"Passed unknown parameter: {k}" for k in RUNNER_PARAMETERS)


def _cell_failure(name: str, err: Any, output: Path) -> CellFailure:
    """Map papermill's error to the source notebook's cell.

    papermill counts its injected parameters cell; we do not.
    """
    import nbformat  # noqa: PLC0415 - optional extra (geolab[lab]); CLI start-up

    index = getattr(err, "cell_index", None)
    try:
        nb = nbformat.read(str(output), as_version=4)
        cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        injected = [i for i, c in enumerate(cells) if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        if index is not None and injected and injected[0] < index:
            index -= 1
    except Exception:  # noqa: BLE001 - the message still has papermill's own index
        pass
    source = getattr(err, "source", "") or ""
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "<empty cell>")
    return CellFailure(
        notebook=name,
        cell_index=index,
        exec_count=getattr(err, "exec_count", None),
        first_line=first[:120],
        ename=getattr(err, "ename", type(err).__name__),
        evalue=str(getattr(err, "evalue", err)),
        output=output,
    )


# ============================================================================ plan
def _data_tier(
    prof: Mapping[str, Any], data: str | None, manifest: str | os.PathLike | None, overrides: dict[str, Any]
) -> Tier:
    """The run's data tier, checked; sets ``data`` (and ``manifest``) in ``overrides``."""
    try:
        tier = check_tier(data or overrides.get("data") or prof["common"].get("data") or "geoworld")
    except ValueError as exc:
        raise CourseError(str(exc)) from None
    overrides["data"] = tier
    if manifest is not None:
        mpath = Path(manifest).expanduser().resolve()
        if not mpath.is_file():
            raise CourseError(
                f"--manifest {manifest}: no such file. Build one with `geolab data fmow-manifest` or "
                "`geolab data geoimagenet-manifest`."
            )
        overrides["manifest"] = str(mpath)
    if tier in TIERS_NEEDING_MANIFEST and not (overrides.get("manifest") or prof["common"].get("manifest")):
        raise CourseError(
            f"--data {tier} reads a data set you already have: pass --manifest PATH (build one with "
            f"`geolab data {'fmow-manifest' if tier == 'fmow' else 'geoimagenet-manifest'}`)."
        )
    if (
        tier == "fmow-mini"
        and not (overrides.get("manifest") or prof["common"].get("manifest"))
        and not fmow_mini_manifest().is_file()
    ):
        raise CourseError(
            f"--data fmow-mini: no fmow-mini manifest at {fmow_mini_manifest()}. Download the subset "
            "first (`geolab data fmow-download`, see docs/REAL_DATA.md) or pass --manifest PATH."
        )
    return tier


def _plan_warnings(
    prof: Mapping[str, Any],
    notebooks: Sequence[Path],
    parameters: Mapping[str, tuple[dict[str, Any], set[str]]],
    overrides: Mapping[str, Any],
) -> list[str]:
    """Profile and ``--set`` keys that no selected notebook declares."""
    warnings: list[str] = []
    used = set().union(*(d for _, d in parameters.values())) if parameters else set()
    unused_common = sorted(set(prof["common"]) - used)
    if unused_common:
        warnings.append(f"profile {prof['name']!r}: no selected notebook declares {', '.join(unused_common)}")
    for name, section in prof["notebooks"].items():
        if name not in {p.stem for p in notebooks}:
            warnings.append(f"profile {prof['name']!r}: section for notebook {name!r}, which does not exist")
        elif name in parameters:
            missing = sorted(set(section) - parameters[name][1])
            if missing:
                warnings.append(f"profile {prof['name']!r}: {name} does not declare {', '.join(missing)}")
    unused_over = sorted(k for k in overrides if k not in used and k not in ("data", "manifest"))
    if unused_over:
        warnings.append(f"--set: no selected notebook declares {', '.join(unused_over)}")
    return warnings


def plan_course(
    profile: str | Mapping[str, Any] = "cpu",
    out: str | os.PathLike | None = None,
    *,
    data: str | None = None,
    manifest: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    kernel_name: str = DEFAULT_KERNEL,
    check_out: bool = False,
) -> CoursePlan:
    """Check a run's set-up and settle every selected notebook's parameters (arguments as :func:`run_course`).

    ``check_out``: also check the run folder (:func:`check_run_out`), as :func:`run_course` does.

    Raises:
        CourseError: unknown profile or data tier, missing kernel or manifest, no notebooks,
            a notebook without parameters cell, a ``--set`` typo or a value of the wrong type.
        NotADirectoryError, geolab.io.OutputRefusedError: with ``check_out``, see :func:`check_run_out`.
    """
    prof = load_profile(profile)
    overrides = dict(overrides or {})
    for key in RUNNER_PARAMETERS:
        if key in overrides:
            raise CourseError(f"{key} is provided by the runner and cannot be set.")
    tier = _data_tier(prof, data, manifest, overrides)
    all_nbs = discover_notebooks(notebooks_dir)
    check_overrides(overrides, all_nbs, prof)  # typos and wrong types are errors, before anything runs
    out = Path(out) if out is not None else default_out(prof["name"], tier)
    if check_out:
        check_run_out(out, [all_nbs[0].parent, *([manifest] if manifest is not None else [])])
    check_kernel(kernel_name)
    selected = discover_notebooks(notebooks_dir, only) if only else all_nbs
    out = out.expanduser().resolve()
    parameters: dict[str, tuple[dict[str, Any], set[str]]] = {}
    declarations = {}
    for nb in selected:
        declarations[nb.stem] = declared_parameters(nb)
        declared = set(declarations[nb.stem])
        parameters[nb.stem] = (notebook_parameters(prof, nb.stem, declared, overrides), declared)
    # every value by geolab's own rules (seeds=[], device="tpu"...), before anything runs
    values = {k: (parameters[k][0], d) for k, d in declarations.items()}
    user = {k: v for k, v in overrides.items() if k not in ("data", "manifest")}
    if check_out and "torch" not in sys.modules:
        # the rules read the architectures' registry, which imports torch: ~0.4 GB that the runner
        # would hold for the whole run, so they run in a child process (a second or two)
        with process_pool(1) as pool:
            pool.submit(check_run_values, prof, values, user, check_out).result()
    else:
        check_run_values(prof, values, user, check_out)
    warnings = _plan_warnings(prof, all_nbs, parameters, overrides)
    return CoursePlan(prof, tier, out, kernel_name, all_nbs, selected, parameters, warnings)


def check_run_values(profile: Mapping[str, Any], values: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
                     overrides: Mapping[str, Any], here: bool = False) -> None:
    """:func:`~geolab.course.profiles.check_values`; with ``here``, also that a CUDA device asked for exists.

    ``here``: the run is about to start on this machine (``course plan`` may show a GPU profile anywhere).
    The device check is :func:`geolab.distributed.resolve_device`'s, as ``geolab pretrain`` meets it.
    """
    check_values(profile, values, overrides)
    if not here:
        return
    for name, (injected, _) in values.items():
        device = injected.get("device")
        if isinstance(device, str) and device.startswith("cuda"):
            from geolab.distributed import resolve_device  # noqa: PLC0415 - start-up: torch, GPU profiles only

            try:
                resolve_device(device)
            except RuntimeError:
                where = f"--set device={device!r}" if "device" in overrides else f"profile {profile['name']!r}"
                raise CourseError(f"{where}: device={device!r} in {name}, but no CUDA GPU is available here; "
                                  "run a CPU profile (--profile cpu) or --set device=\"cpu\".") from None


# ============================================================================ execute
def run_notebook(
    plan: CoursePlan,
    nb: Path,
    tag: str,
    *,
    force: bool = False,
    cell_timeout: float | None = None,
    progress_bar: bool = False,
    log: Callable[[str], None] = print,
) -> NotebookOutcome:
    """Run one selected notebook of ``plan`` with papermill, or skip it when it already succeeded.

    Writes its state file (``running``, then ``ok`` or ``failed``), its records and the
    executed notebook into the run folder.

    Returns:
        Its outcome: ``ok``, ``skipped`` or ``failed`` (with the failing cell).
    """
    import papermill  # noqa: PLC0415 - optional extra (geolab[lab]); CLI start-up
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415 - optional extra (geolab[lab])

    out, name = plan.out, nb.stem
    params, declared = plan.parameters[name]
    folder = RunFolder(out)
    state_path, output, records_path = folder.state_file(name), folder.notebooks / nb.name, folder.records_file(name)
    src_hash = source_hash(nb)
    state = read_state(state_path)
    reason = "--force" if force else rerun_reason(state, src_hash, params, output)
    if reason is None:  # the state says it succeeded with these inputs
        last = state or {}
        n_rec = len(read_records(records_path)) if records_path.is_file() else 0
        log(f"{tag}: skipped, already succeeded with the same source and parameters "
            f"({fmt_time(last.get('wall_time_s'))} then)")
        return NotebookOutcome(
            name,
            "skipped",
            reason=f"succeeded on {last.get('finished', '?')} with the same source and parameters",
            wall_time_s=last.get("wall_time_s"),
            parameters=params,
            records=n_rec,
            output=output,
        )
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "no parameters"
    log(f"{tag}: running ({reason}; {shown})")
    records_path.unlink(missing_ok=True)
    injected = dict(params)
    injected["results_path"] = str(records_path)
    if "work_dir" in declared:
        work = out / "work" / name
        work.mkdir(parents=True, exist_ok=True)
        injected["work_dir"] = str(work)
    output.parent.mkdir(parents=True, exist_ok=True)
    base_state = {
        "notebook": name,
        "source": str(nb),
        "source_hash": src_hash,
        "parameters": params,
        "params_hash": params_hash(params),
        "kernel": plan.kernel_name,
        "profile": plan.profile["name"],
        "started": now(),
        "output": str(output.relative_to(out)),
    }
    write_state(state_path, base_state, "running")
    t0 = time.perf_counter()
    failure = None
    try:
        papermill.execute_notebook(
            str(nb),
            str(output),
            parameters=injected,
            kernel_name=plan.kernel_name,
            progress_bar=progress_bar,
            cwd=str(nb.parent),
            execution_timeout=cell_timeout,
            config=kernel_manager_config(),  # CurveZMQ: no "TCP without encryption" warning
        )
    except PapermillExecutionError as err:
        failure = _cell_failure(name, err, output)
    except Exception as err:  # noqa: BLE001 - kernel died, timeout, unreadable notebook: reported as a failure
        failure = CellFailure(name, None, None, "<papermill>", type(err).__name__, str(err).strip()[:2000], output)
    wall = time.perf_counter() - t0
    n_rec = len(read_records(records_path)) if records_path.is_file() else 0
    if failure is None:
        write_state(state_path, base_state, "ok", finished=now(), wall_time_s=wall, records=n_rec)
        log(f"{tag}: ok in {fmt_time(wall)}, {n_rec} record(s)")
        return NotebookOutcome(name, "ok", reason, wall, params, n_rec, output)
    write_state(state_path, base_state, "failed", finished=now(), wall_time_s=wall, error=failure.to_dict())
    log(f"{tag}: FAILED after {fmt_time(wall)}\n  {failure.message()}")
    return NotebookOutcome(name, "failed", reason, wall, params, n_rec, output, failure)


def run_course(
    profile: str | Mapping[str, Any] = "cpu",
    out: str | os.PathLike | None = None,
    *,
    data: str | None = None,
    manifest: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    kernel_name: str = DEFAULT_KERNEL,
    force: bool = False,
    cell_timeout: float | None = None,
    progress_bar: bool = False,
    log: Callable[[str], None] = print,
) -> CourseRun:
    """Run the course notebooks with papermill and write results.json and the report.

    Args:
        profile: ``smoke`` (tests), ``cpu`` (``make course``), ``gpu-full`` (fMoW, paper
            settings), or a profile dict (see :func:`~geolab.course.profiles.load_profile`).
        out: run folder (default ``runs/<profile>-<data>``); rerunning into the same folder
            skips notebooks that already succeeded with the same source and parameters.
        data: data tier, injected as ``data`` (default: the profile's, else ``geoworld``).
        manifest: manifest file for the real tiers, injected as ``manifest``.
        only: run only these notebooks (names, file names or two-digit numbers).
        overrides: extra parameter values that beat the profile (``--set KEY=VALUE``).
        notebooks_dir: where the notebooks are (default ``notebooks/``).
        kernel_name: Jupyter kernel (default ``geolab``, installed by ``make setup``).
        force: rerun even notebooks that would be skipped.
        cell_timeout: seconds one cell may run (``None``: no limit).
        progress_bar: papermill's per-cell progress bar.
        log: where progress lines go.

    Returns:
        A :class:`CourseRun`; ``run.ok`` is False when a notebook failed (``run.failure`` says where).

    Raises:
        CourseError: set-up problems found before anything runs (unknown profile or data
            tier, missing kernel or manifest, no notebooks, a notebook without parameters cell).
        NotADirectoryError, geolab.io.OutputRefusedError: ``out`` is a file, or a folder that is not a
            run's and holds files of a run's names, or an input's folder (:func:`check_run_out`).
    """
    plan = plan_course(profile, out, data=data, manifest=manifest, only=only, overrides=overrides,
                       notebooks_dir=notebooks_dir, kernel_name=kernel_name, check_out=True)
    prof, out = plan.profile, plan.out
    for w in plan.warnings:
        log(f"warning: {w}")
    outcomes: dict[str, NotebookOutcome] = {}
    for nb in plan.notebooks:
        if nb.stem not in plan.parameters:
            st = read_state(RunFolder(out).state_file(nb.stem))
            outcomes[nb.stem] = NotebookOutcome(
                nb.stem,
                "not-run",
                reason="not selected (--only)" + (f"; last run: {st.get('status')}" if st else ""),
                wall_time_s=(st or {}).get("wall_time_s"),
                parameters=(st or {}).get("parameters", {}),
            )

    log(f"geolab course run: profile {prof['name']}, data {plan.tier}, kernel {kernel_name}, out {out}")
    handler_filter = _QuietUnknownResultsPath()
    pm_logger = logging.getLogger("papermill")
    pm_logger.addFilter(handler_filter)
    failed = False
    try:
        with _run_lock(out):
            for i, nb in enumerate(plan.selected, start=1):
                if failed:
                    params = plan.parameters[nb.stem][0]
                    outcomes[nb.stem] = NotebookOutcome(nb.stem, "not-run", reason="an earlier notebook failed",
                                                        parameters=params)
                    continue
                outcome = run_notebook(plan, nb, f"[{i}/{len(plan.selected)}] {nb.stem}", force=force,
                                       cell_timeout=cell_timeout, progress_bar=progress_bar, log=log)
                outcomes[nb.stem] = outcome
                failed = outcome.status == "failed"
            ordered = [outcomes[nb.stem] for nb in plan.notebooks]
            results = collect_results(out, ordered, profile_name=prof["name"], data=plan.tier, kernel_name=kernel_name)
            results_path = out / "results.json"
            atomic_write_json(results_path, results)
            md, html_path = write_report(out, results)
    finally:
        pm_logger.removeFilter(handler_filter)
    n = {s: sum(o.status == s for o in ordered) for s in ("ok", "skipped", "failed", "not-run")}
    log(
        f"done: {n['ok']} ran, {n['skipped']} skipped, {n['failed']} failed, {n['not-run']} not run; "
        f"{len(results['records'])} record(s) -> {results_path}; report {md}"
    )
    run = CourseRun(out, ordered, results, results_path, md, html_path, warnings=plan.warnings)
    if (f := run.failure) is not None:
        log(f"Fix {f.notebook}.ipynb and rerun the same command: notebooks that succeeded are skipped.")
    return run
