"""Maps, image grids and widgets: learners look rather than read.

- :mod:`geolab.viz.maps`: folium maps of locations (by category, split or geo cluster) with
  thumbnail popups, geo cluster regions, accuracy per geo cluster, legend and layer control;
  offline pages (Leaflet inlined, land outline instead of tiles); matplotlib fallbacks.
- :mod:`geolab.viz.locations`: what a map shows, as data (one row per location, accuracy per
  geo cluster, cluster regions as GeoJSON).
- :mod:`geolab.viz.folium_map`: the folium classes of the offline map pages and their check.
- :mod:`geolab.viz.widgets`: the revisit viewer, the augmentation explorer (MoCo-v2 views
  against temporal positives) and nearest-neighbour retrieval per method.
- :mod:`geolab.viz.explain`: widgets that explain a piece of the method (the InfoNCE temperature,
  K geo clusters on the map) and the live loss curve of a training inside a notebook.
- :mod:`geolab.viz.pictures`: what widgets and figures share without ipywidgets (images,
  image grids, views, nearest neighbours, seasons); :mod:`geolab.viz.pairs`: the static pair figure.
- :mod:`geolab.viz.curves`: contrastive and geo loss and the kNN monitor of the runs a notebook
  compares; each method's mean with its 95% interval (``method_bars``).
- :mod:`geolab.viz.assets`: where Leaflet's JS/CSS come from (a registry package).
- :mod:`geolab.viz.land`: the land outline traced from the shipped global-land-mask raster.

folium and ipywidgets (``lab`` extras) are imported only when a map is drawn or a widget is asked for,
and torch only when a picture helper is (``image_grid``, ``nearest_neighbours``, ``season``).
"""

from __future__ import annotations

from typing import Any

from geolab.viz.assets import AssetError, LeafletAssets, fetch_assets, leaflet_assets
from geolab.viz.curves import label_efficiency_curves, method_bars, training_curves, training_history
from geolab.viz.folium_map import OfflineMapError, check_offline_html
from geolab.viz.land import land_outline
from geolab.viz.locations import cluster_accuracy, cluster_regions, location_table
from geolab.viz.maps import SIMULATION_NOTE, location_map, save_figure, save_map, static_map

#: Names served from geolab.viz.widgets on first use (ipywidgets is a lab extra, imported then).
_WIDGET_NAMES = (
    "AugmentationExplorer",
    "RetrievalExplorer",
    "RevisitViewer",
    "augmentation_explorer",
    "retrieval_explorer",
    "revisit_viewer",
)
#: Names served from geolab.viz.explain on first use (ipywidgets, as above).
_EXPLAIN_NAMES = (
    "GeoClusterExplorer", "LiveLoss", "TemperatureExplorer", "geo_cluster_explorer", "temperature_explorer",
)
#: Names served from geolab.viz.pictures on first use (it imports torch, through geolab.transforms).
_PICTURE_NAMES = ("image_grid", "nearest_neighbours", "season")


def __getattr__(name: str) -> Any:
    """The widget and picture names, imported on first use (see :data:`_WIDGET_NAMES`, :data:`_PICTURE_NAMES`).

    Typed ``Any``: a type checker cannot see which lazily imported name comes back.
    """
    if name in _WIDGET_NAMES:
        from geolab.viz import widgets  # noqa: PLC0415 - ipywidgets is a lab extra

        return getattr(widgets, name)
    if name in _EXPLAIN_NAMES:
        from geolab.viz import explain  # noqa: PLC0415 - ipywidgets is a lab extra

        return getattr(explain, name)
    if name in _PICTURE_NAMES:
        from geolab.viz import pictures  # noqa: PLC0415 - start-up: torch (`geolab viz assets` needs none)

        return getattr(pictures, name)
    raise AttributeError(f"module 'geolab.viz' has no attribute {name!r}")


__all__ = [
    "AssetError",
    "AugmentationExplorer",
    "GeoClusterExplorer",
    "LiveLoss",
    "TemperatureExplorer",
    "LeafletAssets",
    "OfflineMapError",
    "RetrievalExplorer",
    "RevisitViewer",
    "SIMULATION_NOTE",
    "label_efficiency_curves",
    "method_bars",
    "training_curves",
    "training_history",
    "augmentation_explorer",
    "check_offline_html",
    "cluster_accuracy",
    "cluster_regions",
    "fetch_assets",
    "geo_cluster_explorer",
    "image_grid",
    "land_outline",
    "leaflet_assets",
    "location_map",
    "location_table",
    "nearest_neighbours",
    "retrieval_explorer",
    "revisit_viewer",
    "save_figure",
    "save_map",
    "season",
    "static_map",
    "temperature_explorer",
]
