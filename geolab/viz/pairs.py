"""A static figure of what MoCo-v2 pairs and temporal pairs look like (reports, HTML export).

The interactive version is :func:`geolab.viz.widgets.augmentation_explorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from geolab.positives import LocationIndex, Strategy
from geolab.transforms import moco_v2_view
from geolab.viz.pictures import view_to_image


def pair_figure(
    df: pd.DataFrame,
    rows: Sequence[int],
    strategy: Strategy = "any-other",
    input_size: int = 64,
    seed: int = 0,
    note: str | None = None,
) -> Any:
    """One line per query row: the image, two MoCo-v2 views of it, its temporal positive and a view of that.

    The two views are a MoCo-v2 positive pair; the temporal positive and its view a temporal positive pair.

    Args:
        df: a manifest (row positions are used).
        rows: query rows to show.
        strategy: temporal positive sampling strategy (``geolab.positives.STRATEGIES``).
        input_size: side of the MoCo-v2 views.
        seed: seeds the positive draw and the augmentations.
        note: a line under the figure (e.g. that the data are simulated).

    Returns:
        A matplotlib Figure.
    """
    df = df.reset_index(drop=True)
    index = LocationIndex(df)
    view = moco_v2_view(input_size)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    titles = ["query image", "MoCo-v2 view 1", "MoCo-v2 view 2", "temporal positive", "its view"]
    fig, axes = plt.subplots(len(rows), 5, figsize=(9, 1.9 * len(rows)), squeeze=False, layout="constrained")
    for r, i in enumerate(rows):
        j = index.positive(int(i), strategy, rng)
        query, key = Image.open(df.path[i]).convert("RGB"), Image.open(df.path[j]).convert("RGB")
        shown = [
            query,
            view_to_image(view(query), view),
            view_to_image(view(query), view),
            key,
            view_to_image(view(key), view),
        ]
        for c, (ax, im) in enumerate(zip(axes[r], shown)):
            ax.imshow(np.asarray(im))
            ax.set_xticks([]), ax.set_yticks([])
            label = titles[c] if r == 0 else ""
            if c == 0:
                label += f"\n{df.timestamp[i]:%Y-%m}"
            if c == 3:
                label += f"\n{df.timestamp[j]:%Y-%m}" + (" (same image)" if j == i else "")
            ax.set_title(label.strip(), fontsize=8)
    if note:
        fig.supxlabel(note, fontsize=8, color="darkred")
    return fig
