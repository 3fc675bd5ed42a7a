"""Summaries of a loaded manifest: counts, revisits and time spans (what ``geolab data stats`` prints).

:func:`manifest_stats` gives the numbers, :func:`format_stats` the text. Both take a table already
validated by :mod:`geolab.manifest` (``location_id``, ``label``, ``split`` as text, ``timestamp`` as UTC
times); they import nothing from it, so :mod:`geolab.manifest` re-exports them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def manifest_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Counts and revisit statistics of a (validated) manifest.

    Args:
        df: a loaded manifest.

    Returns:
        A dict with ``images``, ``locations``, ``labels`` (counts), ``splits`` and
        ``per_label`` (``{name: {"images": n, "locations": n}}``), ``images_per_location``
        (``min/median/mean/max`` and ``histogram`` {revisits: locations}),
        ``time_span_days`` per location (``min/median/mean/max``: last minus first image),
        ``singleton_share`` (share of images whose location has one image: their temporal
        positive falls back to the same image) and ``time_range`` (first, last; ISO 8601).
    """
    per_loc = df.groupby("location_id", sort=False)
    counts = per_loc.size()
    span = (per_loc["timestamp"].max() - per_loc["timestamp"].min()).dt.total_seconds() / 86400.0

    def summary(s: pd.Series) -> dict[str, float]:
        return {
            "min": float(s.min()),
            "median": float(s.median()),
            "mean": float(s.mean()),
            "max": float(s.max()),
        }

    def groups(col: str) -> dict[str, dict[str, int]]:
        g = df.groupby(col, sort=True)
        return {
            str(k): {"images": int(v), "locations": int(n)}
            for (k, v), n in zip(g.size().items(), g["location_id"].nunique().to_numpy())
        }

    return {
        "images": int(len(df)),
        "locations": int(len(counts)),
        "labels": int(df["label"].nunique()),
        "splits": groups("split"),
        "per_label": groups("label"),
        "images_per_location": {
            **summary(counts),
            "histogram": {int(k): int(v) for k, v in counts.value_counts().sort_index().items()},
        },
        "time_span_days": summary(span),
        "singleton_share": float((counts == 1).sum() / len(df)) if len(df) else 0.0,
        "time_range": [df["timestamp"].min().isoformat(), df["timestamp"].max().isoformat()],
    }


def format_stats(df: pd.DataFrame) -> str:
    """:func:`manifest_stats` as readable text (what ``geolab data stats`` prints).

    Args:
        df: a loaded manifest.

    Returns:
        Several small tables: per split, per label, images per location, time spans.
    """
    st = manifest_stats(df)
    lines = []
    src = df.attrs.get("source")
    if src:
        lines.append(f"manifest: {src}")
    lines.append(
        f"{st['images']} images, {st['locations']} locations, {st['labels']} labels; "
        f"time range {st['time_range'][0][:10]} .. {st['time_range'][1][:10]} (UTC)"
    )
    lines.append("")
    lines.append(f"{'split':<12} {'images':>8} {'locations':>10}")
    for name, c in st["splits"].items():
        lines.append(f"{name:<12} {c['images']:>8} {c['locations']:>10}")
    lines.append("")
    width = max([5] + [len(n) for n in st["per_label"]])
    lines.append(f"{'label':<{width}} {'images':>8} {'locations':>10}")
    for name, c in st["per_label"].items():
        lines.append(f"{name:<{width}} {c['images']:>8} {c['locations']:>10}")
    lines.append("")
    ipl = st["images_per_location"]
    lines.append(
        f"images per location (revisits): min {ipl['min']:g}, median {ipl['median']:g}, "
        f"mean {ipl['mean']:.2f}, max {ipl['max']:g}"
    )
    histogram = (
        f"{k} image{'s' if k > 1 else ''}: {v} location{'s' if v != 1 else ''}" for k, v in ipl["histogram"].items()
    )
    lines.append("  " + ", ".join(histogram))
    ts = st["time_span_days"]
    lines.append(
        f"time span per location (days, last - first image): min {ts['min']:.0f}, "
        f"median {ts['median']:.0f}, mean {ts['mean']:.0f}, max {ts['max']:.0f}"
    )
    lines.append(
        f"singleton share (images whose location has one image; their temporal positive is "
        f"the same image): {st['singleton_share']:.1%}"
    )
    return "\n".join(lines)

