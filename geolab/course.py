"""The course's batch runner: executes the numbered notebooks with papermill, collects what they
report into ``results.json`` and writes a readable report.

A run folder (``--out``, default ``runs/<profile>-<data>``) holds::

    notebooks/<name>.ipynb     the executed notebooks (a failed one ends at its failing cell)
    records/<name>.jsonl       result records a notebook wrote with :func:`record_result`
    state/<name>.json          status, wall time, hash of source + parameters (for reruns)
    work/<name>/               scratch space, injected as ``work_dir`` where a notebook declares it
    results.json               every record, validated against data_manifests/results.schema.json
    report.md, report.html     tables (mean +- std over seeds), plots, the paper's numbers
    figures/*.png

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
import copy
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import html
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from geolab import paths
from geolab.io import atomic_write_json, atomic_write_text
from geolab.paper import PAPER_FMOW_TOP1, PAPER_METHOD_NAMES
from geolab.tiers import TIERS as DATA_TIERS
from geolab.tiers import is_simulated

#: Notebooks of the course: two digits, an underscore, a name (``03_temporal_positives.ipynb``).
NOTEBOOK_PATTERN = re.compile(r"^[0-9][0-9]_.+\.ipynb$")
#: Tiers that need a manifest the user already has (``--manifest``).
TIERS_NEEDING_MANIFEST: tuple[str, ...] = ("fmow", "geoimagenet")
#: The Jupyter kernel ``make setup`` installs into the venv.
DEFAULT_KERNEL = "geolab"
#: Parameters the runner provides itself (never taken from a profile).
RUNNER_PARAMETERS: tuple[str, ...] = ("results_path", "work_dir")
RESULTS_SCHEMA_VERSION = 1
#: Record keys that hold accuracies (fractions in [0, 1]).
METRIC_KEYS: tuple[str, ...] = ("probe_top1", "probe_f1", "knn_top1", "finetune_top1")
#: Dense transfer metrics (notebook 07's records), fractions in [0, 1]; reported in their own table.
DENSE_KEYS: tuple[str, ...] = ("miou", "pixel_acc")

SIMULATION_BANNER = (
    "**Simulation.** Results on `geoworld` come from a procedurally generated simulation of an "
    "fMoW-like world, not from satellite images. They show how the methods behave on "
    "simulated data; they are not the paper's claims and cannot be compared number for number "
    "with the paper's fMoW results shown beside them."
)

# ============================================================================ errors
class CourseError(Exception):
    """A problem with the run set-up (unknown profile, missing kernel, bad manifest option)
    whose message says what to do."""


class ResultsValidationError(ValueError):
    """A result record or results.json does not match ``data_manifests/results.schema.json``."""


@dataclasses.dataclass
class CellFailure:
    """Where and how a notebook failed (from papermill's ``PapermillExecutionError``).

    Attributes:
        notebook: notebook name without ``.ipynb``.
        cell_index: 0-based index of the failing cell in the *source* notebook (the cell
            papermill injects is not counted); ``None`` when unknown.
        exec_count: the ``In [n]`` execution count shown in the executed notebook.
        first_line: the first non-empty line of the failing cell's source.
        ename: exception class name (``ValueError``).
        evalue: exception message.
        output: the executed notebook (kept, with the outputs up to the failing cell).
    """

    notebook: str
    cell_index: int | None
    exec_count: int | None
    first_line: str
    ename: str
    evalue: str
    output: Path | None = None

    def message(self) -> str:
        """One paragraph for the terminal and the report."""
        where = f"cell {self.cell_index}" if self.cell_index is not None else "a cell"
        if self.exec_count is not None:
            where += f" (In [{self.exec_count}])"
        text = f"{self.notebook}.ipynb failed in {where}: `{self.first_line}`\n    {self.ename}: {self.evalue}"
        if self.output is not None:
            text += f"\n    Executed notebook with the traceback: {self.output}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell_index": self.cell_index,
            "exec_count": self.exec_count,
            "first_line": self.first_line,
            "ename": self.ename,
            "evalue": self.evalue,
        }


# ============================================================================ schema
def schema_path() -> Path:
    """``data_manifests/results.schema.json``."""
    return paths.manifests_dir() / "results.schema.json"


_SCHEMA_CACHE: dict[str, Any] = {}


def results_schema() -> dict[str, Any]:
    """The JSON Schema of results.json (loaded once).

    Raises:
        CourseError: the schema file is missing (geolab not installed from its source tree).
    """
    if "schema" not in _SCHEMA_CACHE:
        path = schema_path()
        if not path.is_file():
            raise CourseError(
                f"The results schema {path} is missing; geolab's course runner needs the source "
                "tree (install with `pip install -e .` from the repository, as `make setup` does)."
            )
        _SCHEMA_CACHE["schema"] = json.loads(path.read_text())
    return _SCHEMA_CACHE["schema"]


def _format_schema_error(err: Any, obj: Any, what: str) -> str:
    """Say which record / key was wrong, its value, what the schema wants and what to do."""
    loc = list(err.absolute_path)
    where = what
    if len(loc) >= 2 and loc[0] == "records" and isinstance(loc[1], int):
        rec = obj["records"][loc[1]]
        nb = rec.get("notebook", "?") if isinstance(rec, dict) else "?"
        where = f"{what}: record {loc[1]} (notebook {nb})"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "notebooks" and isinstance(loc[1], int):
        where = f"{what}: notebooks[{loc[1]}]"
        loc = loc[2:]
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg = err.message
    hint = ""
    if err.validator in ("oneOf", "maximum") and loc and str(loc[-1]) in METRIC_KEYS:
        value = err.instance
        msg = f"{value!r} is not a fraction in [0, 1] or null"
        if isinstance(value, (int, float)) and 1 < value <= 100:
            hint = " Accuracies are fractions: divide percentages by 100."
    elif err.validator == "required":
        hint = " Every record needs notebook, method, data, arch, image_size, epochs and seed."
    elif err.validator == "enum" and loc and loc[-1] == "data":
        hint = f" Use one of the data tiers: {', '.join(DATA_TIERS)}."
    elif err.validator == "pattern" and loc and loc[-1] == "method":
        hint = " Method names are lower case, e.g. moco, moco-tp, moco-tp-geo, supervised."
    return f"{where}: key {key!r}: {msg}.{hint} (schema: {schema_path()})"


def _validator(defn: str | None = None) -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - jsonschema comes with nbformat
        raise CourseError("jsonschema is missing; run `make setup` (it installs geolab[lab]).") from exc
    schema = results_schema()
    if defn is not None:
        schema = {**schema, "$ref": f"#/$defs/{defn}"}
        schema = {k: v for k, v in schema.items() if k not in ("required", "properties", "type", "additionalProperties")}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_results(obj: Any) -> None:
    """Check a results.json object against ``data_manifests/results.schema.json``.

    Args:
        obj: the parsed results.json.

    Raises:
        ResultsValidationError: the first problem, naming the record (index and notebook), the
            key, the offending value and what to do; all other problems are counted.
    """
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        first = _format_schema_error(errors[0], obj, "results.json")
        more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ResultsValidationError(first + more)


def validate_record(record: Mapping[str, Any], *, require_notebook: bool = True) -> None:
    """Check one result record (as :func:`record_result` writes it).

    Args:
        record: the record.
        require_notebook: interactive records have no notebook name yet; the runner adds it.

    Raises:
        ResultsValidationError: naming the key and what to do.
    """
    rec = dict(record)
    if not require_notebook:
        rec.setdefault("notebook", "<interactive>")
    errors = list(_validator("record").iter_errors(rec))
    if errors:
        wrapped = {"records": [rec]}
        for e in errors:  # make paths look like the results.json ones
            e.path.appendleft(0)
            e.path.appendleft("records")
        errors.sort(key=lambda e: list(map(str, e.absolute_path)))
        raise ResultsValidationError(_format_schema_error(errors[0], wrapped, "result record"))


# ============================================================================ records
def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays, torch scalars and paths become plain JSON values."""
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise ResultsValidationError(f"A result record must be a dict, got {type(record).__name__}.")
    try:
        text = json.dumps(dict(record), default=_json_default, allow_nan=False)
    except ValueError as exc:
        bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        raise ResultsValidationError(
            f"Result record has NaN or infinite values at {bad or 'a nested key'}; "
            "record None for a metric that was not measured."
        ) from exc
    except TypeError as exc:
        raise ResultsValidationError(f"Result record is not JSON serialisable: {exc}.") from exc
    return json.loads(text)


def record_result(results_path: str | os.PathLike | None, record: Mapping[str, Any]) -> dict[str, Any]:
    """Report one run's result from a notebook.

    The runner injects ``results_path`` (``<run>/records/<notebook>.jsonl``); the record is
    checked against the schema, then appended as one JSON line (one ``write`` under an
    exclusive lock, fsync'ed, so a crash never leaves half a line). Interactively
    (``results_path`` is ``None`` or ``""``) the record is only checked and returned.

    Args:
        results_path: the JSON-lines file, or ``None``/``""`` outside a batch run.
        record: ``method``, ``data``, ``arch``, ``image_size``, ``epochs``, ``seed`` and the
            metrics as fractions in [0, 1]: ``probe_top1``, ``probe_f1``, ``knn_top1``
            (optionally ``finetune_top1``, ``wall_time_s``, ``experiment``, ``variant``, and any
            extra keys). numpy/torch scalars are converted.

    Returns:
        The record as stored (plain JSON types, ``recorded_at`` and, in a run, ``notebook`` added).

    Raises:
        ResultsValidationError: the record does not match the schema (e.g. a percentage
            where a fraction belongs), naming the key.
    """
    rec = _plain(record)
    rec.setdefault("recorded_at", _now())
    if results_path:
        rec.setdefault("notebook", Path(results_path).stem)
    validate_record(rec, require_notebook=bool(results_path))
    if not results_path:
        return rec
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return rec


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a records JSON-lines file.

    Raises:
        ResultsValidationError: a line is not JSON (names the file and line).
    """
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ResultsValidationError(
                f"{path}, line {lineno}: not valid JSON ({exc.msg}); delete the line or rerun the "
                "notebook with --force."
            ) from exc
    return out


# ============================================================================ notebooks and profiles
def discover_notebooks(notebooks_dir: str | os.PathLike | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """The course notebooks, in order.

    Args:
        notebooks_dir: folder (default :func:`geolab.paths.notebooks_dir`).
        only: names to keep: a notebook's name (``03_temporal_positives``), its file name, or
            its two-digit number (``03``). ``None`` keeps all.

    Returns:
        Paths of the files matching ``[0-9][0-9]_*.ipynb``, sorted by name.

    Raises:
        CourseError: the folder has no notebooks, or a name in ``only`` matches none.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    if not folder.is_dir():
        raise CourseError(f"The notebooks folder {folder} does not exist.")
    found = sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK_PATTERN.match(p.name))
    if not found:
        raise CourseError(f"No course notebooks (files named like 01_name.ipynb) in {folder}.")
    if not only:
        return found
    keep: list[Path] = []
    for name in only:
        key = name[:-6] if name.endswith(".ipynb") else name
        key = Path(key).name
        match = [p for p in found if p.stem == key or (len(key) == 2 and key.isdigit() and p.name.startswith(key + "_"))]
        if not match:
            raise CourseError(
                f"--only {name}: no such notebook in {folder}. Available: {', '.join(p.stem for p in found)}."
            )
        keep.extend(m for m in match if m not in keep)
    return sorted(keep)


