"""Maps, image grids and widgets: learners look rather than read.

- :mod:`geolab.viz.maps`: folium maps of locations (by category, split or geo cluster) with
  thumbnail popups, geo cluster regions, accuracy per geo cluster, legend and layer control;
  offline pages (Leaflet inlined, land outline instead of tiles); matplotlib fallbacks.
- :mod:`geolab.viz.widgets`: the revisit viewer, the augmentation explorer (MoCo-v2 views
  against temporal positives) and nearest-neighbour retrieval per method.
- :mod:`geolab.viz.curves`: contrastive and geo loss and the kNN monitor of the runs a notebook
  compares; each method's mean with its 95% interval (``method_bars``).
- :mod:`geolab.viz.assets`: where Leaflet's JS/CSS come from (a registry package).
- :mod:`geolab.viz.land`: the land outline traced from the shipped global-land-mask raster.

Heavy imports (folium, ipywidgets, matplotlib) happen inside the functions that need them.
"""

from __future__ import annotations

from geolab.viz.curves import method_bars, training_curves, training_history
from geolab.viz.assets import AssetError, LeafletAssets, fetch_assets, leaflet_assets
from geolab.viz.land import land_outline
from geolab.viz.maps import (
    SIMULATION_NOTE,
    OfflineMapError,
    check_offline_html,
    cluster_accuracy,
    cluster_regions,
    location_map,
    location_table,
    save_figure,
    save_map,
    static_map,
)
#: Names served from geolab.viz.widgets on first use (ipywidgets is a lab extra, imported then).
_WIDGET_NAMES = (
    "AugmentationExplorer",
    "RetrievalExplorer",
    "RevisitViewer",
    "augmentation_explorer",
    "image_grid",
    "nearest_neighbours",
    "retrieval_explorer",
    "revisit_viewer",
    "season",
)


def __getattr__(name: str):
    if name in _WIDGET_NAMES:
        from geolab.viz import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'geolab.viz' has no attribute {name!r}")


__all__ = [
    "AssetError",
    "AugmentationExplorer",
    "LeafletAssets",
    "OfflineMapError",
    "RetrievalExplorer",
    "RevisitViewer",
    "SIMULATION_NOTE",
    "method_bars",
    "training_curves",
    "training_history",
    "augmentation_explorer",
    "check_offline_html",
    "cluster_accuracy",
    "cluster_regions",
    "fetch_assets",
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
]
