"""Maps of where the data is and where a model fails: folium (interactive, offline) and matplotlib (static).

A map shows one marker per *location* (coloured by category, split or geo cluster, with a
popup of the location's revisits as small inlined WebP thumbnails), the *geo clusters* as regions
(the convex hull of each cluster's locations, widened by a small margin), optionally the
accuracy of a trained model per geo cluster, a layer control and a legend.

Offline first: :class:`~geolab.viz.folium_map.OfflineMap` writes pages that load nothing from the network. Leaflet's
JS/CSS are inlined (see :mod:`geolab.viz.assets`), folium's CDN links to jQuery, Bootstrap,
Font Awesome and awesome-markers are left out (these maps use none of them), and with
``tiles=None`` (the default) a land outline traced from a shipped raster
(:mod:`geolab.viz.land`) replaces the tile server.

Light pages: a notebook keeps each map's page in its output, so a map of the 1000-location
course world must stay well under a megabyte. Thumbnails are WebP at popup size (a 32-px
geoworld image is about 0.3 KB, a PNG 2 KB), at most ``max_thumbnails`` per page; markers and
the land outline are compact data tables expanded by the page's script
(:mod:`geolab.viz.folium_map`).

The tables and regions drawn here come from :mod:`geolab.viz.locations`; the folium classes
(the offline map, its legend and popups) from :mod:`geolab.viz.folium_map`.
"""


from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch, Polygon
from matplotlib.path import Path as MplPath
from PIL import Image
from tqdm.auto import tqdm

from geolab.io import atomic_write
from geolab.viz.folium_map import folium_classes
from geolab.viz.land import land_outline
from geolab.viz.locations import accuracy_table, cluster_regions, location_table, require_columns

#: Colours of the usual splits; other splits get colours from tab10.
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c", "mixed": "#7f7f7f"}
#: Background (sea) and land colours when no tiles are drawn.
SEA_COLOUR = "#d6e6f2"
LAND_FILL = "#f1ecdf"
LAND_EDGE = "#a89f8a"
#: Words shown on every map of the geoworld simulation.
SIMULATION_NOTE = "geoworld: simulated data, not real imagery"
#: CSS classes on the SVG paths; the browser test counts them.
CLASS_LOCATION = "geolab-location"
CLASS_REGION = "geolab-cluster-region"
CLASS_ACCURACY = "geolab-accuracy-region"
CLASS_LAND = "geolab-land"

COLOR_BY = ("label", "split", "geo_cluster")


# ----------------------------------------------------------------------------- colours
def category_colours(values: Sequence[Any], kind: str = "label") -> dict[Any, str]:
    """A fixed colour (hex) per value.

    Splits get :data:`SPLIT_COLOURS`, others tab10/tab20 (up to 20 values) or evenly spaced turbo
    colours (more).

    Args:
        values: the distinct values (labels, splits or geo clusters).
        kind: ``"label"``, ``"split"`` or ``"geo_cluster"``.

    Returns:
        value -> ``"#rrggbb"``, in sorted order of the values.
    """
    uniq = sorted(set(values), key=lambda v: (str(type(v)), v))
    out: dict[Any, str] = {}
    if kind == "split":
        tab10 = colormaps["tab10"]
        spare = [to_hex(tab10(i)) for i in range(3, tab10.N)]
        for v in uniq:
            out[v] = SPLIT_COLOURS.get(str(v)) or spare[len(out) % len(spare)]
        return out
    if len(uniq) <= 10:
        cmap = colormaps["tab10"]
        return {v: to_hex(cmap(i)) for i, v in enumerate(uniq)}
    if len(uniq) <= 20:
        cmap = colormaps["tab20"]
        return {v: to_hex(cmap(i)) for i, v in enumerate(uniq)}
    cmap = colormaps["turbo"]
    return {v: to_hex(cmap(0.05 + 0.9 * i / max(1, len(uniq) - 1))) for i, v in enumerate(uniq)}


