"""The run folder's bookkeeping: notebook outcomes and state files, reruns, and results.json.

What happened to each notebook (its outcome and state file), whether a notebook must run again,
and the results.json gathered from the notebooks that succeeded.

``<run>/state/<name>.json`` holds a notebook's status, wall time, and the hash of its source
and parameters; a notebook that succeeded with the same source and parameters is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from geolab import __version__
from geolab.course.profiles import DEFAULT_KERNEL, RUNNER_PARAMETERS
from geolab.course.records import RESULTS_SCHEMA_VERSION, now, read_records, validate_results
from geolab.io import atomic_write_json
from geolab.paths import RunFolder
from geolab.tiers import Tier, is_simulated


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
        """The failure as stored in state files and results.json (without the output path)."""
        return {
            "cell_index": self.cell_index,
            "exec_count": self.exec_count,
            "first_line": self.first_line,
            "ename": self.ename,
            "evalue": self.evalue,
        }


#: What happened to a notebook in a run (:class:`NotebookOutcome`).
Status = Literal["ok", "skipped", "failed", "not-run"]


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
    status: Status
    reason: str = ""
    wall_time_s: float | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    records: int = 0
    output: Path | None = None
    failure: CellFailure | None = None


# ============================================================================ state
def source_hash(notebook: Path) -> str:
    """Hash of cell types and sources (outputs and metadata do not count)."""
    import nbformat  # noqa: PLC0415 - optional extra (geolab[lab]); CLI start-up

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def params_hash(params: Mapping[str, Any]) -> str:
    """Hash of the injected parameters (the runner's own ``results_path``/``work_dir`` do not count)."""
    text = json.dumps({k: v for k, v in params.items() if k not in RUNNER_PARAMETERS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_state(path: Path) -> dict[str, Any] | None:
    """A notebook's state file; ``None`` when there is none, ``{"status": "corrupt"}`` when unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return {"status": "corrupt"}


def write_state(path: Path, base: Mapping[str, Any], status: str, **extra: Any) -> None:
    """Write a notebook's state file (atomically): ``base`` with ``status`` and ``extra`` keys."""
    atomic_write_json(path, {**base, "status": status, **extra})


def _diff_params(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    parts = []
    for k in sorted(set(old) | set(new)):
        if k in RUNNER_PARAMETERS:
            continue
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if a != b:
            parts.append(f"{k} {a!r} -> {b!r}")
    return ", ".join(parts) or "parameters changed"


def rerun_reason(state: dict[str, Any] | None, src_hash: str, params: Mapping[str, Any], output: Path) -> str | None:
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
    if state.get("params_hash") != params_hash(params):
        return "parameters changed: " + _diff_params(state.get("parameters", {}), params)
    if not output.is_file():
        return f"its executed notebook {output} is missing"
    return None


def fmt_time(seconds: float | None) -> str:
    """Seconds as ``12.3 s``, ``4 min 05 s`` or ``1 h 02 min`` (``-`` for None)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


# ============================================================================ results.json
def collect_results(
    out: str | os.PathLike,
    outcomes: Sequence[NotebookOutcome],
    *,
    profile_name: str,
    data: Tier,
    kernel_name: str = DEFAULT_KERNEL,
) -> dict[str, Any]:
    """Gather the records of every notebook whose last run succeeded into the results.json object.

    A failed notebook's partial records are left out (they stay in ``records/``).

    Raises:
        ResultsValidationError: a record or the whole object does not match the schema.
    """
    out = Path(out)
    records: list[dict[str, Any]] = []
    notebooks = []
    for o in outcomes:
        st = read_state(RunFolder(out).state_file(o.notebook)) or {}
        good = o.status in ("ok", "skipped") or (o.status == "not-run" and st.get("status") == "ok")
        rp = RunFolder(out).records_file(o.notebook)
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
                "output": (str(o.output.relative_to(out))
                           if o.output is not None and o.output.is_relative_to(out) else None),
                "error": o.failure.to_dict() if o.failure else None,
            }
        )
    obj = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "geolab_version": __version__,
        "created": now(),
        "profile": profile_name,
        "data": data,
        "kernel": kernel_name,
        "simulation": is_simulated(data) or any(is_simulated(r.get("data", "")) for r in records),
        "notebooks": notebooks,
        "records": records,
    }
    validate_results(obj)
    return obj
