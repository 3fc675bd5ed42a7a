"""The course report: tables of result records over seeds, plots and the paper's numbers.

:func:`summarize` gives mean and std over seeds of every group of records, :func:`write_report`
writes the markdown and HTML report with its plots and the paper's numbers, and
:func:`rebuild_report` writes it again from a run's results.json.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geolab.course import health
from geolab.course.records import (
    DENSE_KEYS,
    FINETUNE_EXPERIMENT,
    LABEL_EXPERIMENT,
    METRIC_KEYS,
    CourseError,
    validate_results,
)
from geolab.course.state import fmt_time
from geolab.course.stats import (
    bootstrap_interval,
    frozen_finetuned_table,
    label_efficiency_table,
    seed_mean_std,
    stuck_records,
)
from geolab.io import atomic_write, atomic_write_text, read_json
from geolab.paper import PAPER_FMOW_TOP1, PAPER_METHOD_NAMES
from geolab.tiers import is_simulated

SIMULATION_BANNER = (
    "**Simulation.** Results on `geoworld` come from a procedurally generated simulation of an "
    "fMoW-like world, not from satellite images. They show how the methods behave on "
    "simulated data; they are not the paper's claims and cannot be compared number for number "
    "with the paper's fMoW results shown beside them."
)

#: Experiments with a section of their own (geolab.course.labels), left out of the main table.
_OWN_SECTION = (LABEL_EXPERIMENT, FINETUNE_EXPERIMENT)
_GROUP_KEYS = ("notebook", "experiment", "method", "variant", "data", "arch", "image_size", "epochs")


def summarize(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds of each metric, per group of records.

    A group is (notebook, experiment, method, variant, data, arch, image_size, epochs); records
    that differ only in ``seed`` (and extras) are seeds of one group.

    Returns:
        One dict per group, in first-seen order: the group keys, ``seeds`` (sorted list),
        for each metric ``<m>_mean``, ``<m>_std`` (``None`` with one seed), ``<m>_values``,
        and ``probe_top1_ci``, ``finetune_top1_ci`` (:func:`geolab.course.stats.bootstrap_interval`, or ``None``).
    """
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
            row[f"{m}_mean"], row[f"{m}_std"] = seed_mean_std(vals)
        # a 95% interval that includes the test set's sampling error (bootstrap over test
        # locations and seeds); None for records without per-location hits
        ci = bootstrap_interval([dict(r) for r in recs], row["method"], "probe_top1")
        row["probe_top1_ci"] = list(ci) if ci is not None else None
        ci = bootstrap_interval([dict(r) for r in recs], row["method"], "finetune_top1")
        row["finetune_top1_ci"] = list(ci) if ci is not None else None
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
    """Bar chart of linear-probe top-1 per method, for the report.

    Bar chart of linear-probe top-1 per method (mean; dots = seeds; error bar = std), with the
    paper's fMoW linear-probe number as a marker where it has one.
    """
    import matplotlib  # noqa: PLC0415 - CLI start-up; the Agg backend only when the report draws

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415 - CLI start-up; after the backend is chosen

    labels = [r["method"] + (f"\n{r['variant']}" if r["variant"] else "") for r in rows]
    means = [100 * r["probe_top1_mean"] for r in rows]
    stds = [100 * (r["probe_top1_std"] or 0) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.6), dpi=110)
    xs = list(range(len(rows)))
    ax.bar(xs, means, yerr=stds, capsize=4, color="#4C72B0", alpha=0.85, label="mean ± std over seeds")
    for x, r in zip(xs, rows):
        vals = [100 * v for v in r["probe_top1_values"]]
        ax.scatter([x] * len(vals), vals, color="black", s=12, zorder=3, label="one seed" if x == 0 else None)
    paper = [(x, v) for x, r in zip(xs, rows)
             if (v := PAPER_FMOW_TOP1.get(r["method"], {}).get("linear_probe")) is not None]
    if paper:
        ax.scatter(
            [x for x, _ in paper],
            [v for _, v in paper],
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
    try:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)


