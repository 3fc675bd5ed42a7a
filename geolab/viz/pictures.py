"""Pictures of a manifest that need no widgets: images loaded and gridded, views, neighbours, seasons.

The pieces the widgets (:mod:`geolab.viz.widgets`, which need ``ipywidgets``) and the static
figures (:mod:`geolab.viz.pairs`, :func:`image_grid`) share: an image read at a size (a grey
tile when unreadable), a transform's output turned back into an image, cosine nearest neighbours,
the season a temporal positive strategy sees, and the geoworld simulation note on every figure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from geolab.positives import SEASONS, season_of
from geolab.transforms import IMAGENET_NORMALIZE
from geolab.viz.maps import SIMULATION_NOTE, is_simulated


def season(timestamp: Any, lat: float) -> str:
    """Meteorological season of a date at a latitude, as the ``other-season`` temporal positive strategy sees it.

    It is :func:`geolab.positives.season_of` by name.

    Northern hemisphere: Dec-Feb winter, Mar-May spring, Jun-Aug summer, Sep-Nov autumn;
    the southern hemisphere (``lat < 0``) has the opposite season. (Near the equator these
    names mean little; the viewer shows the month too.)

    Args:
        timestamp: anything ``pandas.Timestamp`` accepts.
        lat: latitude in degrees.

    Returns:
        ``"winter"``, ``"spring"``, ``"summer"`` or ``"autumn"``.
    """
    return SEASONS[int(season_of(pd.Timestamp(timestamp).month, lat))]


def load_image(path: str | Path, size: int | None = None, enlarge: bool = True) -> Any:
    """An RGB PIL image, scaled to ``size`` x ``size`` when ``size`` is given.

    Nearest neighbour when enlarging, so small satellite-like images keep their pixels;
    ``enlarge=False`` leaves an image smaller than ``size`` as it is.

    Raises:
        OSError: missing or unreadable file (the message names it).
    """
    try:
        with Image.open(path) as src:
            im = src.convert("RGB")
    except OSError as exc:
        raise OSError(f"Cannot read image {path}: {exc}") from exc
    if size is not None and (enlarge or max(im.size) > size):
        im = im.resize((size, size), Image.Resampling.NEAREST if max(im.size) < size else Image.Resampling.BILINEAR)
    return im


def png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image (what ``ipywidgets.Image`` shows)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _placeholder(size: int, text: str = "unreadable") -> Any:
    im = Image.new("RGB", (size, size), (230, 230, 230))
    ImageDraw.Draw(im).text((4, size // 2 - 6), text, fill=(120, 0, 0))
    return im


def safe_image(path: str | Path, size: int, enlarge: bool = True) -> Any:
    """:func:`load_image` at ``size``, or a grey "unreadable" tile when the file cannot be read."""
    try:
        return load_image(path, size, enlarge)
    except OSError:
        return _placeholder(size)


def simulation_note(df: pd.DataFrame) -> str | None:
    """The simulation note for geoworld data (shown on every widget and snapshot), else None."""
    return SIMULATION_NOTE if is_simulated(df) else None


def stamp(fig: Any, df: pd.DataFrame) -> Any:
    """Write the simulation note under ``fig`` when ``df`` is geoworld's; returns ``fig``."""
    note = simulation_note(df)
    if note:
        # a figure-level x label: constrained layout keeps room for it below the axes
        fig.supxlabel(note, x=0.99, ha="right", fontsize=8, color="#8a1c1c", style="italic")
    return fig


def check_rows(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise when ``df`` lacks one of ``columns`` (:class:`KeyError`) or has no rows (:class:`ValueError`)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        source = df.attrs.get("source", "the manifest")
        raise KeyError(
            f"{source} has no column {', '.join(map(repr, missing))}; load it with geolab.manifest.load_manifest."
        )
    if len(df) == 0:
        raise ValueError(f"{df.attrs.get('source', 'the manifest')} has no rows to show.")


def normalise_rows(x: np.ndarray, name: str, n: int) -> np.ndarray:
    """Rows of ``x`` scaled to unit length; ``x`` must be (``n``, d) (``name`` is for the error)."""
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"features[{name!r}] has shape {x.shape}; expected ({n}, d), one row per manifest row.")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def nearest_neighbours(
    features: np.ndarray,
    query: int,
    k: int = 5,
    exclude: Sequence[int] | np.ndarray | None = None,
    normalised: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar to row ``query`` by cosine similarity (itself excluded).

    Args:
        features: (n, d) matrix.
        query: row position of the query.
        k: number of neighbours.
        exclude: further row positions never returned (e.g. the query's own location).
        normalised: rows already have unit length.

    Returns:
        (row positions, similarities), most similar first; ties broken by lower position.
    """
    x = features if normalised else normalise_rows(np.asarray(features, dtype=np.float32), "features", len(features))
    sims = x @ x[query]
    mask = np.zeros(len(x), dtype=bool)
    mask[query] = True
    if exclude is not None:
        mask[np.asarray(exclude, dtype=int)] = True
    candidates = np.flatnonzero(~mask)
    order = candidates[np.lexsort((candidates, -sims[candidates]))][:k]
    return order, sims[order]


def view_to_image(view: Any, transform: Any = None) -> Any:
    """A PIL image of a transform's output.

    A PIL image as is; a normalised CHW tensor un-normalised with the mean/std of the
    ``Normalize`` step found in ``transform`` (ImageNet's when none is found).
    """
    if isinstance(view, Image.Image):
        return view.convert("RGB")
    arr = view.detach().cpu().float().numpy() if hasattr(view, "detach") else np.asarray(view, dtype=np.float32)
    mean, std = _find_normalize(transform)
    arr = arr * np.asarray(std, dtype=np.float32)[:, None, None] + np.asarray(mean, dtype=np.float32)[:, None, None]
    arr = np.clip(arr.transpose(1, 2, 0) * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def _find_normalize(transform: Any, depth: int = 0) -> tuple[Sequence[float], Sequence[float]]:
    if transform is not None and depth < 6:
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
        if mean is not None and std is not None and len(mean) == 3:
            return mean, std
        for child in getattr(transform, "transforms", []) or []:
            found = _find_normalize(child, depth + 1)
            if found is not _IMAGENET:
                return found
    return _IMAGENET


_IMAGENET = (IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])


def image_grid(
    df: pd.DataFrame,
    rows: Sequence[int] | None = None,
    ncols: int = 8,
    size: int = 96,
    caption: str | Callable[[pd.Series], str] = "label",
    title: str | None = None,
) -> Any:
    """A grid of a manifest's images (matplotlib Figure).

    Args:
        df: a manifest.
        rows: row positions to show (default: the first ``2 * ncols``).
        ncols: images per grid row.
        size: pixels per image at most: larger images are shrunk to it, smaller ones are drawn at
            their own resolution with each pixel a block (what the model sees; enlarged copies
            only made the notebook's PNG several times bigger).
        caption: a column name, or a function of the row, for the caption under each image.
        title: the figure's title (say "geoworld: simulated data" for geoworld).

    Returns:
        The Figure.
    """
    positions = list(range(min(len(df), 2 * ncols))) if rows is None else list(rows)
    nrows = max(1, -(-len(positions) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, pos in zip(axes.flat, positions):
        row = df.iloc[pos]
        image = safe_image(row["path"], size, enlarge=False)
        ax.imshow(np.asarray(image), interpolation="nearest" if max(image.size) < size else None)
        text = caption(row) if callable(caption) else str(row[caption])
        ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return stamp(fig, df)