def accuracy_colour(acc: float) -> str:
    """Colour of an accuracy in [0, 1] (red = wrong, green = right; matplotlib's RdYlGn)."""
    return to_hex(colormaps["RdYlGn"](float(np.clip(acc, 0.0, 1.0))))


# ----------------------------------------------------------------------------- thumbnails
#: Thumbnails in popups: WebP (every current browser shows it) at this quality; at popup size it
#: looks like the PNG at a seventh of the bytes.
THUMB_FORMAT = "WEBP"
THUMB_MIME = "image/webp"
THUMB_QUALITY = 80


def thumbnail(path: str | Path, size: int = 48) -> bytes:
    """A small WebP of an image (longest side at most ``size`` pixels; never enlarged), RGB.

    Raises:
        OSError: the file is missing or not an image (PIL's message names the file).
    """
    with Image.open(path) as src:
        im = src.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format=THUMB_FORMAT, quality=THUMB_QUALITY, method=6)
    return buf.getvalue()


def _thumbnails(loc: Any, df: pd.DataFrame, thumbs: int, thumb_size: int) -> tuple[list[list[Any]], int]:
    """Up to ``thumbs`` revisits of a location, spread over time.

    Returns:
        ``[[base64 WebP or None (unreadable), date], ...]`` and the number of unreadable images.
    """
    cells: list[list[Any]] = []
    bad = 0
    rows = loc.rows
    if thumbs > 0 and len(rows):
        for j in np.unique(np.linspace(0, len(rows) - 1, min(thumbs, len(rows))).round().astype(int)):
            row = df.loc[rows[j]]
            try:
                data: str | None = base64.b64encode(thumbnail(row["path"], thumb_size)).decode("ascii")
            except OSError:
                bad += 1
                data = None
            cells.append([data, f"{row['timestamp']:%Y-%m-%d}"])
    return cells, bad


