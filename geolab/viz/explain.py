"""Widgets that explain a piece of the method, and the live loss curve of an in-notebook training.

- :class:`TemperatureExplorer` (notebook 02): a slider over the InfoNCE temperature T and the
  softmax over [positive, queue] of one query as bars, sharpening as T falls.
- :class:`GeoClusterExplorer` (notebook 04): a slider over K and the map of the geo clusters
  K-means finds on the sphere for that K.
- :class:`LiveLoss`: a training curve redrawn in one display while a notebook trains (one
  figure in the saved notebook, however many steps).

Each widget has ``snapshot()`` (a matplotlib Figure) and carries it as a PNG in its display
data, so a notebook saved or executed without a live kernel (papermill, nbconvert, the course
report) still shows what the widget showed.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from geolab.geo import add_geo_clusters
from geolab.viz.maps import SIMULATION_NOTE, static_map


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure, which is then closed (so the notebook does not show it twice)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


class _SnapshotWidget(w.VBox):
    """A VBox whose display data also carries ``snapshot()`` as a PNG, for outputs without a kernel."""

    def snapshot(self) -> Any:  # pragma: no cover - every subclass draws its own
        raise NotImplementedError

    def static_png(self) -> bytes:
        """What a saved notebook shows in place of the live widget: ``snapshot()`` as a PNG."""
        return figure_png(self.snapshot())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = self.static_png()
        return bundle


# ----------------------------------------------------------------------------- temperature
def softmax_over_candidates(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float) -> np.ndarray:
    """InfoNCE's softmax for one query: the positive's probability first, then each queued key's."""
    q, k, queue = F.normalize(q, dim=-1), F.normalize(k, dim=-1), F.normalize(queue, dim=-1)
    logits = torch.cat([(q * k).sum(-1, keepdim=True), queue @ q]) / T
    return torch.softmax(logits, dim=0).numpy()


def _draw_softmax(ax: Any, p: np.ndarray, T: float, show: int) -> None:
    neg = np.sort(p[1:])[::-1][: show - 1]
    ax.bar([0], [p[0]], color="#c0392b", label="positive (its key)")
    ax.bar(np.arange(1, len(neg) + 1), neg, color="#7f8c8d", label=f"queued keys (the {show - 1} most likely)")
    ax.set_ylim(0, 1)
    ax.set_title(f"T = {T:g}: p(positive) = {p[0]:.2f}, loss -ln p = {-math.log(max(p[0], 1e-30)):.2f}", fontsize=9)
    ax.set_xlabel(f"candidates (1 positive + {len(p) - 1} queued keys)")
    ax.set_ylabel("softmax probability")


class TemperatureExplorer(_SnapshotWidget):
    """A slider over the temperature and the softmax over [positive, queue] of one query.

    Attributes:
        slider: the temperature (log scale, 0.01 to 1).
        image: the bar chart at the slider's T.
        caption: the positive's probability and the loss at that T.
        probabilities: the current softmax (positive first).
    """

    def __init__(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float = 0.2, show: int = 30,
                 note: str | None = SIMULATION_NOTE) -> None:
        self.q, self.k, self.queue = q.detach().float(), k.detach().float(), queue.detach().float()
        self.show, self.note = show, note
        self.slider = w.FloatLogSlider(value=T, base=10, min=-2, max=0, step=0.05, description="T",
                                       continuous_update=False, readout_format=".3f")
        self.image = w.Image(format="png")
        self.caption = w.HTML()
        self.probabilities = np.array([])
        super().__init__([self.slider, self.image, self.caption])
        self.slider.observe(lambda _: self._update(), names="value")
        self._update()

    def _update(self) -> None:
        T = float(self.slider.value)
        self.probabilities = softmax_over_candidates(self.q, self.k, self.queue, T)
        fig, ax = plt.subplots(figsize=(6, 2.8), layout="constrained")
        _draw_softmax(ax, self.probabilities, T, self.show)
        ax.legend(fontsize=8, loc="upper right")
        self.image.value = figure_png(fig)
        top = float(np.sort(self.probabilities[1:])[-1])
        self.caption.value = (f"At T = {T:.3f} the positive takes {self.probabilities[0]:.1%} of the softmax and the "
                              f"most likely queued key {top:.1%}: a smaller T sharpens the softmax.")

    def snapshot(self, temperatures: Sequence[float] = (0.02, 0.2, 1.0)) -> Any:
        """The bars at a few temperatures side by side (and the slider's, if it is not among them)."""
        ts = sorted({*temperatures, round(float(self.slider.value), 4)})
        fig, axes = plt.subplots(1, len(ts), figsize=(3.2 * len(ts), 2.8), layout="constrained", sharey=True)
        for ax, t in zip(np.atleast_1d(axes), ts):
            _draw_softmax(ax, softmax_over_candidates(self.q, self.k, self.queue, t), t, self.show)
        fig.suptitle("InfoNCE's softmax over [positive, queue] for one query: it sharpens as T falls", fontsize=10)
        if self.note:
            fig.supxlabel(self.note, x=0.99, ha="right", fontsize=8, color="#8a1c1c", style="italic")
        return fig


def temperature_explorer(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, T: float = 0.2,
                         show: int = 30, note: str | None = None) -> TemperatureExplorer:
    """:class:`TemperatureExplorer` for query ``q`` (D,), its key ``k`` (D,) and the queue (N, D)."""
    return TemperatureExplorer(q, k, queue, T, show, note)


