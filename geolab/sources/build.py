"""What every manifest builder returns and how it is saved: the kept rows, the skipped files and why.

A builder (:func:`geolab.sources.fmow.build_fmow_manifest`,
:func:`geolab.sources.official_csv.build_from_official_csv`,
:func:`geolab.sources.geoimagenet.build_geoimagenet_manifest`) scans its source into a
:class:`BuildReport` and hands it to :func:`save_build`, the one routine that validates and writes
the manifest and lists every skipped file in ``<manifest>.skipped.csv``; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from geolab.errors import UserError
from geolab.io import atomic_write_text
from geolab.manifest import save_manifest, validate_manifest


class NoImagesError(UserError, ValueError):
    """A source folder in which no image could be used; the message names the first problems."""


@dataclass(frozen=True)
class Skipped:
    """One file a builder did not put in the manifest, and why."""

    path: str
    reason: str


@dataclass
class BuildReport:
    """What a manifest builder did: the rows it kept and every file it left out.

    Attributes:
        manifest: the manifest table (before saving; paths absolute).
        skipped: files left out, each with its reason.
        source: what was read (a folder or a CSV), for messages.
        manifest_path: where the manifest was written (``None`` until saved).
    """

    manifest: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    source: str = ""
    manifest_path: Path | None = None

    @property
    def n_images(self) -> int:
        """Images kept (rows of the manifest)."""
        return len(self.manifest)

    @property
    def n_locations(self) -> int:
        """Distinct locations among the kept images."""
        return int(self.manifest["location_id"].nunique()) if len(self.manifest) else 0

    def skipped_by_reason(self) -> dict[str, int]:
        """Counts of skipped files per reason kind (the text before the first colon)."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            kind = s.reason.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self, max_listed: int = 10) -> str:
        """A few lines for people: counts, and the first skipped files with their reasons."""
        lines = [
            f"{self.source}: {self.n_images} images, {self.n_locations} locations"
            + (f" -> {self.manifest_path}" if self.manifest_path else "")
        ]
        if len(self.manifest):
            per_split = self.manifest["split"].value_counts().sort_index()
            lines.append("  per split: " + ", ".join(f"{k} {v}" for k, v in per_split.items()))
        if self.skipped:
            kinds = ", ".join(f"{k} {v}" for k, v in self.skipped_by_reason().items())
            lines.append(f"  skipped {len(self.skipped)} files ({kinds}):")
            for s in self.skipped[:max_listed]:
                lines.append(f"    {s.path}: {s.reason}")
            if len(self.skipped) > max_listed:
                lines.append(f"    ... and {len(self.skipped) - max_listed} more")
            if self.manifest_path is not None:
                lines.append(f"  the full list is in {skipped_report_path(self.manifest_path)}")
        return "\n".join(lines)


def skipped_report_path(manifest_path: str | os.PathLike) -> Path:
    """Where a builder writes the list of skipped files for ``manifest_path``."""
    p = Path(manifest_path)
    return p.with_name(p.name + ".skipped.csv")


def save_build(report: BuildReport, out: str | os.PathLike) -> BuildReport:
    """Validate and save ``report.manifest`` to ``out`` and the skipped list beside it.

    Args:
        report: what a builder returned.
        out: the manifest file (``.parquet`` or ``.csv``).

    Returns:
        The same report with ``manifest_path`` set.

    Raises:
        ValueError: when nothing was kept (the message names the first skipped files).
        geolab.manifest.ManifestError: when the table breaks the manifest contract.
    """
    out = Path(out)
    if len(report.manifest) == 0:
        first = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3])
        raise NoImagesError(
            f"No usable images found in {report.source}; nothing written to {out}."
            + (f" First problems: {first}" if first else "")
        )
    df = validate_manifest(report.manifest, source=report.source, check_files=False)
    save_manifest(df, out)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "reason"])
    for s in report.skipped:
        writer.writerow([s.path, s.reason])
    atomic_write_text(skipped_report_path(out), buf.getvalue())
    report.manifest_path = out
    return report


def drop_label_conflicts(df: pd.DataFrame) -> tuple[pd.DataFrame, list[Skipped]]:
    """Leave out every image of a location whose images disagree on the label."""
    if df.empty:
        return df, []
    n_labels = df.groupby("location_id")["label"].transform("nunique")
    bad = df[n_labels > 1]
    skipped = [
        Skipped(p, f"label disagreement: location {loc} has images labelled "
                   f"{sorted(df.loc[df['location_id'] == loc, 'label'].unique())}")
        for p, loc in zip(bad["path"], bad["location_id"])
    ]
    return df[n_labels <= 1].reset_index(drop=True), skipped