def _labels_section(records: Sequence[Mapping[str, Any]], figures: Mapping[tuple[str, str], str]) -> list[str]:
    """Label efficiency and fine-tuning (the records of :mod:`geolab.course.labels`), when a notebook made them."""
    recs = [dict(r) for r in records]
    lines: list[str] = []
    table = label_efficiency_table(recs)
    if len(table):
        fractions = sorted(table["label_fraction"].unique())
        lines += ["## Label efficiency", "",
                  "Linear-probe top-1 (%) with a fraction of the training labels: whole training locations drawn per "
                  "class with each run's seed (every class kept), C chosen on val, the whole test split scored; "
                  "mean over seeds [95% interval over test locations and seeds]. `supervised`'s encoder was trained "
                  "on all the labels (only its probe sees the fraction): a reference, not a model trained on the "
                  "fraction. `random-init` is the untrained backbone.", "",
                  "| method | " + " | ".join(f"{100 * f:g}% labels" for f in fractions) + " |",
                  "| --- |" + " ---: |" * len(fractions)]
        for method, grp in table.groupby("method", sort=False):
            cells = {f: "-" for f in fractions}
            for _, row in grp.iterrows():
                has_ci = row["ci low"] is not None and not math.isnan(row["ci low"])
                ci = f" [{row['ci low']:.1f}, {row['ci high']:.1f}]" if has_ci else ""
                cells[row["label_fraction"]] = f"{row['mean']:.1f}{ci}"
            lines.append(f"| {_md(method)} | " + " | ".join(cells[f] for f in fractions) + " |")
        images = table.groupby("label_fraction")["labelled images"].mean()
        lines += ["", "Labelled images (mean over runs): "
                  + ", ".join(f"{100 * f:g}%: {images[f]:.0f}" for f in fractions) + ".", ""]
        lines += [f"![Label-efficiency curves, {nb}]({fig})" for (nb, exp), fig in figures.items()
                  if exp == LABEL_EXPERIMENT] + [""]
    if any(r.get("experiment") == FINETUNE_EXPERIMENT for r in recs):
        ft = frozen_finetuned_table(recs)
        lines += ["## Frozen and fine-tuned", "",
                  "Top-1 (%) with all the training labels: the frozen linear probe and end-to-end fine-tuning (a "
                  "short, seeded schedule: see the records' `finetune_epochs`, `finetune_steps`), mean [95% interval "
                  "over test locations and seeds]; `random-init` fine-tuned is training from scratch. So short a "
                  "schedule can leave the new linear layer below the frozen probe: an ordering of starting points, "
                  "not the paper's gain. The paper's columns are fMoW's, not comparable number for number.", "",
                  "| method | frozen probe | fine-tuned | fine-tuned seeds "
                  "| paper frozen (fMoW) | paper fine-tuned (fMoW) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for method, row in ft.iterrows():
            lines.append(f"| {_md(method)} | {row['frozen probe']} | {row['fine-tuned']} | {row['fine-tuned seeds']} "
                         f"| {_paper(method, 'linear_probe')} | {_paper(method, 'fine_tuned')} |")
        lines.append("")
    return lines


def _plot_labels(records: list[Mapping[str, Any]], path: Path, simulation: bool) -> None:
    """The label-efficiency curves (:func:`geolab.viz.label_efficiency_curves`) as a PNG, for the report."""
    import matplotlib  # noqa: PLC0415 - CLI start-up; the Agg backend only when the report draws

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415 - CLI start-up; after the backend is chosen

    from geolab.viz.curves import label_efficiency_curves  # noqa: PLC0415 - CLI start-up (matplotlib)

    ax = label_efficiency_curves(records, title="label efficiency: linear-probe top-1",
                                 note="geoworld: simulation, not the paper's data" if simulation else None)
    try:
        with atomic_write(path, "wb") as fh:
            ax.figure.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(ax.figure)


def _expected_section(results: Mapping[str, Any]) -> list[str]:
    """The main comparison beside the robustness benchmark's range over development worlds (cpu profile only)."""
    if results.get("profile") != health.EXPECTED_PROFILE or not results.get("simulation"):
        return []
    seen, main = set(), []
    for r in results["records"]:
        if r.get("experiment", "main") == "main" and r.get("key") not in seen:
            seen.add(r.get("key"))
            main.append(r)
    table = health.beside_expected(main)
    if table is None:
        return []
    stuck = [f"{m} seed {r.get('seed')}" for m in table.index for r in stuck_records(main, m)]
    lines = ["## Beside the development worlds", "",
             f"This run's mean probe top-1 beside the range that the same comparison gave on the robustness "
             f"benchmark's development worlds (`bench/bench_worlds.py`, records in docs/reference/"
             f"{health.EXPECTED_FILE}). Stuck runs here (probe below random init + {health.STUCK_MARGIN:g} points): "
             f"{', '.join(stuck) if stuck else 'none'}.", "",
             "| method | this run | seeds | dev worlds | range of world means | range of single runs | this run is |",
             "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for method, row in table.iterrows():
        lines.append(f"| {_md(method)} | {row['this run']:.1f} | {row['seeds']} | {row['dev worlds']} | "
                     f"{row['range of world means']} | {row['range of single runs']} | {row['this run is']} |")
    return [*lines, ""]


def _header_section(results: Mapping[str, Any]) -> list[str]:
    """The title, the simulation banner and what the numbers are."""
    lines: list[str] = [f"# geolab course run: profile `{results['profile']}`, data `{results['data']}`", ""]
    if results.get("simulation"):
        lines += [f"> {SIMULATION_BANNER}", ""]
    return [
        *lines,
        f"geolab {results['geolab_version']}, kernel `{results.get('kernel', '?')}`, written {results['created']}. "
        "Accuracies in percent (mean ± sample std over seeds; no ± with one seed). The paper's "
        "numbers are fMoW-rgb top-1 with ResNet-50 at 224 px after 200 epochs (Ayush et al., "
        "ICCV 2021, [arXiv 2011.09980](https://arxiv.org/abs/2011.09980)).",
        "",
    ]


def _notebooks_section(notebooks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The notebooks' status, time and record count, then what each failed notebook raised."""
    lines = [
        "## Notebooks",
        "",
        "| notebook | status | wall time | records | note |",
        "| --- | --- | --- | ---: | --- |",
    ]
    total = 0.0
    for nb in notebooks:
        total += nb.get("wall_time_s") or 0.0
        lines.append(
            f"| {_md(nb['notebook'])} | {nb['status']} | {fmt_time(nb.get('wall_time_s'))} | "
            f"{nb.get('records', 0)} | {_md(nb.get('reason', ''))} |"
        )
    lines += ["", f"Total notebook time: {fmt_time(total)} (skipped notebooks count their earlier run).", ""]
    for nb in notebooks:
        if nb["status"] != "failed":
            continue
        e = nb.get("error") or {}
        lines += [
            f"**{_md(nb['notebook'])} failed** in cell {e.get('cell_index')} (In [{e.get('exec_count')}]) "
            f"`{_md(e.get('first_line', ''))}`: {_md(e.get('ename', ''))}: {_md(e.get('evalue', ''))}. "
            f"The executed notebook `{nb.get('output')}` shows the traceback; its results are left out below.",
            "",
        ]
    return lines


def _probe_section(rows: Sequence[Mapping[str, Any]], figures: Mapping[tuple[str, str], str]) -> list[str]:
    """The main table (linear probe, kNN, loss, the paper's number) and its figures."""
    lines = [
        "## Linear probe and kNN",
        "",
        "Mean ± std over seeds; the interval is a 95% bootstrap over test locations and seeds (it "
        "includes the test set's sampling error). `random-init` is the untrained backbone.",
        "",
        "| notebook | experiment | method | data | arch | image size | epochs | seeds | probe top-1 | 95% interval "
        "| probe F1 | kNN top-1 | train loss | paper probe top-1 (fMoW) |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if (r["probe_top1_mean"] is None and r["miou_mean"] is not None) or r["experiment"] in _OWN_SECTION:
            continue  # a dense transfer, label-efficiency or fine-tuning record: see its own table
        method = r["method"] + (f" ({r['variant']})" if r["variant"] else "")
        paper = _paper(r["method"], "linear_probe")
        if r["method"] == "supervised":
            paper = f"{_paper('supervised', 'fine_tuned')} (supervised)"
        lines.append(
            f"| {_md(r['notebook'])} | {_md(r['experiment'])} | {_md(method)} | {_md(r['data'])} "
            f"| {_md(r['arch'])} | "
            f"{r['image_size']} | {r['epochs']} | {', '.join(map(str, r['seeds']))} | "
            f"{_pct(r['probe_top1_mean'], r['probe_top1_std'])} | {_ci(r.get('probe_top1_ci'))} | "
            f"{_pct(r['probe_f1_mean'], r['probe_f1_std'])} | "
            f"{_pct(r['knn_top1_mean'], r['knn_top1_std'])} | {_loss(r.get('train_loss_mean'))} | {paper} |"
        )
    lines.append("")
    for (nb, exp), fig in figures.items():
        lines += [f"![Linear-probe top-1 per method, {nb} / {exp}]({fig})", ""]
    return lines


def _dense_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dense transfer (segmentation) records: mIoU and pixel accuracy, when a notebook made them."""
    dense = [r for r in rows if r["miou_mean"] is not None]
    if not dense:
        return []
    lines = [
        "## Dense transfer (segmentation of geoworld masks)",
        "",
        "| notebook | initialisation | data | seeds | mIoU | pixel accuracy |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    for r in dense:
        lines.append(
            f"| {_md(r['notebook'])} | {_md(r['method'])} | {_md(r['data'])} "
            f"| {', '.join(map(str, r['seeds']))} | "
            f"{_pct(r['miou_mean'], r['miou_std'])} | {_pct(r['pixel_acc_mean'], r['pixel_acc_std'])} |"
        )
    return [*lines, ""]


def _paper_section() -> list[str]:
    """The paper's fMoW numbers, always last."""
    lines = [
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
    return [*lines, ""]


def report_markdown(results: Mapping[str, Any], figures: Mapping[tuple[str, str], str] | None = None) -> str:
    """The report as markdown (see :func:`write_report`), one section after another.

    Args:
        results: a run's results (``results.json``: profile, data, notebooks, records, ...).
        figures: the plots written beside it, by (notebook, experiment).

    Returns:
        The markdown text.
    """
    figures = figures or {}
    lines = _header_section(results) + _notebooks_section(results["notebooks"])
    rows = summarize(results["records"])
    if not rows:
        lines += ["## Results", "", "No notebook reported results yet.", ""]
    else:
        lines += _probe_section(rows, figures)
        lines += _expected_section(results)
        lines += _labels_section(results["records"], figures)
        lines += _dense_section(rows)
    lines += _paper_section()
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
    import mistune  # noqa: PLC0415 - optional extra (geolab[lab])

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
        if r["probe_top1_mean"] is not None and r["experiment"] not in _OWN_SECTION:
            by_exp.setdefault((r["notebook"], r["experiment"]), []).append(r)
    for (nb, exp), grp in by_exp.items():
        fname = f"figures/probe_top1_{re.sub(r'[^A-Za-z0-9_.-]+', '-', nb)}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', exp)}.png"
        sim = any(is_simulated(r["data"]) for r in grp)
        _plot_group(grp, f"{nb} / {exp}: linear-probe top-1", out / fname, sim)
        figures[(nb, exp)] = fname
    for nb in dict.fromkeys(r["notebook"] for r in results["records"] if r.get("experiment") == LABEL_EXPERIMENT):
        fname = f"figures/label_efficiency_{re.sub(r'[^A-Za-z0-9_.-]+', '-', nb)}.png"
        recs = [r for r in results["records"] if r.get("notebook") == nb]
        _plot_labels(recs, out / fname, any(is_simulated(r["data"]) for r in recs))
        figures[(nb, LABEL_EXPERIMENT)] = fname
    md_text = report_markdown(results, figures)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, md_text)
    atomic_write_text(html_path, report_html(md_text, f"geolab course run: {results['profile']} / {results['data']}"))
    return md_path, html_path


def rebuild_report(out: str | os.PathLike) -> tuple[Path, Path]:
    """Re-read ``<out>/results.json`` (validated) and write the report again.

    Raises:
        CourseError: no results.json in ``out``.
        ValueError: results.json is not valid JSON (file, line and column named; :func:`geolab.io.read_json`).
    """
    path = Path(out) / "results.json"
    if not path.is_file():
        raise CourseError(f"{path} does not exist; run `geolab course run --out {out}` first.")
    results = read_json(path, f"rerun `geolab course run --out {out}` (with the same options) to write it again: "
                              "notebooks that succeeded are skipped and their records gathered anew.")
    validate_results(results)
    return write_report(out, results)
