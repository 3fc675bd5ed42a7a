"""Widgets for looking at the data: a place over time, augmentations against temporal positives, retrieval.

A place over time (:class:`RevisitViewer`), augmentations against temporal positives
(:class:`AugmentationExplorer`) and retrieval by example (:class:`RetrievalExplorer`).

Each function returns the widget (an ``ipywidgets.VBox`` subclass) whose controls and state
are attributes, so a test or a notebook can drive it without a browser: set
``viewer.slider.value = 2`` and ``viewer.current_row`` / ``viewer.image.value`` follow.
Each widget also has ``snapshot()``, a matplotlib rendering of what it shows now (for reports,
papermill runs without a front end, and the README's screenshots). Its display data carries
that rendering as ``text/html`` (a PNG and :data:`LIVE_NOTE`) beside the widget view, so a saved
notebook, the course's static site (``make book``) and any viewer without a kernel show the
widget's state where JupyterLab shows the live widget.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from geolab.positives import STRATEGIES, LocationIndex
from geolab.transforms import moco_v2_view
from geolab.viz.pictures import (
    check_rows,
    load_image,
    nearest_neighbours,
    normalise_rows,
    png_bytes,
    safe_image,
    season,
    simulation_note,
    stamp,
    view_to_image,
)

#: Said under every static rendering of a widget (saved notebooks, the course's static site).
LIVE_NOTE = "Interactive widget: a static picture of its state when the notebook ran; it is live in JupyterLab."


def static_widget_html(png: bytes, note: str = LIVE_NOTE) -> str:
    """HTML that stands in for a widget without a kernel: its picture (inlined PNG) and ``note``.

    Args:
        png: the widget's picture (PNG bytes, e.g. of ``snapshot()``).
        note: the caption; by default that the widget is live in JupyterLab.

    Returns:
        A ``<figure>`` with the image as a ``data:`` URI (nothing to load) and the note as caption.
    """
    data = base64.b64encode(png).decode("ascii")
    return (
        '<figure class="geolab-widget-static" style="margin:0">'
        f'<img src="data:image/png;base64,{data}" alt="static picture of an interactive widget" '
        'style="max-width:100%"/>'
        f'<figcaption style="font-size:0.85em;color:#555"><i>{html.escape(note)}</i></figcaption></figure>'
    )


class _StaticFallback(w.VBox):
    """A VBox whose display data also carries ``snapshot()`` as HTML, for viewers without a kernel."""

    def snapshot(self) -> Any:  # pragma: no cover - every subclass draws its own
        raise NotImplementedError

    def static_html(self, dpi: int = 80) -> str:
        """What a saved notebook shows in place of the live widget: ``snapshot()`` and :data:`LIVE_NOTE`."""
        fig = self.snapshot()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)  # shown once, through the display data, not again by the inline backend
        return static_widget_html(buf.getvalue())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self.static_html()
        return bundle


# ----------------------------------------------------------------------------- widgets
class RevisitViewer(_StaticFallback):
    """A place over time: a slider over one location's revisits, with date and season.

    Attributes:
        location: Dropdown of location ids (the most revisited first).
        slider: IntSlider over the chosen location's revisits, in time order.
        image: the shown image (PNG bytes in ``image.value``).
        caption: HTML with the date, season and time since the first revisit.
        rows: manifest index labels of the location's revisits, in time order.
        current_row: index label of the shown image.
    """


    def __init__(self, df: pd.DataFrame, location_id: str | None = None, size: int = 192) -> None:
        check_rows(df, ("location_id", "timestamp", "path", "lat", "label"))
        self.df = df
        self.size = size
        counts = df.groupby("location_id").size().sort_values(ascending=False, kind="stable")
        options = list(counts.index.astype(str))
        if location_id is None:
            location_id = options[0]
        elif location_id not in options:
            raise ValueError(f"location {location_id!r} is not in the manifest ({len(options)} locations).")
        self.location = w.Dropdown(options=options, value=location_id, description="location")
        self.slider = w.IntSlider(min=0, max=0, value=0, description="revisit", continuous_update=False)
        self.image = w.Image(format="png", width=size, height=size)
        self.caption = w.HTML()
        self.rows: list[Any] = []
        self.current_row: Any = None
        super().__init__([w.HBox([self.location, self.slider]), self.image, self.caption])
        self._set_location(location_id)
        self.location.observe(lambda ch: self._set_location(ch["new"]), names="value")
        self.slider.observe(lambda ch: self._show(ch["new"]), names="value")

    def _set_location(self, location_id: str) -> None:
        sub = self.df[self.df["location_id"].astype(str) == location_id].sort_values("timestamp", kind="stable")
        self.rows = list(sub.index)
        # set max before value; _show runs once whether or not the value changes
        with self.slider.hold_trait_notifications():
            self.slider.value = 0
            self.slider.max = max(0, len(self.rows) - 1)
        self._show(self.slider.value)

    def _show(self, j: int) -> None:
        self.current_row = self.rows[j]
        row = self.df.loc[self.current_row]
        self.image.value = png_bytes(safe_image(row["path"], self.size))
        self.caption.value = self.describe()

    @property
    def current(self) -> pd.Series:
        """The manifest row of the shown image."""
        return self.df.loc[self.current_row]

    def describe(self) -> str:
        """The caption (HTML) of the shown revisit."""
        row = self.current
        first = self.df.loc[self.rows[0], "timestamp"]
        ts = pd.Timestamp(row["timestamp"])
        days = (ts - pd.Timestamp(first)).days
        hemi = "southern" if row["lat"] < 0 else "northern"
        return (
            f"<b>{html.escape(str(row['location_id']))}</b> ({html.escape(str(row['label']))}) · "
            f"revisit {self.slider.value + 1} of {len(self.rows)} · {ts:%Y-%m-%d} ({ts:%B}, "
            f"{season(ts, float(row['lat']))} in the {hemi} hemisphere) · {days} days after the first"
            + (f"<br><i style='color:#8a1c1c'>{simulation_note(self.df)}</i>" if simulation_note(self.df) else "")
        )

    def snapshot(self, thumb: int = 64) -> Any:
        """A matplotlib Figure of the viewer now.

        The shown revisit large, every revisit of the location along a time line below it with
        the shown one framed.
        """
        n = len(self.rows)
        fig = plt.figure(figsize=(max(6.0, 1.1 * n + 1), 6.2), layout="constrained")
        grid = fig.add_gridspec(2, max(n, 1), height_ratios=[4, 1])
        big = fig.add_subplot(grid[0, :])
        row = self.current
        big.imshow(np.asarray(safe_image(row["path"], self.size)))
        ts = pd.Timestamp(row["timestamp"])
        big.set_title(
            f"{row['location_id']} ({row['label']}): revisit {self.slider.value + 1} of {n}, "
            f"{ts:%Y-%m-%d}, {season(ts, float(row['lat']))}",
            fontsize=10,
        )
        big.axis("off")
        for j, r in enumerate(self.rows):
            ax = fig.add_subplot(grid[1, j])
            ax.imshow(np.asarray(safe_image(self.df.loc[r, "path"], thumb)))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{pd.Timestamp(self.df.loc[r, 'timestamp']):%Y-%m}", fontsize=7)
            colour = "#d62728" if r == self.current_row else "#bbbbbb"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if r == self.current_row else 0.8)
        return stamp(fig, self.df)

class AugmentationExplorer(_StaticFallback):
    """MoCo-v2 views of one image against a temporal positive of its location.

    MoCo-v2's positive pair is two augmented views of the *same* image; GASSL's temporal
    positive pairs a view of the query with a view of *another image of the same location*
    taken at another time (sampled by ``LocationIndex.positive``).

    Attributes:
        index: IntSlider over the manifest's rows (positions).
        strategy: Dropdown of temporal positive sampling strategies.
        resample: Button that draws new augmentations and a new positive.
        views: name -> PIL image of each panel now shown.
        positive_index: row position of the temporal positive.
        draw: how many times views were drawn (the seed of each draw is ``seed + draw``).
    """

    PANELS = (
        "query image",
        "MoCo-v2 view 1 (query)",
        "MoCo-v2 view 2 (key)",
        "temporal positive image",
        "view of temporal positive (TP key)",
    )

    def __init__(
        self,
        df: pd.DataFrame,
        input_size: int = 64,
        strategy: str = "any-other",
        seed: int = 0,
        index: int = 0,
        transform: Callable[[Any], Any] | None = None,
        location_index: Any = None,
        strategies: Sequence[str] | None = None,
        size: int = 128,
    ) -> None:
        check_rows(df, ("location_id", "timestamp", "path", "lat"))
        self.df = df.reset_index(drop=True)
        self.seed = seed
        self.size = size
        if transform is None:
            transform = moco_v2_view(input_size)
        if location_index is None:
            location_index = LocationIndex(self.df)
        if strategies is None:
            strategies = STRATEGIES
        self.transform = transform
        self.location_index = location_index
        self.index = w.IntSlider(min=0, max=len(self.df) - 1, value=index, description="image",
                                 continuous_update=False)  # fmt: skip
        self.strategy = w.Dropdown(options=list(strategies), value=strategy, description="positive")
        self.resample = w.Button(description="new views")
        self.draw = 0
        self.views: dict[str, Any] = {}
        self.positive_index: int = index
        self.dates: dict[str, Any] = {}
        self._images = {name: w.Image(format="png", width=size, height=size) for name in self.PANELS}
        self._captions = {name: w.HTML() for name in self.PANELS}
        cells = [w.VBox([w.HTML(f"<b>{name}</b>"), self._images[name], self._captions[name]]) for name in self.PANELS]
        super().__init__([w.HBox([self.index, self.strategy, self.resample]), w.HBox(cells)])
        if simulation_note(self.df):
            self.children += (w.HTML(f"<i style='color:#8a1c1c'>{simulation_note(self.df)}</i>"),)
        self._update()
        self.index.observe(lambda _ch: self._update(), names="value")
        self.strategy.observe(lambda _ch: self._update(), names="value")
        self.resample.on_click(lambda _b: self._redraw())

    def _redraw(self) -> None:
        self.draw += 1
        self._update()

    def _update(self) -> None:
        i = int(self.index.value)
        rng = np.random.default_rng(self.seed + self.draw)
        torch.manual_seed(self.seed + self.draw)
        self.positive_index = int(self.location_index.positive(i, self.strategy.value, rng))
        query = load_image(self.df.loc[i, "path"])
        positive = load_image(self.df.loc[self.positive_index, "path"])
        self.views = {
            "query image": query,
            "MoCo-v2 view 1 (query)": view_to_image(self.transform(query), self.transform),
            "MoCo-v2 view 2 (key)": view_to_image(self.transform(query), self.transform),
            "temporal positive image": positive,
            "view of temporal positive (TP key)": view_to_image(self.transform(positive), self.transform),
        }
        self.dates = dates = {
            "query image": self.df.loc[i, "timestamp"],
            "temporal positive image": self.df.loc[self.positive_index, "timestamp"],
        }
        for name, im in self.views.items():
            self._images[name].value = png_bytes(im.resize((self.size, self.size), Image.Resampling.NEAREST))
            ts = dates.get(name)
            lat = float(self.df.loc[i, "lat"])
            self._captions[name].value = (
                f"{pd.Timestamp(ts):%Y-%m-%d} ({season(ts, lat)})" if ts is not None else "augmented"
            )

    def snapshot(self) -> Any:
        """A matplotlib Figure of the five panels now shown."""
        fig, axes = plt.subplots(1, len(self.PANELS), figsize=(2.4 * len(self.PANELS), 2.9), layout="constrained")
        for ax, name in zip(axes, self.PANELS):
            ax.imshow(np.asarray(self.views[name]))
            when = self.dates.get(name)
            ax.set_title(name + (f"\n{pd.Timestamp(when):%Y-%m-%d}" if when is not None else "\naugmented"), fontsize=8)
            ax.axis("off")
        return stamp(fig, self.df)

class RetrievalExplorer(_StaticFallback):
    """Retrieval by example: pick a query image, see its nearest neighbours per method.

    Neighbours are ranked by cosine similarity of the given features (one matrix per
    method, rows aligned with the manifest).

    Attributes:
        query: IntSlider over the manifest's rows (positions).
        exclude_same_location: Checkbox; when set, revisits of the query's own location
            are not returned (otherwise temporal positives tend to fill the list).
        neighbours: method -> row positions of the k nearest neighbours.
        similarities: method -> their cosine similarities.
    """


    def __init__(
        self,
        df: pd.DataFrame,
        features: Mapping[str, Any],
        k: int = 5,
        query: int = 0,
        exclude_same_location: bool = False,
        size: int = 72,
    ) -> None:
        check_rows(df, ("location_id", "path", "label"))
        if not features:
            raise ValueError("features is empty: give one feature matrix per method, e.g. {'moco': X}.")
        self.df = df.reset_index(drop=True)
        self.features = {
            name: normalise_rows(np.asarray(x, dtype=np.float32), name, len(self.df)) for name, x in features.items()
        }
        self.k = int(k)
        self.size = size
        self.query = w.IntSlider(min=0, max=len(self.df) - 1, value=query, description="query",
                                 continuous_update=False)  # fmt: skip
        self.exclude_same_location = w.Checkbox(value=exclude_same_location, description="skip same location")
        self.query_image = w.Image(format="png", width=size * 2, height=size * 2)
        self.query_caption = w.HTML()
        self.neighbours: dict[str, list[int]] = {}
        self.similarities: dict[str, list[float]] = {}
        self._rows = {name: w.HBox() for name in self.features}
        method_boxes = [w.VBox([w.HTML(f"<b>{html.escape(name)}</b>"), self._rows[name]]) for name in self.features]
        super().__init__(
            [w.HBox([self.query, self.exclude_same_location]), w.HBox([w.VBox([self.query_image, self.query_caption]),
                                                                        w.VBox(method_boxes)])]
        )  # fmt: skip
        if simulation_note(self.df):
            self.children += (w.HTML(f"<i style='color:#8a1c1c'>{simulation_note(self.df)}</i>"),)
        self._update()
        self.query.observe(lambda _ch: self._update(), names="value")
        self.exclude_same_location.observe(lambda _ch: self._update(), names="value")

    def _update(self) -> None:
        q = int(self.query.value)
        row = self.df.loc[q]
        self.query_image.value = png_bytes(safe_image(row["path"], self.size * 2))
        self.query_caption.value = f"query: {html.escape(str(row['location_id']))} ({html.escape(str(row['label']))})"
        exclude = None
        if self.exclude_same_location.value:
            exclude = np.flatnonzero(self.df["location_id"].to_numpy() == row["location_id"])
        for name, x in self.features.items():
            idx, sims = nearest_neighbours(x, q, self.k, exclude=exclude, normalised=True)
            self.neighbours[name] = idx.tolist()
            self.similarities[name] = sims.tolist()
            cells = []
            for j, s in zip(idx, sims):
                nb = self.df.loc[int(j)]
                same = nb["label"] == row["label"]
                tag = "same location" if nb["location_id"] == row["location_id"] else html.escape(str(nb["label"]))
                colour = "#1a7f37" if same else "#b42318"
                cells.append(
                    w.VBox([w.Image(value=png_bytes(safe_image(nb["path"], self.size)), format="png",
                                    width=self.size, height=self.size),
                            w.HTML(f"<span style='color:{colour};font-size:11px'>{tag}<br>cos {s:.2f}</span>")])
                )  # fmt: skip
            self._rows[name].children = cells

    def label_precision(self) -> dict[str, float]:
        """Share of each method's neighbours with the query's label (precision@k)."""
        label = self.df.loc[int(self.query.value), "label"]
        return {
            name: float(np.mean([self.df.loc[j, "label"] == label for j in idx])) if idx else float("nan")
            for name, idx in self.neighbours.items()
        }

    def snapshot(self) -> Any:
        """A matplotlib Figure: the query, then one row of neighbours per method."""
        methods = list(self.neighbours)
        fig, axes = plt.subplots(len(methods), self.k + 1, figsize=(1.6 * (self.k + 1), 1.9 * len(methods)),
                                 squeeze=False, layout="constrained")  # fmt: skip
        q = int(self.query.value)
        qrow = self.df.loc[q]
        for r, name in enumerate(methods):
            axes[r, 0].imshow(np.asarray(safe_image(qrow["path"], self.size)))
            axes[r, 0].set_title(f"query\n{qrow['label']}", fontsize=7)
            axes[r, 0].set_ylabel(name, fontsize=8)
            for c, (j, s) in enumerate(zip(self.neighbours[name], self.similarities[name]), start=1):
                nb = self.df.loc[j]
                axes[r, c].imshow(np.asarray(safe_image(nb["path"], self.size)))
                same = nb["label"] == qrow["label"]
                axes[r, c].set_title(f"{nb['label']}\ncos {s:.2f}", fontsize=7, color="#1a7f37" if same else "#b42318")
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
        return stamp(fig, self.df)


def revisit_viewer(df: pd.DataFrame, location_id: str | None = None, size: int = 192) -> Any:
    """A slider over one location's revisits, with date and season.

    Args:
        df: a manifest.
        location_id: the location shown first (default: the most revisited).
        size: image side in pixels.

    Returns:
        A :class:`RevisitViewer` (``ipywidgets.VBox``); drive it with ``.location.value`` and
        ``.slider.value``; ``.current_row``, ``.image.value`` and ``.caption.value`` follow.
    """
    return RevisitViewer(df, location_id=location_id, size=size)


def augmentation_explorer(
    df: pd.DataFrame,
    input_size: int = 64,
    strategy: str = "any-other",
    seed: int = 0,
    index: int = 0,
    transform: Callable[[Any], Any] | None = None,
    location_index: Any = None,
) -> Any:
    """MoCo-v2 views of an image side by side with a temporal positive and its view.

    Args:
        df: a manifest (row positions are used, so its index is reset).
        input_size: crop size of the MoCo-v2 views (``geolab.transforms.moco_v2_view``).
        strategy: temporal positive sampling strategy (``geolab.positives.STRATEGIES``).
        seed: seed of the first draw; the "new views" button adds 1 per click.
        index: the row shown first.
        transform: the view transform (default ``moco_v2_view(input_size)``).
        location_index: a ``geolab.positives.LocationIndex`` (default: built from ``df``).

    Returns:
        An :class:`AugmentationExplorer` with ``.index``, ``.strategy``, ``.resample``,
        ``.views`` and ``.positive_index``.
    """
    return AugmentationExplorer(
        df, input_size=input_size, strategy=strategy, seed=seed, index=index, transform=transform,
        location_index=location_index,
    )  # fmt: skip


def retrieval_explorer(
    df: pd.DataFrame,
    features: Mapping[str, Any],
    k: int = 5,
    query: int = 0,
    exclude_same_location: bool = False,
) -> Any:
    """Nearest-neighbour retrieval per method: pick an image, see its neighbours.

    Args:
        df: the manifest rows the features were extracted from, in the same order.
        features: method name -> (n, d) features (e.g. from ``geolab.evaluate.extract_features``).
        k: neighbours per method.
        query: the row shown first.
        exclude_same_location: start with the query's own location left out.

    Returns:
        A :class:`RetrievalExplorer` with ``.query``, ``.exclude_same_location``,
        ``.neighbours``, ``.similarities`` and ``label_precision()``.

    Raises:
        ValueError: a feature matrix does not have one row per manifest row.
    """
    return RetrievalExplorer(df, features, k=k, query=query, exclude_same_location=exclude_same_location)