def location_map(
    df: pd.DataFrame,
    color_by: str = "label",
    clusters: bool | None = None,
    accuracy: pd.DataFrame | str | Sequence[bool] | np.ndarray | None = None,
    popups: bool = True,
    thumbs: int = 3,
    thumb_size: int = 48,
    max_thumbnails: int = 1200,
    max_locations: int | None = 2000,
    tiles: str | None = None,
    land: bool = True,
    land_resolution: float = 0.5,
    note: str | None = None,
    title: str | None = None,
    seed: int = 0,
    offline: bool = True,
    height: int | str = "100%",
) -> Any:
    """An interactive map of a manifest's locations (folium, works offline).

    Layers (each in the layer control): the land outline (``tiles=None``), one marker per
    location coloured by ``color_by`` with a popup of its revisits, the geo clusters as
    regions, and the accuracy per geo cluster when ``accuracy`` is given.

    Args:
        df: a manifest; ``geo_cluster`` needed for ``color_by="geo_cluster"``, clusters and
            accuracy (``geolab.geo.add_geo_clusters``).
        color_by: ``"label"`` (category), ``"split"`` or ``"geo_cluster"``.
        clusters: draw geo cluster regions; None = when ``df`` has ``geo_cluster``.
        accuracy: adds a layer of geo cluster regions coloured by a model's accuracy: a
            :func:`cluster_accuracy` table, or the name of a boolean column of ``df`` / one
            flag per row (True = predicted right), from which that table is computed.
        popups: popups with the location's revisits as inlined WebP thumbnails.
        thumbs: revisits shown per popup (spread over time).
        thumb_size: thumbnail side in pixels (images are shrunk to it, never enlarged; a 32-px
            geoworld image takes about 0.35 KB of the page, a 48-px one about 0.7 KB).
        max_thumbnails: most thumbnails in the whole page: with many locations each popup
            shows fewer revisits (at least one), and beyond ``max_thumbnails`` locations a
            seeded sample of popups shows one and the others list dates only (the legend
            says so).
        max_locations: show at most this many locations (a seeded sample; the legend says
            so); None = all. Every marker costs about 0.1 KB of the page.
        tiles: a folium tile name or URL (needs the network to view); None = the offline land
            outline.
        land: draw the land outline (ignored when ``tiles`` is set).
        land_resolution: degrees per cell of the land outline.
        note: a line for the legend; by default :data:`SIMULATION_NOTE` when the manifest is
            geoworld's (its path or ``df.attrs`` say so).
        title: the legend's heading (default: what the colours mean).
        seed: seed of the location sample.
        offline: inline Leaflet and refuse external loads (default True).
        height: map height in pixels or a CSS size (default: the whole page or notebook frame).

    Returns:
        An :class:`OfflineMap` (a ``folium.Map``): show it in a notebook, or ``.save(path)``.

    Raises:
        ValueError: unknown ``color_by``.
        KeyError: a needed column is missing.
    """
    import folium  # noqa: PLC0415 - folium is a lab extra

    if color_by not in COLOR_BY:
        raise ValueError(f"color_by={color_by!r}: use one of {', '.join(COLOR_BY)}.")
    if color_by == "geo_cluster" or accuracy is not None:
        require_columns(df, ("geo_cluster",), hint="add it with geolab.geo.add_geo_clusters(df, k, seed)")
    accuracy = accuracy_table(df, accuracy)
    all_locs = location_table(df)  # regions and accuracy use every location, markers a sample
    n_all = len(all_locs)
    locs = _location_sample(all_locs, max_locations, seed)
    if clusters is None:
        clusters = "geo_cluster" in df.columns
    if note is None and is_simulated(df):
        note = SIMULATION_NOTE

    m = _base_map(locs, tiles, offline, height)
    if tiles is None and land:
        _add_land_outline(m, land_resolution)
    if clusters:
        require_columns(df, ("geo_cluster",), hint="add it with geolab.geo.add_geo_clusters(df, k, seed)")
        _add_cluster_regions(m, all_locs)
    if accuracy is not None:
        _add_accuracy_regions(m, all_locs, accuracy)

    # colours from every location, so a sample keeps them (and clusters match their regions)
    colours = category_colours(all_locs[color_by].tolist(), color_by) if len(all_locs) else {}
    per_popup = max(1, min(thumbs, max_thumbnails // max(1, len(locs)))) if thumbs > 0 and max_thumbnails > 0 else 0
    with_thumbs = _thumbnail_sample(len(locs), max_thumbnails if per_popup else 0, seed)
    unreadable = _add_location_markers(m, df, locs, colours, color_by, popups, per_popup, with_thumbs, thumb_size)
    if unreadable:
        warnings.warn(f"{unreadable} thumbnail(s) could not be read; their popups say 'unreadable'.", stacklevel=2)

    folium.LayerControl(collapsed=False).add_to(m)
    shown = _shown_locations(len(locs), n_all, per_popup if popups else 0, thumbs, with_thumbs)
    legend = _legend_html(title or f"Locations by {_COLOR_WORDS[color_by]}", colours, shown, note, accuracy is not None,
                          "geo clusters: convex hull of each cluster's locations" if clusters else None)
    folium_classes().Legend(legend).add_to(m)
    _fit_bounds(m, locs)
    return m


def _fit_bounds(m: Any, locs: pd.DataFrame) -> None:
    """Zoom the map to the shown locations, with a 2-degree margin."""
    if len(locs):
        lon = locs["lon"].to_numpy()
        m.fit_bounds(
            [[float(locs["lat"].min()) - 2, float(lon.min()) - 2], [float(locs["lat"].max()) + 2, float(lon.max()) + 2]]
        )


def _shown_locations(shown: int, n_all: int, per_popup: int, thumbs: int, with_thumbs: np.ndarray) -> str:
    """The legend's line on what the map shows: the locations (a sample?) and the popups' thumbnails.

    Args:
        shown: locations with a marker.
        n_all: locations in the manifest.
        per_popup: thumbnails per popup (0: none, or no popups).
        thumbs: thumbnails per popup asked for.
        with_thumbs: per marker, whether its popup has thumbnails.
    """
    text = f"{shown} of {n_all} locations (seeded sample)" if shown < n_all else f"{n_all} locations"
    if 0 < per_popup < thumbs:
        text += f"; popups show {per_popup} revisit(s) each"
    if per_popup and not with_thumbs.all():
        text += f" ({int(with_thumbs.sum())} of {shown} popups, a seeded sample; the others list dates only)"
    return text


def _location_sample(locs: pd.DataFrame, max_locations: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_locations`` of ``locs`` (a seeded sample in ``location_id`` order); all when ``None``."""
    if max_locations is not None and len(locs) > max_locations:
        return locs.sample(n=max_locations, random_state=seed).sort_values("location_id").reset_index(drop=True)
    return locs


def _base_map(locs: pd.DataFrame, tiles: str | None, offline: bool, height: int | str) -> Any:
    """The :class:`OfflineMap` itself: centred on the locations' mean latitude, the sea colour and the legend's CSS."""
    import folium  # noqa: PLC0415 - folium is a lab extra

    m = folium_classes().OfflineMap(
        location=[float(locs["lat"].mean()) if len(locs) else 0.0, 0.0],
        zoom_start=1,
        tiles=tiles,
        min_zoom=1,
        world_copy_jump=False,
        offline=offline,
        height=height,
    )
    if tiles is None:
        m.get_root().header.add_child(
            folium.Element(f"<style>.leaflet-container{{background:{SEA_COLOUR};}}</style>"), name="geolab_sea"
        )
    m.get_root().header.add_child(folium.Element(_LEGEND_CSS), name="geolab_legend_css")
    return m


def _add_land_outline(m: Any, land_resolution: float) -> None:
    """The offline land outline (global-land-mask) in its own pane, below everything else."""
    import folium  # noqa: PLC0415 - folium is a lab extra

    folium.map.CustomPane("geolab-land", z_index=300, pointer_events=False).add_to(m)
    folium_classes().LandOutline(
        land_outline_cached(land_resolution),
        name="land outline (global-land-mask)",
        style={"color": LAND_EDGE, "weight": 0.6, "fillColor": LAND_FILL, "fillOpacity": 1.0},
        pane="geolab-land",
        class_name=CLASS_LAND,
    ).add_to(m)


def _add_cluster_regions(m: Any, all_locs: pd.DataFrame) -> None:
    """Each geo cluster's region (convex hull of its locations) in its colour."""
    import folium  # noqa: PLC0415 - folium is a lab extra

    folium.map.CustomPane("geolab-regions", z_index=380).add_to(m)
    regions = cluster_regions(all_locs)
    colours = category_colours([f["properties"]["geo_cluster"] for f in regions["features"]], "geo_cluster")
    for f in regions["features"]:
        f["properties"]["colour"] = colours[f["properties"]["geo_cluster"]]
    folium.GeoJson(
        regions,
        name="geo clusters (convex hull of locations)",
        style_function=lambda f: {
            "color": f["properties"]["colour"],
            "weight": 1.5,
            "fillColor": f["properties"]["colour"],
            "fillOpacity": 0.12,
        },
        tooltip=folium.GeoJsonTooltip(["geo_cluster", "n_locations"], aliases=["geo cluster", "locations"]),
        pane="geolab-regions",
        className=CLASS_REGION,
    ).add_to(m)


def _add_accuracy_regions(m: Any, all_locs: pd.DataFrame, accuracy: pd.DataFrame) -> None:
    """The geo cluster regions coloured by a model's accuracy (clusters without evaluated images left out)."""
    import folium  # noqa: PLC0415 - folium is a lab extra

    acc = accuracy.set_index("geo_cluster")
    regions = cluster_regions(all_locs)
    kept = []
    for f in regions["features"]:
        k = f["properties"]["geo_cluster"]
        if k in acc.index:
            f["properties"].update(
                accuracy=round(float(acc.loc[k, "accuracy"]), 3),
                n_evaluated=int(acc.loc[k, "n"]),
                colour=accuracy_colour(float(acc.loc[k, "accuracy"])),
            )
            kept.append(f)
    regions["features"] = kept
    folium.map.CustomPane("geolab-accuracy", z_index=390).add_to(m)
    folium.GeoJson(
        regions,
        name="accuracy per geo cluster",
        style_function=lambda f: {
            "color": "#333333",
            "weight": 1,
            "fillColor": f["properties"]["colour"],
            "fillOpacity": 0.55,
        },
        tooltip=folium.GeoJsonTooltip(
            ["geo_cluster", "accuracy", "n_evaluated"], aliases=["geo cluster", "accuracy", "images evaluated"]
        ),
        pane="geolab-accuracy",
        className=CLASS_ACCURACY,
    ).add_to(m)


def _add_location_markers(m: Any, df: pd.DataFrame, locs: pd.DataFrame, colours: dict[Any, str], color_by: str,
                          popups: bool, per_popup: int, with_thumbs: np.ndarray, thumb_size: int) -> int:
    """One marker per location of ``locs`` (one data table, see ``LocationMarkers``), in a layer of their own.

    Args:
        m: the map.
        df: the manifest (the revisits' images for the popups).
        locs: the locations shown (:func:`location_table` rows).
        colours: marker colour per value of ``color_by``.
        color_by: the column the colours follow.
        popups: whether markers have popups (their revisits).
        per_popup: thumbnails per popup.
        with_thumbs: per location, whether its popup has thumbnails (else dates only).
        thumb_size: thumbnail side in pixels.

    Returns:
        How many thumbnails could not be read.
    """
    import folium  # noqa: PLC0415 - folium is a lab extra

    points = folium.FeatureGroup(name=f"locations by {_COLOR_WORDS[color_by]}").add_to(m)
    esc = html.escape
    labels = sorted({str(v) for v in locs["label"]})
    splits = sorted({str(v) for v in locs["split"]})
    table: dict[str, Any] = {"labels": [esc(v) for v in labels], "splits": [esc(v) for v in splits],
                             "colours": list(colours.values()), "rows": []}
    index = {"colour": {v: i for i, v in enumerate(colours)}, "label": {v: i for i, v in enumerate(labels)},
             "split": {v: i for i, v in enumerate(splits)}}
    unreadable = 0
    rows: Iterable[Any] = locs.itertuples(index=False)
    if popups and per_popup * len(locs) > 2000:  # a bar only for long work (a few s is not)
        rows = tqdm(rows, total=len(locs), desc="map thumbnails", unit="location")
    for i, loc in enumerate(rows):
        cells = None
        if popups:
            cells, bad = _thumbnails(loc, df, per_popup if with_thumbs[i] else 0, thumb_size)
            unreadable += bad
        table["rows"].append([
            round(float(loc.lat), 4), round(float(loc.lon), 4), index["colour"][getattr(loc, color_by)],
            esc(str(loc.location_id)), index["label"][str(loc.label)], index["split"][str(loc.split)],
            int(loc.geo_cluster) if "geo_cluster" in locs.columns else None,
            int(loc.n_images), f"{loc.first:%Y-%m-%d}", f"{loc.last:%Y-%m-%d}", cells,
        ])
    folium_classes().LocationMarkers(
        table,
        {"className": CLASS_LOCATION, "radius": 5, "color": "#222222", "weight": 0.8, "fillOpacity": 0.9},
        thumb_size=thumb_size,
        mime=THUMB_MIME,
        max_width=max(220, (thumb_size + 8) * max(per_popup, 1) + 20),
    ).add_to(points)
    return unreadable


_COLOR_WORDS = {"label": "category", "split": "split", "geo_cluster": "geo cluster"}


def _thumbnail_sample(n_locations: int, max_thumbnails: int, seed: int) -> np.ndarray:
    """Which of ``n_locations`` popups carry thumbnails: all when they fit ``max_thumbnails``, else a seeded sample."""
    keep = np.ones(n_locations, dtype=bool)
    if n_locations > max_thumbnails:
        keep[:] = False
        keep[np.random.default_rng(seed).choice(n_locations, max_thumbnails, replace=False)] = True
    return keep


_LEGEND_CSS = """<style>
.geolab-legend {background: rgba(255,255,255,0.92); padding: 6px 8px; border-radius: 4px;
  font: 12px/1.35 sans-serif; max-height: 45vh; overflow-y: auto; box-shadow: 0 1px 4px rgba(0,0,0,0.3);}
.geolab-legend .sw {display: inline-block; width: 11px; height: 11px; border-radius: 50%;
  border: 1px solid #222; margin-right: 5px; vertical-align: -1px;}
.geolab-legend .bar {height: 10px; width: 150px; border: 1px solid #555;
  background: linear-gradient(to right, #a50026, #f46d43, #fee08b, #d9ef8b, #66bd63, #006837);}
.geolab-legend .note {color: #8a1c1c; font-style: italic;}
.geolab-popup {font: 12px/1.35 sans-serif;}
.geolab-thumb {display: inline-block; margin: 2px; text-align: center; font-size: 10px;}
.geolab-thumb img {object-fit: cover; display: block;}
.geolab-unreadable {display: block; background: #eee;}
</style>"""


def _legend_html(
    title: str, colours: dict[Any, str], shown: str, note: str | None, accuracy: bool, regions: str | None
) -> str:
    esc = html.escape
    lines = [f"<b>{esc(title)}</b>"]
    if note:  # first, so a long legend that scrolls never hides it
        lines.append(f"<span class='note'>{esc(note)}</span>")
    for value, colour in colours.items():
        lines.append(f"<span class='sw' style='background:{colour}'></span>{esc(str(value))}")
    lines.append(f"<span style='color:#555'>{esc(shown)}</span>")
    if regions:
        lines.append(f"<span style='color:#555'>{esc(regions)}</span>")
    if accuracy:
        lines.append("accuracy per geo cluster<div class='bar'></div>0% &nbsp;&nbsp;&nbsp; 50% &nbsp;&nbsp;&nbsp; 100%")
    return "<br>".join(lines)


def land_outline_cached(resolution: float = 0.5) -> dict[str, Any]:
    """:func:`geolab.viz.land.land_outline`, kept in memory for this process too."""
    if resolution not in _LAND_MEMO:
        _LAND_MEMO[resolution] = land_outline(resolution)
    return _LAND_MEMO[resolution]


_LAND_MEMO: dict[float, dict[str, Any]] = {}


def save_map(m: Any, path: str | Path) -> Path:
    """Write a map's page atomically; it opens from ``file://`` with no network.

    Args:
        m: a map from :func:`location_map` (an :class:`OfflineMap`).
        path: the ``.html`` file.

    Returns:
        ``path``.
    """
    path = Path(path)
    m.save(path)
    return path


def is_simulated(df: pd.DataFrame) -> bool:
    """True when the manifest is the geoworld simulation.

    ``df.attrs``, its path, or the ``world.json`` that geoworld writes beside its manifest say so.
    """
    attrs = " ".join(str(v) for v in df.attrs.values()).lower()
    if "geoworld" in attrs:
        return True
    source = df.attrs.get("source")
    if source and (Path(str(source)).parent / "world.json").is_file():  # load_world(out=...) writes it
        return True
    if "path" in df.columns and len(df):
        return "geoworld" in str(df["path"].iloc[0]).lower()
    return False


# ----------------------------------------------------------------------------- static
def static_map(
    df: pd.DataFrame,
    color_by: str = "label",
    clusters: bool | None = None,
    accuracy: pd.DataFrame | str | Sequence[bool] | np.ndarray | None = None,
    land_resolution: float = 0.5,
    note: str | None = None,
    title: str | None = None,
    ax: Any = None,
    figsize: tuple[float, float] = (11.0, 5.6),
) -> Any:
    """The same map as :func:`location_map`, drawn with matplotlib for reports (equirectangular).

    Args:
        df: as in :func:`location_map`.
        color_by: as in :func:`location_map`.
        clusters: as in :func:`location_map`.
        accuracy: as in :func:`location_map`.
        land_resolution: as in :func:`location_map`.
        note: as in :func:`location_map`.
        title: the axes title.
        ax: draw into these axes (default: a new figure).
        figsize: size of a new figure in inches.

    Returns:
        The matplotlib Figure.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by={color_by!r}: use one of {', '.join(COLOR_BY)}.")
    if accuracy is not None and not isinstance(accuracy, pd.DataFrame):
        require_columns(df, ("geo_cluster",), hint="add it with geolab.geo.add_geo_clusters(df, k, seed)")
    accuracy = accuracy_table(df, accuracy)
    locs = location_table(df)
    if clusters is None:
        clusters = "geo_cluster" in df.columns
    if note is None and is_simulated(df):
        note = SIMULATION_NOTE
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    else:
        fig = ax.figure
    ax.set_facecolor(SEA_COLOUR)
    for feature in land_outline_cached(land_resolution)["features"]:
        rings = feature["geometry"]["coordinates"]
        verts, codes = [], []
        for ring in rings:
            verts.extend(ring)
            codes.extend([MplPath.MOVETO] + [MplPath.LINETO] * (len(ring) - 2) + [MplPath.CLOSEPOLY])
        ax.add_patch(PathPatch(MplPath(verts, codes), facecolor=LAND_FILL, edgecolor=LAND_EDGE, lw=0.4, zorder=1))
    if clusters or accuracy is not None:
        require_columns(df, ("geo_cluster",), hint="add it with geolab.geo.add_geo_clusters(df, k, seed)")
        regions = cluster_regions(locs)
        colours = category_colours([f["properties"]["geo_cluster"] for f in regions["features"]], "geo_cluster")
        acc = accuracy.set_index("geo_cluster") if accuracy is not None else None
        for f in regions["features"]:
            k = f["properties"]["geo_cluster"]
            geom = f["geometry"]
            polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            for poly in polys:
                if acc is not None and k in acc.index:
                    face, alpha, edge = accuracy_colour(float(acc.loc[k, "accuracy"])), 0.55, "#333333"
                else:
                    face, alpha, edge = colours[k], 0.12, colours[k]
                ax.add_patch(Polygon(poly[0], closed=True, facecolor=face, alpha=alpha, edgecolor="none", zorder=2))
                ax.add_patch(Polygon(poly[0], closed=True, fill=False, edgecolor=edge, lw=1.0, zorder=2))
    colours = category_colours(locs[color_by].tolist(), color_by) if len(locs) else {}
    ax.scatter(
        locs["lon"], locs["lat"], s=22, c=[colours[v] for v in locs[color_by]], edgecolors="#222222",
        linewidths=0.5, zorder=3,
    )
    handles = [
        Line2D([], [], marker="o", ls="", markerfacecolor=c, markeredgecolor="#222222", label=str(v))
        for v, c in list(colours.items())[:20]
    ]
    if handles:
        ax.legend(handles=handles, title=_COLOR_WORDS[color_by], loc="lower left", fontsize=7, title_fontsize=8,
                  ncols=2 if len(handles) > 10 else 1, framealpha=0.9)
    if accuracy is not None:
        fig.colorbar(ScalarMappable(Normalize(0, 1), "RdYlGn"), ax=ax, shrink=0.6, label="accuracy per geo cluster")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")
    ax.set_title(title or f"{len(locs)} locations by {_COLOR_WORDS[color_by]}")
    if note:
        ax.text(0.99, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#8a1c1c",
                style="italic", zorder=4)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (``geolab.io``)."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path
