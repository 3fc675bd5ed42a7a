"""The pair figure shows, per query row, the image, two MoCo-v2 views, the temporal positive
drawn by the chosen strategy, and its view."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from geolab.manifest import load_manifest
from geolab.viz.pairs import pair_figure
from tests.helpers import make_manifest


def test_pair_figure_has_five_panels_per_row_and_dates_the_positive(tmp_path):
    df = load_manifest(make_manifest(tmp_path, n_locations=4, revisits=(3,)))
    fig = pair_figure(df, rows=[0, 3], strategy="farthest", input_size=32, note="simulated")
    assert len(fig.axes) == 10
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("query image") and titles[3].startswith("temporal positive")
    # farthest in time from the first revisit is the last one: another date than the query's
    assert titles[3].splitlines()[-1] != titles[0].splitlines()[-1]


def test_same_image_strategy_is_labelled(tmp_path):
    df = load_manifest(make_manifest(tmp_path, n_locations=2, revisits=(2,)))
    fig = pair_figure(df, rows=[0], strategy="same-image", input_size=32)
    assert "(same image)" in fig.axes[3].get_title()