# ----------------------------------------------------------------------------- geo clusters
class GeoClusterExplorer(_SnapshotWidget):
    """A slider over K and the map of the K geo clusters of the training locations.

    Attributes:
        slider: K, among ``ks`` (those no larger than the number of training locations).
        image: the map (:func:`geolab.viz.static_map`, coloured by geo cluster with its regions).
        caption: training locations per cluster at that K.
        clustered: the manifest with the current K's ``geo_cluster`` column.
    """

    def __init__(self, df: pd.DataFrame, ks: Sequence[int] = (2, 4, 8, 16, 32), k: int | None = None,
                 seed: int = 0, note: str | None = None) -> None:
        n_train = df.loc[df["split"] == "train", "location_id"].nunique()
        options = [int(x) for x in ks if 2 <= x <= n_train]
        if not options:
            raise ValueError(f"no K of {list(ks)} fits the {n_train} training locations (2 <= K <= {n_train}).")
        self.df, self.seed, self.note = df, seed, note
        self._maps: dict[int, tuple[bytes, str, pd.DataFrame]] = {}
        value = k if k in options else options[len(options) // 2]
        self.slider = w.SelectionSlider(options=options, value=value, description="K", continuous_update=False)
        self.image = w.Image(format="png")
        self.caption = w.HTML()
        self.clustered = df
        super().__init__([self.slider, self.image, self.caption])
        self.slider.observe(lambda _: self._update(), names="value")
        self._update()

    def _figure(self, dfk: pd.DataFrame, k: int) -> Any:
        return static_map(dfk, color_by="geo_cluster", clusters=True, note=self.note, figsize=(7.5, 3.9),
                          title=f"K = {k} geo clusters (K-means on the sphere, fitted on the training locations)")

    def _update(self) -> None:
        k = int(self.slider.value)
        if k not in self._maps:
            dfk = add_geo_clusters(self.df, k=k, seed=self.seed)
            per = dfk[dfk["split"] == "train"].drop_duplicates("location_id").groupby("geo_cluster").size()
            text = (f"K = {k}: {per.min()} to {per.max()} training locations per geo cluster (median "
                    f"{per.median():g}); the geo head chooses among {k} classes (chance ln K = {math.log(k):.2f}).")
            self._maps[k] = (figure_png(self._figure(dfk, k), dpi=72), text, dfk)
        self.image.value, self.caption.value, self.clustered = self._maps[k]

    def static_png(self) -> bytes:
        """The map already drawn for the slider's K."""
        return bytes(self.image.value)

    def snapshot(self) -> Any:
        """The map at the slider's K."""
        return self._figure(self.clustered, int(self.slider.value))


def geo_cluster_explorer(df: pd.DataFrame, ks: Sequence[int] = (2, 4, 8, 16, 32), k: int | None = None,
                         seed: int = 0, note: str | None = None) -> GeoClusterExplorer:
    """:class:`GeoClusterExplorer` over the manifest ``df``."""
    return GeoClusterExplorer(df, ks, k, seed, note)


# ----------------------------------------------------------------------------- live loss
class LiveLoss:
    """A loss curve redrawn in place while a notebook trains: one display, updated.

    ``add(loss)`` records a step and redraws at most every ``every_s`` seconds; ``close()`` draws
    the last state. The saved notebook keeps one figure, however many steps were trained.

    Args:
        title: the axes title.
        chance: a horizontal line (InfoNCE of features that tell no image apart, ln(queue + 1)).
        note: the simulation note, under the axes.
        every_s: seconds between redraws.
    """

    def __init__(self, title: str, chance: float | None = None, note: str | None = None, every_s: float = 1.0) -> None:
        from IPython.display import display  # noqa: PLC0415 - IPython comes with the lab extra (ipykernel)

        self.title, self.chance, self.note, self.every_s = title, chance, note, every_s
        self.losses: list[float] = []
        self.redraws = 0
        self._last = 0.0
        self.handle = display(self._image(), display_id=True)

    def _figure(self) -> Any:
        fig, ax = plt.subplots(figsize=(6, 2.8), layout="constrained")
        ax.plot(np.arange(1, len(self.losses) + 1), self.losses, color="#2c3e50", lw=1, label="loss per step")
        if self.chance is not None:
            ax.axhline(self.chance, color="#c0392b", ls="--", lw=1, label=f"chance ln(queue + 1) = {self.chance:.2f}")
        ax.set(xlabel="step", ylabel="loss", title=f"{self.title} ({len(self.losses)} steps)")
        ax.legend(fontsize=8, loc="upper right")
        if self.note:
            fig.supxlabel(self.note, x=0.99, ha="right", fontsize=8, color="#8a1c1c", style="italic")
        return fig

    def _image(self) -> Any:
        """The curve as a PNG image (whatever matplotlib backend the kernel has)."""
        from IPython.display import Image  # noqa: PLC0415 - IPython comes with the lab extra (ipykernel)

        return Image(data=figure_png(self._figure()))

    def add(self, loss: float) -> None:
        """Record one step's loss; redraw when ``every_s`` has passed."""
        self.losses.append(float(loss))
        if time.perf_counter() - self._last >= self.every_s:
            self._redraw()

    def _redraw(self) -> None:
        self._last = time.perf_counter()
        self.redraws += 1
        if self.handle is not None:
            self.handle.update(self._image())

    def close(self) -> list[float]:
        """Draw the final curve; returns the losses."""
        self._redraw()
        return self.losses
