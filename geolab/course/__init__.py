"""The course: its batch runner, result records and report, and the experiments and analyses its notebooks call.

Modules, one job each:

* :mod:`geolab.course.records`: result records, their schema and checks (``record_result``).
* :mod:`geolab.course.profiles`: profiles and the parameters each notebook gets.
* :mod:`geolab.course.state`: the run folder's bookkeeping and results.json.
* :mod:`geolab.course.runner`: the papermill batch runner (``geolab course run``).
* :mod:`geolab.course.report`: the markdown/HTML report and its plots.
* :mod:`geolab.course.experiment`: one pre-training run + its evaluation = one record.
* :mod:`geolab.course.ablation`, :mod:`geolab.course.invariance`, :mod:`geolab.course.transfer`:
  the analyses of notebooks 05, 06 and 07.

Their statistics (means over seeds, bootstrap intervals, method tables) are :mod:`geolab.stats`, below
both the course and the plots of :mod:`geolab.viz`.

This package re-exports the runner's public names (``from geolab import course;
course.record_result(...)``); the experiment and analysis modules are imported by name
(``from geolab.course.experiment import run_experiment``), so that ``import geolab.course``
stays light for the command line.
"""

from __future__ import annotations

from geolab.course.profiles import (
    DEFAULT_KERNEL,
    NOTEBOOK_PATTERN,
    RUNNER_PARAMETERS,
    check_kernel,
    check_overrides,
    declared_parameters,
    describe_plan,
    discover_notebooks,
    load_profile,
    notebook_parameters,
)
from geolab.course.records import (
    DATA_TIERS,
    DENSE_KEYS,
    METRIC_KEYS,
    RESULTS_SCHEMA_VERSION,
    CourseError,
    ResultsValidationError,
    read_records,
    record_result,
    results_schema,
    schema_path,
    validate_record,
    validate_results,
)
from geolab.course.report import (
    SIMULATION_BANNER,
    rebuild_report,
    report_html,
    report_markdown,
    summarize,
    write_report,
)
from geolab.course.runner import TIERS_NEEDING_MANIFEST, CoursePlan, CourseRun, default_out, plan_course, run_course
from geolab.course.state import CellFailure, NotebookOutcome, collect_results

__all__ = [
    "DATA_TIERS",
    "DEFAULT_KERNEL",
    "DENSE_KEYS",
    "METRIC_KEYS",
    "NOTEBOOK_PATTERN",
    "RESULTS_SCHEMA_VERSION",
    "RUNNER_PARAMETERS",
    "SIMULATION_BANNER",
    "TIERS_NEEDING_MANIFEST",
    "CellFailure",
    "CourseError",
    "CoursePlan",
    "CourseRun",
    "NotebookOutcome",
    "ResultsValidationError",
    "check_kernel",
    "check_overrides",
    "collect_results",
    "declared_parameters",
    "default_out",
    "describe_plan",
    "discover_notebooks",
    "load_profile",
    "notebook_parameters",
    "plan_course",
    "read_records",
    "rebuild_report",
    "record_result",
    "report_html",
    "report_markdown",
    "results_schema",
    "run_course",
    "schema_path",
    "summarize",
    "validate_record",
    "validate_results",
    "write_report",
]
