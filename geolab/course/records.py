"""Result records: what notebooks report with :func:`record_result`, and their checks against the schema.

The schema is ``data_manifests/results.schema.json``; it covers single records and results.json.

A record is one training/evaluation run: ``method``, ``data``, ``arch``, ``image_size``,
``epochs``, ``seed`` and the metrics as fractions in [0, 1]. In a course run the records of a
notebook are appended, one JSON line each, to ``<run>/records/<notebook>.jsonl``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import filelock

from geolab import paths
from geolab.errors import UserError
from geolab.tiers import TIERS as DATA_TIERS

RESULTS_SCHEMA_VERSION = 1
#: Record keys that hold accuracies (fractions in [0, 1]).
METRIC_KEYS: tuple[str, ...] = ("probe_top1", "probe_f1", "knn_top1", "finetune_top1")
#: Dense transfer metrics (notebook 07's records), fractions in [0, 1]; reported in their own table.
DENSE_KEYS: tuple[str, ...] = ("miou", "pixel_acc")


# ============================================================================ errors
class CourseError(UserError):
    """A problem with the run set-up whose message says what to do.

    For example an unknown profile, a missing kernel or a bad manifest option.
    """


class ResultsValidationError(UserError, ValueError):
    """A result record or results.json does not match ``data_manifests/results.schema.json``."""


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the timestamps of records and state files)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
        import jsonschema  # noqa: PLC0415 - optional extra (geolab[lab], comes with nbformat)
    except ImportError as exc:  # pragma: no cover - jsonschema comes with nbformat
        raise CourseError("jsonschema is missing; run `make setup` (it installs geolab[lab]).") from exc
    schema = results_schema()
    if defn is not None:
        schema = {**schema, "$ref": f"#/$defs/{defn}"}
        top_level = ("required", "properties", "type", "additionalProperties")
        schema = {k: v for k, v in schema.items() if k not in top_level}
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
    """Numpy scalars/arrays, torch scalars and paths become plain JSON values."""
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
    rec.setdefault("recorded_at", now())
    if results_path:
        rec.setdefault("notebook", Path(results_path).stem)
    validate_record(rec, require_notebook=bool(results_path))
    if not results_path:
        return rec
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    # the lock lives in a hidden file beside the records (filelock truncates the file it locks)
    with filelock.FileLock(path.with_name(f".{path.name}.lock")):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
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