def load_profile(profile: str | Mapping[str, Any]) -> dict[str, Any]:
    """A profile as ``{"description", "common": {...}, "notebooks": {name: {...}}}``.

    Args:
        profile: a name in :data:`geolab.config.PROFILES` (``smoke``, ``cpu``, ``gpu-full``) or
            a dict of that shape (tests, custom runs).

    Raises:
        CourseError: unknown name or malformed profile.
    """
    if isinstance(profile, str):
        from geolab.config import PROFILES

        if profile not in PROFILES:
            raise CourseError(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.")
        prof = copy.deepcopy(dict(PROFILES[profile]))
        prof.setdefault("name", profile)
    elif isinstance(profile, Mapping):
        prof = copy.deepcopy(dict(profile))
        prof.setdefault("name", "custom")
    else:
        raise CourseError(f"A profile is a name or a dict, got {type(profile).__name__}.")
    unknown = set(prof) - {"name", "description", "common", "notebooks"}
    if unknown:
        raise CourseError(f"Profile {prof['name']!r} has unknown sections {sorted(unknown)}; use common and notebooks.")
    prof.setdefault("description", "")
    prof.setdefault("common", {})
    prof.setdefault("notebooks", {})
    if not isinstance(prof["common"], Mapping) or not isinstance(prof["notebooks"], Mapping):
        raise CourseError(f"Profile {prof['name']!r}: common and notebooks must be dicts.")
    for key in RUNNER_PARAMETERS:
        if key in prof["common"] or any(key in v for v in prof["notebooks"].values()):
            raise CourseError(f"Profile {prof['name']!r} sets {key!r}, which the runner provides itself.")
    return prof


def declared_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Names declared in a notebook's ``parameters`` cell, with papermill's inferred defaults.

    Raises:
        CourseError: the notebook has no cell tagged ``parameters``.
    """
    import nbformat
    import papermill

    nb = nbformat.read(str(notebook), as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise CourseError(
            f"{notebook}: no cell tagged 'parameters'. Every course notebook has one parameters "
            "cell right after Setup (tag it in Jupyter: View > Cell toolbar > Tags)."
        )
    return papermill.inspect_notebook(str(notebook))


def notebook_parameters(
    profile: Mapping[str, Any], name: str, declared: Iterable[str], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters a notebook gets: profile ``common``, then its per-notebook section, then
    ``overrides`` (``--data``, ``--manifest``, ``--set``), kept only where the notebook declares them.

    Args:
        profile: a loaded profile (:func:`load_profile`).
        name: notebook name without ``.ipynb``.
        declared: names in the notebook's parameters cell.
        overrides: values that beat the profile.

    Returns:
        The injected parameters (the runner adds ``results_path`` / ``work_dir``).
    """
    merged = {**profile["common"], **profile["notebooks"].get(name, {}), **(overrides or {})}
    declared = set(declared)
    return {k: v for k, v in merged.items() if k in declared and k not in RUNNER_PARAMETERS}


def check_overrides(
    overrides: Mapping[str, Any], notebooks: Sequence[Path], profile: Mapping[str, Any] | None = None
) -> None:
    """``--set`` values against the course's ``parameters`` cells, before anything runs.

    A key that no notebook of the course declares is an error (a typo such as ``epoch``), and
    so is a value whose type does not fit the declared default: a whole number for an int
    default (not a bool), a number for a float, text for a string, true/false for a bool, a
    list (with fitting items) for a list. A default of ``None`` takes anything, and ``null``
    is accepted where a profile sets the key to ``None`` (e.g. ``max_steps_per_epoch``). The
    types come from the notebooks' own declarations, so new parameters need no change here.

    Args:
        overrides: the ``--set`` values (JSON-parsed), plus the runner's ``data``/``manifest``.
        notebooks: every notebook of the course (a key declared by one that is not selected
            is not a typo).
        profile: the profile in use (its ``None`` values allow ``null``).

    Raises:
        CourseError: every problem found, each naming the key, the value and what fits.
    """
    import ast
    import difflib

    from geolab.config import PROFILES

    declared: dict[str, list[tuple[str, Any]]] = {}
    for nb in notebooks:
        for name, info in declared_parameters(nb).items():
            try:
                default = ast.literal_eval(str(info.get("default")))
            except (ValueError, SyntaxError):
                default = None  # not a literal: anything goes
            declared.setdefault(name, []).append((nb.stem, default))
    nullable = {k for prof in [*PROFILES.values(), *([profile] if profile else [])]
                for section in [prof.get("common", {}), *prof.get("notebooks", {}).values()]
                for k, v in section.items() if v is None}
    problems = []
    for key, value in overrides.items():
        if key not in declared:
            if key in ("data", "manifest"):
                continue  # set by --data / --manifest; a course without them ignores them
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the course's parameters are {', '.join(sorted(declared))}"
            problems.append(f"--set {key}: no notebook declares this parameter ({hint})")
            continue
        defaults = [d for _, d in declared[key]]
        if any(d is None for d in defaults) or (value is None and key in nullable):
            continue
        if not any(_fits(value, d) for d in defaults):
            nb, default = declared[key][0]
            problems.append(f"--set {key}={json.dumps(value)}: {key} takes {_kind(default)} "
                            f"(declared `{key} = {default!r}` in {nb}), e.g. --set {key}={json.dumps(default)}")
    if problems:
        raise CourseError("; ".join(problems))


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of the declared ``default`` (ints pass for floats)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            return False
        return not default or all(_fits(v, default[0]) for v in value)
    return isinstance(value, type(default))


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "text"
    if isinstance(default, (list, tuple)):
        return f"a list of {_kind(default[0]).replace('a ', '', 1)}s" if default else "a list"
    return f"a {type(default).__name__}"


def check_kernel(kernel_name: str) -> None:
    """Fail early, with what to do, when the Jupyter kernel is not installed.

    Raises:
        CourseError: the kernel is missing.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if kernel_name not in specs:
        hint = (
            "Run `make setup` (it installs the kernel into .venv: python -m ipykernel install "
            f"--sys-prefix --name {DEFAULT_KERNEL})"
            if kernel_name == DEFAULT_KERNEL
            else "Install it with `python -m ipykernel install --sys-prefix --name NAME` or pass --kernel"
        )
        raise CourseError(
            f"The Jupyter kernel {kernel_name!r} is not installed (found: {', '.join(sorted(specs)) or 'none'}). {hint}."
        )


# ============================================================================ state
def _source_hash(notebook: Path) -> str:
    """Hash of cell types and sources (outputs and metadata do not count)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _params_hash(params: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in params.items() if k not in RUNNER_PARAMETERS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return {"status": "corrupt"}


def _diff_params(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    parts = []
    for k in sorted(set(old) | set(new)):
        if k in RUNNER_PARAMETERS:
            continue
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if a != b:
            parts.append(f"{k} {a!r} -> {b!r}")
    return ", ".join(parts) or "parameters changed"


def _rerun_reason(state: dict[str, Any] | None, src_hash: str, params: Mapping[str, Any], output: Path) -> str | None:
    """``None`` when the notebook can be skipped, else why it runs."""
    if state is None:
        return "first run"
    status = state.get("status")
    if status == "corrupt":
        return "its state file was unreadable"
    if status == "failed":
        return "it failed last time"
    if status == "running":
        return "its last run was interrupted"
    if status != "ok":
        return f"its last status was {status!r}"
    if state.get("source_hash") != src_hash:
        return "the notebook changed since its last successful run"
    if state.get("params_hash") != _params_hash(params):
        return "parameters changed: " + _diff_params(state.get("parameters", {}), params)
    if not output.is_file():
        return f"its executed notebook {output} is missing"
    return None


# ============================================================================ running
@dataclasses.dataclass
class NotebookOutcome:
    """What happened to one notebook in a run.

    Attributes:
        notebook: name without ``.ipynb``.
        status: ``ok`` (ran now), ``skipped`` (succeeded before, same source and parameters),
            ``failed``, or ``not-run`` (not selected with ``--only``, or after a failure).
        reason: why it ran or was skipped.
        wall_time_s: seconds the notebook took (for ``skipped``: its earlier run).
        parameters: the injected parameters.
        records: number of records it reported.
        output: the executed notebook.
        failure: where it failed.
    """

    notebook: str
    status: str
    reason: str = ""
    wall_time_s: float | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    records: int = 0
    output: Path | None = None
    failure: CellFailure | None = None


@dataclasses.dataclass
class CourseRun:
    """The result of :func:`run_course`.

    Attributes:
        out: the run folder.
        outcomes: one per course notebook, in order.
        results: the results.json object.
        results_path, report_md, report_html: files written.
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


def default_out(profile_name: str, data: str) -> Path:
    """``runs/<profile>-<data>`` under :func:`geolab.paths.runs_dir` (stable, so reruns resume)."""
    return paths.runs_dir() / f"{profile_name}-{data}"


@contextlib.contextmanager
def _run_lock(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CourseError(f"Another `geolab course run` is using {out}; wait for it or pick another --out.") from exc
        yield
    finally:
        fh.close()


class _QuietUnknownResultsPath(logging.Filter):
    """papermill warns about every passed name a notebook does not declare; ``results_path`` is
    always passed on purpose, so that one warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(msg == f"Passed unknown parameter: {k}" for k in RUNNER_PARAMETERS)


def _cell_failure(name: str, err: Any, output: Path) -> CellFailure:
    """Map papermill's error to the source notebook's cell index (papermill counts its injected
    parameters cell; we do not)."""
    import nbformat

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


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


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
            settings), or a profile dict (see :func:`load_profile`).
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
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from geolab.envcheck import kernel_manager_config

    prof = load_profile(profile)
    overrides = dict(overrides or {})
    for key in RUNNER_PARAMETERS:
        if key in overrides:
            raise CourseError(f"{key} is provided by the runner and cannot be set.")
    tier = data or overrides.get("data") or prof["common"].get("data") or "geoworld"
    if tier not in DATA_TIERS:
        raise CourseError(f"Unknown data tier {tier!r}; choose one of {', '.join(DATA_TIERS)}.")
    overrides["data"] = tier
    if manifest is not None:
        mpath = Path(manifest).expanduser().resolve()
        if not mpath.is_file():
            raise CourseError(f"--manifest {manifest}: no such file. Build one with `geolab data fmow-manifest` or `geolab data geoimagenet-manifest`.")
        overrides["manifest"] = str(mpath)
    if tier in TIERS_NEEDING_MANIFEST and not (overrides.get("manifest") or prof["common"].get("manifest")):
        raise CourseError(
            f"--data {tier} reads a data set you already have: pass --manifest PATH (build one with "
            f"`geolab data {'fmow-manifest' if tier == 'fmow' else 'geoimagenet-manifest'}`)."
        )
    if tier == "fmow-mini" and not (overrides.get("manifest") or prof["common"].get("manifest")):
        from geolab.tiers import fmow_mini_manifest

        if not fmow_mini_manifest().is_file():
            raise CourseError(
                f"--data fmow-mini: no fmow-mini manifest at {fmow_mini_manifest()}. Download the subset "
                "first (`geolab data fmow-download`, see docs/REAL_DATA.md) or pass --manifest PATH."
            )
    all_nbs = discover_notebooks(notebooks_dir)
    check_overrides(overrides, all_nbs, prof)  # typos and wrong types are errors, before anything runs
    check_kernel(kernel_name)
    selected = discover_notebooks(notebooks_dir, only) if only else all_nbs
    out = Path(out) if out is not None else default_out(prof["name"], tier)
    out = out.expanduser().resolve()

    # Parameters for every selected notebook, and warnings for profile keys nobody uses.
    plan: dict[str, tuple[dict[str, Any], set[str]]] = {}
    for nb in selected:
        declared = set(declared_parameters(nb))
        plan[nb.stem] = (notebook_parameters(prof, nb.stem, declared, overrides), declared)
    warnings: list[str] = []
    used = set().union(*(d for _, d in plan.values())) if plan else set()
    unused_common = sorted(set(prof["common"]) - used)
    if unused_common:
        warnings.append(f"profile {prof['name']!r}: no selected notebook declares {', '.join(unused_common)}")
    for name, section in prof["notebooks"].items():
        if name not in {p.stem for p in all_nbs}:
            warnings.append(f"profile {prof['name']!r}: section for notebook {name!r}, which does not exist")
        elif name in plan:
            missing = sorted(set(section) - plan[name][1])
            if missing:
                warnings.append(f"profile {prof['name']!r}: {name} does not declare {', '.join(missing)}")
    unused_over = sorted(k for k in overrides if k not in used and k not in ("data", "manifest"))
    if unused_over:
        warnings.append(f"--set: no selected notebook declares {', '.join(unused_over)}")
    for w in warnings:
        log(f"warning: {w}")

    outcomes: dict[str, NotebookOutcome] = {}
    for nb in all_nbs:
        if nb.stem not in plan:
            st = _read_state(out / "state" / f"{nb.stem}.json")
            outcomes[nb.stem] = NotebookOutcome(
                nb.stem,
                "not-run",
                reason="not selected (--only)" + (f"; last run: {st.get('status')}" if st else ""),
                wall_time_s=(st or {}).get("wall_time_s"),
                parameters=(st or {}).get("parameters", {}),
            )

    log(f"geolab course run: profile {prof['name']}, data {tier}, kernel {kernel_name}, out {out}")
    handler_filter = _QuietUnknownResultsPath()
    pm_logger = logging.getLogger("papermill")
    pm_logger.addFilter(handler_filter)
    failed = False
    try:
        with _run_lock(out):
            for i, nb in enumerate(selected, start=1):
                name = nb.stem
                tag = f"[{i}/{len(selected)}] {name}"
                params, declared = plan[name]
                if failed:
                    outcomes[name] = NotebookOutcome(name, "not-run", reason="an earlier notebook failed", parameters=params)
                    continue
                state_path = out / "state" / f"{name}.json"
                output = out / "notebooks" / nb.name
                records_path = out / "records" / f"{name}.jsonl"
                src_hash = _source_hash(nb)
                state = _read_state(state_path)
                reason = "--force" if force else _rerun_reason(state, src_hash, params, output)
                if reason is None:
                    n_rec = len(read_records(records_path)) if records_path.is_file() else 0
                    outcomes[name] = NotebookOutcome(
                        name,
                        "skipped",
                        reason=f"succeeded on {state.get('finished', '?')} with the same source and parameters",
                        wall_time_s=state.get("wall_time_s"),
                        parameters=params,
                        records=n_rec,
                        output=output,
                    )
                    log(f"{tag}: skipped, already succeeded with the same source and parameters ({_fmt_time(state.get('wall_time_s'))} then)")
                    continue
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
                started = _now()
                base_state = {
                    "notebook": name,
                    "source": str(nb),
                    "source_hash": src_hash,
                    "parameters": params,
                    "params_hash": _params_hash(params),
                    "kernel": kernel_name,
                    "profile": prof["name"],
                    "started": started,
                    "output": str(output.relative_to(out)),
                }
                atomic_write_json(state_path, {**base_state, "status": "running"})
                t0 = time.perf_counter()
                failure = None
                try:
                    papermill.execute_notebook(
                        str(nb),
                        str(output),
                        parameters=injected,
                        kernel_name=kernel_name,
                        progress_bar=progress_bar,
                        cwd=str(nb.parent),
                        execution_timeout=cell_timeout,
                        config=kernel_manager_config(),  # CurveZMQ: no "TCP without encryption" warning
                    )
                except PapermillExecutionError as err:
                    failure = _cell_failure(name, err, output)
                except Exception as err:  # kernel died, timeout, unreadable notebook
                    failure = CellFailure(name, None, None, "<papermill>", type(err).__name__, str(err).strip()[:2000], output)
                wall = time.perf_counter() - t0
                n_rec = len(read_records(records_path)) if records_path.is_file() else 0
                if failure is None:
                    atomic_write_json(state_path, {**base_state, "status": "ok", "finished": _now(), "wall_time_s": wall, "records": n_rec})
                    outcomes[name] = NotebookOutcome(name, "ok", reason, wall, params, n_rec, output)
                    log(f"{tag}: ok in {_fmt_time(wall)}, {n_rec} record(s)")
                else:
                    failed = True
                    atomic_write_json(
                        state_path,
                        {**base_state, "status": "failed", "finished": _now(), "wall_time_s": wall, "error": failure.to_dict()},
                    )
                    outcomes[name] = NotebookOutcome(name, "failed", reason, wall, params, n_rec, output, failure)
                    log(f"{tag}: FAILED after {_fmt_time(wall)}\n  {failure.message()}")
            ordered = [outcomes[nb.stem] for nb in all_nbs]
            results = collect_results(out, ordered, profile_name=prof["name"], data=tier, kernel_name=kernel_name)
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
    run = CourseRun(out, ordered, results, results_path, md, html_path, warnings)
    if not run.ok:
        f = run.failure
        log(f"Fix {f.notebook}.ipynb and rerun the same command: notebooks that succeeded are skipped.")
    return run


# ============================================================================ results.json
def collect_results(
    out: str | os.PathLike,
    outcomes: Sequence[NotebookOutcome],
    *,
    profile_name: str,
    data: str,
    kernel_name: str = DEFAULT_KERNEL,
) -> dict[str, Any]:
    """Gather the records of every notebook whose last run succeeded into the results.json object.

    A failed notebook's partial records are left out (they stay in ``records/``).

    Raises:
        ResultsValidationError: a record or the whole object does not match the schema.
    """
    from geolab import __version__

    out = Path(out)
    records: list[dict[str, Any]] = []
    notebooks = []
    for o in outcomes:
        st = _read_state(out / "state" / f"{o.notebook}.json") or {}
        good = o.status in ("ok", "skipped") or (o.status == "not-run" and st.get("status") == "ok")
        rp = out / "records" / f"{o.notebook}.jsonl"
        recs = read_records(rp) if good and rp.is_file() else []
        for r in recs:
            r["notebook"] = o.notebook
        records.extend(recs)
        notebooks.append(
            {
                "notebook": o.notebook,
                "status": o.status,
                "reason": o.reason,
                "wall_time_s": o.wall_time_s,
                "records": len(recs) if good else o.records,
                "parameters": json.loads(json.dumps(o.parameters, default=str)),
                "output": str(o.output.relative_to(out)) if o.output is not None and o.output.is_relative_to(out) else None,
                "error": o.failure.to_dict() if o.failure else None,
            }
        )
    obj = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "geolab_version": __version__,
        "created": _now(),
        "profile": profile_name,
        "data": data,
        "kernel": kernel_name,
        "simulation": is_simulated(data) or any(is_simulated(r.get("data", "")) for r in records),
        "notebooks": notebooks,
        "records": records,
    }
    validate_results(obj)
    return obj


# ============================================================================ report
_GROUP_KEYS = ("notebook", "experiment", "method", "variant", "data", "arch", "image_size", "epochs")


def summarize(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds of each metric, per group of records.

    A group is (notebook, experiment, method, variant, data, arch, image_size, epochs); records
    that differ only in ``seed`` (and extras) are seeds of one group.

    Returns:
        One dict per group, in first-seen order: the group keys, ``seeds`` (sorted list),
        for each metric ``<m>_mean``, ``<m>_std`` (``None`` with one seed), ``<m>_values``,
        and ``probe_top1_ci`` (:func:`geolab.experiment.bootstrap_interval`, or ``None``).
    """
    from geolab.experiment import bootstrap_interval

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        key = tuple(r.get(k, "main" if k == "experiment" else "") for k in _GROUP_KEYS)
        groups.setdefault(key, []).append(r)
    rows = []
    for key, recs in groups.items():
        row: dict[str, Any] = dict(zip(_GROUP_KEYS, key))
        row["seeds"] = sorted({r.get("seed") for r in recs})
        row["n"] = len(recs)
        for m in (*METRIC_KEYS, *DENSE_KEYS, "wall_time_s", "train_loss"):
            vals = [float(r[m]) for r in recs if r.get(m) is not None]
            row[f"{m}_values"] = vals
            row[f"{m}_mean"] = sum(vals) / len(vals) if vals else None
            if len(vals) > 1:
                mu = row[f"{m}_mean"]
                row[f"{m}_std"] = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1))
            else:
                row[f"{m}_std"] = None
        # a 95% interval that includes the test set's sampling error (bootstrap over test
        # locations and seeds); None for records without per-location hits
        ci = bootstrap_interval(list(recs), row["method"], "probe_top1")
        row["probe_top1_ci"] = list(ci) if ci is not None else None
        rows.append(row)
    return rows


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}"


def _loss(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if std is not None else f"{100 * mean:.2f}"


def _md(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _paper(method: str, which: str) -> str:
    v = PAPER_FMOW_TOP1.get(method, {}).get(which)
    return f"{v:.2f}" if v is not None else "-"


def _plot_group(rows: list[dict[str, Any]], title: str, path: Path, simulation: bool) -> None:
    """Bar chart of linear-probe top-1 per method (mean; dots = seeds; error bar = std), with the
    paper's fMoW linear-probe number as a marker where it has one."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = [r["method"] + (f"\n{r['variant']}" if r["variant"] else "") for r in rows]
    means = [100 * r["probe_top1_mean"] for r in rows]
    stds = [100 * (r["probe_top1_std"] or 0) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.6), dpi=110)
    xs = list(range(len(rows)))
    ax.bar(xs, means, yerr=stds, capsize=4, color="#4C72B0", alpha=0.85, label="mean ± std over seeds")
    for x, r in zip(xs, rows):
        vals = [100 * v for v in r["probe_top1_values"]]
        ax.scatter([x] * len(vals), vals, color="black", s=12, zorder=3, label="one seed" if x == 0 else None)
    paper_x = [x for x, r in zip(xs, rows) if PAPER_FMOW_TOP1.get(r["method"], {}).get("linear_probe") is not None]
    if paper_x:
        ax.scatter(
            paper_x,
            [PAPER_FMOW_TOP1[rows[x]["method"]]["linear_probe"] for x in paper_x],
            marker="_",
            s=600,
            linewidths=2.5,
            color="#C44E52",
            zorder=4,
            label="paper, fMoW linear probe",
        )
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("linear-probe top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title + ("\n(geoworld: simulation, not the paper's data)" if simulation else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def report_markdown(results: Mapping[str, Any], figures: Mapping[tuple[str, str], str] | None = None) -> str:
    """The report as markdown (see :func:`write_report`)."""
    figures = figures or {}
    lines: list[str] = [f"# geolab course run: profile `{results['profile']}`, data `{results['data']}`", ""]
    if results.get("simulation"):
        lines += [f"> {SIMULATION_BANNER}", ""]
    lines += [
        f"geolab {results['geolab_version']}, kernel `{results.get('kernel', '?')}`, written {results['created']}. "
        "Accuracies in percent (mean ± sample std over seeds; no ± with one seed). The paper's "
        "numbers are fMoW-rgb top-1 with ResNet-50 at 224 px after 200 epochs (Ayush et al., "
        "ICCV 2021, [arXiv 2011.09980](https://arxiv.org/abs/2011.09980)).",
        "",
        "## Notebooks",
        "",
        "| notebook | status | wall time | records | note |",
        "| --- | --- | --- | ---: | --- |",
    ]
    total = 0.0
    for nb in results["notebooks"]:
        total += nb.get("wall_time_s") or 0.0
        lines.append(
            f"| {_md(nb['notebook'])} | {nb['status']} | {_fmt_time(nb.get('wall_time_s'))} | "
            f"{nb.get('records', 0)} | {_md(nb.get('reason', ''))} |"
        )
    lines += ["", f"Total notebook time: {_fmt_time(total)} (skipped notebooks count their earlier run).", ""]
    failed = [nb for nb in results["notebooks"] if nb["status"] == "failed"]
    for nb in failed:
        e = nb.get("error") or {}
        lines += [
            f"**{_md(nb['notebook'])} failed** in cell {e.get('cell_index')} (In [{e.get('exec_count')}]) "
            f"`{_md(e.get('first_line', ''))}`: {_md(e.get('ename', ''))}: {_md(e.get('evalue', ''))}. "
            f"The executed notebook `{nb.get('output')}` shows the traceback; its results are left out below.",
            "",
        ]

    rows = summarize(results["records"])
    if not rows:
        lines += ["## Results", "", "No notebook reported results yet.", ""]
    else:
        lines += [
            "## Linear probe and kNN",
            "",
            "Mean ± std over seeds; the interval is a 95% bootstrap over test locations and seeds (it "
            "includes the test set's sampling error). `random-init` is the untrained backbone.",
            "",
            "| notebook | experiment | method | data | arch | image size | epochs | seeds | probe top-1 | 95% interval | probe F1 | kNN top-1 | train loss | paper probe top-1 (fMoW) |",
            "| --- | --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            if r["probe_top1_mean"] is None and r["miou_mean"] is not None:
                continue  # a dense transfer record: see its own table
            method = r["method"] + (f" ({r['variant']})" if r["variant"] else "")
            paper = _paper(r["method"], "linear_probe")
            if r["method"] == "supervised":
                paper = f"{_paper('supervised', 'fine_tuned')} (supervised)"
            lines.append(
                f"| {_md(r['notebook'])} | {_md(r['experiment'])} | {_md(method)} | {_md(r['data'])} | {_md(r['arch'])} | "
                f"{r['image_size']} | {r['epochs']} | {', '.join(map(str, r['seeds']))} | "
                f"{_pct(r['probe_top1_mean'], r['probe_top1_std'])} | {_ci(r.get('probe_top1_ci'))} | "
                f"{_pct(r['probe_f1_mean'], r['probe_f1_std'])} | "
                f"{_pct(r['knn_top1_mean'], r['knn_top1_std'])} | {_loss(r.get('train_loss_mean'))} | {paper} |"
            )
        lines.append("")
        for (nb, exp), fig in figures.items():
            lines += [f"![Linear-probe top-1 per method, {nb} / {exp}]({fig})", ""]
        ft = [r for r in rows if r["finetune_top1_mean"] is not None]
        if ft:
            lines += [
                "## Fine-tuning",
                "",
                "| notebook | experiment | method | data | seeds | fine-tuned top-1 | paper fine-tuned top-1 (fMoW) |",
                "| --- | --- | --- | --- | --- | ---: | ---: |",
            ]
            for r in ft:
                lines.append(
                    f"| {_md(r['notebook'])} | {_md(r['experiment'])} | {_md(r['method'])} | {_md(r['data'])} | "
                    f"{', '.join(map(str, r['seeds']))} | {_pct(r['finetune_top1_mean'], r['finetune_top1_std'])} | "
                    f"{_paper(r['method'], 'fine_tuned')} |"
                )
            lines.append("")
        dense = [r for r in rows if r["miou_mean"] is not None]
        if dense:
            lines += [
                "## Dense transfer (segmentation of geoworld masks)",
                "",
                "| notebook | initialisation | data | seeds | mIoU | pixel accuracy |",
                "| --- | --- | --- | --- | ---: | ---: |",
            ]
            for r in dense:
                lines.append(
                    f"| {_md(r['notebook'])} | {_md(r['method'])} | {_md(r['data'])} | {', '.join(map(str, r['seeds']))} | "
                    f"{_pct(r['miou_mean'], r['miou_std'])} | {_pct(r['pixel_acc_mean'], r['pixel_acc_std'])} |"
                )
            lines.append("")
    lines += [
        "## The paper's numbers",
        "",
        "fMoW-rgb top-1 accuracy (%), ResNet-50, Ayush et al. 2021. These are the paper's claims; "
        "nothing in this run reproduces them unless its data is `fmow` with the `gpu-full` profile.",
        "",
        "| method | linear probe (frozen) | fine-tuned |",
        "| --- | ---: | ---: |",
    ]
    for m, v in PAPER_FMOW_TOP1.items():
        lp = f"{v['linear_probe']:.2f}" if v["linear_probe"] is not None else "-"
        lines.append(f"| {PAPER_METHOD_NAMES[m]} (`{m}`) | {lp} | {v['fine_tuned']:.2f} |")
    lines.append("")
    return "\n".join(lines)


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; }}
th {{ background: #f3f3f3; }}
blockquote {{ background: #fff4d6; border-left: 0.4rem solid #e0a800; margin: 1rem 0; padding: 0.5rem 1rem; }}
img {{ max-width: 100%; }}
code {{ background: #f3f3f3; padding: 0 0.2rem; }}
</style></head>
<body>
{body}
</body></html>
"""


def report_html(markdown_text: str, title: str = "geolab course report") -> str:
    """Render the report's markdown as a standalone HTML page (mistune, with tables)."""
    import mistune

    body = mistune.create_markdown(escape=True, plugins=["table"])(markdown_text)
    return _HTML_PAGE.format(title=html.escape(title), body=body)


def write_report(out: str | os.PathLike, results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into the run folder.

    Returns:
        The markdown and HTML paths.
    """
    out = Path(out)
    figures: dict[tuple[str, str], str] = {}
    rows = summarize(results["records"])
    by_exp: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["probe_top1_mean"] is not None:
            by_exp.setdefault((r["notebook"], r["experiment"]), []).append(r)
    for (nb, exp), grp in by_exp.items():
        fname = f"figures/probe_top1_{re.sub(r'[^A-Za-z0-9_.-]+', '-', nb)}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', exp)}.png"
        sim = any(is_simulated(r["data"]) for r in grp)
        _plot_group(grp, f"{nb} / {exp}: linear-probe top-1", out / fname, sim)
        figures[(nb, exp)] = fname
    md_text = report_markdown(results, figures)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, md_text)
    atomic_write_text(html_path, report_html(md_text, f"geolab course run: {results['profile']} / {results['data']}"))
    return md_path, html_path


def rebuild_report(out: str | os.PathLike) -> tuple[Path, Path]:
    """Re-read ``<out>/results.json`` (validated) and write the report again.

    Raises:
        CourseError: no results.json in ``out``.
    """
    path = Path(out) / "results.json"
    if not path.is_file():
        raise CourseError(f"{path} does not exist; run `geolab course run --out {out}` first.")
    results = json.loads(path.read_text())
    validate_results(results)
    return write_report(out, results)


def describe_plan(
    profile: str | Mapping[str, Any],
    *,
    data: str | None = None,
    only: Sequence[str] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """What ``course run`` would inject into each notebook, without running anything."""
    prof = load_profile(profile)
    over = dict(overrides or {})
    over["data"] = data or over.get("data") or prof["common"].get("data") or "geoworld"
    check_overrides(over, discover_notebooks(notebooks_dir), prof)
    lines = [f"profile {prof['name']}: {prof['description']}".rstrip(": ")]
    for nb in discover_notebooks(notebooks_dir, only):
        declared = declared_parameters(nb)
        params = notebook_parameters(prof, nb.stem, declared, over)
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "(defaults only)"
        lines.append(f"  {nb.stem}: {shown}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("Use `geolab course run` (see `geolab course run --help`).")
