"""Temporal positives: the location index and its sampling strategies.

The paper's temporal positive (Ayush et al. 2021, Sec. 3.1): the key of a query image is
*another image of the same location taken at another time*, each then augmented as in
MoCo-v2. The official code finds those images with a filesystem glob over the location's
folder for every sample; :class:`LocationIndex` instead sorts the manifest once (location,
then time) into a few numpy arrays, so drawing a temporal positive is O(1) array look-ups
and never touches the filesystem (``bench/bench_temporal_sampling.py`` measures both).

Sampling strategies (:data:`STRATEGIES`):
    ``any-other``: uniform over the other images of the location (the paper's).
    ``nearest`` / ``farthest``: the other image closest to / farthest from the query in time.
    ``other-season``: uniform over the location's images taken in a different
        meteorological season (hemisphere-aware); falls back to ``any-other`` when the
        location has none.
    ``same-image``: the query image itself (plain MoCo-v2: two augmentations of one image).
Each strategy is one function (``_any_other``, ...) listed in ``_RULES``: :meth:`LocationIndex.draw`
(given a uniform number, what the datasets use), :meth:`LocationIndex.positive` (drawing that
number from a generator) and :meth:`LocationIndex.positives` (many rows) all end in it.
A location with a single image always falls back to the same image; the share of such
rows is :attr:`LocationIndex.singleton_share`. A location whose images all carry one timestamp
has positives from other images, but none from another time
(:attr:`LocationIndex.one_time_locations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from geolab.errors import UserError
from geolab.manifest import ManifestError

#: A temporal positive sampling strategy (described in the module docstring).
Strategy = Literal["any-other", "nearest", "farthest", "other-season", "same-image"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
#: Meteorological seasons, indexed by :func:`season_of` (northern-hemisphere names).
SEASONS: tuple[str, ...] = ("winter", "spring", "summer", "autumn")


class StrategyError(UserError, ValueError):
    """A temporal-positive strategy that is not one of :data:`STRATEGIES`."""


def check_strategy(strategy: str) -> Strategy:
    """``strategy`` when it is one of :data:`STRATEGIES`.

    Raises:
        StrategyError: (a ValueError) naming the strategies.
    """
    for known in STRATEGIES:
        if strategy == known:
            return known
    raise StrategyError(f"unknown temporal sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def season_of(month: Any, lat: Any) -> np.ndarray:
    """Meteorological season index (0 winter, 1 spring, 2 summer, 3 autumn), hemisphere-aware.

    December-February is winter in the north and summer in the south: for ``lat < 0`` the
    season is shifted by two.

    Args:
        month: month numbers 1-12.
        lat: latitudes in degrees (broadcast against ``month``).

    Returns:
        int64 array of season indices into :data:`SEASONS`.
    """
    north = (np.asarray(month, dtype=np.int64) % 12) // 3  # Dec/Jan/Feb -> 0, ..., Sep-Nov -> 3
    return np.where(np.asarray(lat) < 0, (north + 2) % 4, north).astype(np.int64)


def need_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a :class:`~geolab.manifest.ManifestError` when ``df`` lacks ``columns`` or has no rows."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{what} needs column(s) {', '.join(missing)}; load the table with geolab.manifest.load_manifest.",
            file=df.attrs.get("source"),
            column=missing[0],
        )
    if len(df) == 0:
        raise ManifestError(
            f"{what} got an empty table (no rows); check the split you selected.", file=df.attrs.get("source")
        )


# ----------------------------------------------------------------------------- location index
class LocationIndex:
    """Location -> its rows sorted by time, built once; O(1) temporal positives.

    All state is a handful of int64 arrays over rows (no Python objects per row), so the
    index is cheap to copy into DataLoader workers.

    Args:
        df: manifest rows with ``location_id``, ``timestamp`` and ``lat``; row ``i`` is
            positional (``df.iloc[i]``).

    Attributes:
        n_locations: number of distinct locations.
        singleton_share: share of rows whose location has a single image (their temporal
            positive is the image itself).
        multi_image_locations: number of locations with two images or more.
        one_time_locations: how many of those have the same timestamp on every image (their
            temporal positive is another image of the same moment, never of another time).
        other_season_fallback_share: share of rows of multi-image locations with no image
            in another season (``other-season`` falls back to ``any-other`` for them).
        seasons: season index of each row (see :func:`season_of`).
    """

    def __init__(self, df: pd.DataFrame) -> None:
        need_columns(df, ("location_id", "timestamp", "lat"), "LocationIndex")
        n = len(df)
        codes, uniques = pd.factorize(df["location_id"].to_numpy(), sort=False)
        codes = codes.astype(np.int64)
        t = pd.DatetimeIndex(df["timestamp"]).as_unit("ns").asi8.astype(np.int64)
        n_loc = len(uniques)
        self.n_locations = n_loc
        self._t = t

        counts = np.bincount(codes, minlength=n_loc)
        loc_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._count = counts[codes].astype(np.int64)
        self._start = loc_start[codes]
        # rows sorted by (location, time); rank of each row inside its location
        order = np.lexsort((np.arange(n), t, codes)).astype(np.int64)
        self._order = order
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n, dtype=np.int64) - loc_start[codes[order]]
        self._rank = rank

        # nearest in time: the previous or the next row in the sorted order (ties -> earlier)
        pos = np.arange(n)
        ts = t[order]
        rank_s, count_s = rank[order], self._count[order]
        big = np.iinfo(np.int64).max
        gap_prev = np.where(rank_s > 0, ts - np.roll(ts, 1), big)
        gap_next = np.where(rank_s < count_s - 1, np.roll(ts, -1) - ts, big)
        pick = np.where(gap_next < gap_prev, np.roll(order, -1), np.roll(order, 1))
        nearest = np.empty(n, dtype=np.int64)
        nearest[order] = np.where(count_s > 1, pick, order)
        self._nearest = nearest

        # farthest in time: the location's first or last image (ties -> the earlier one,
        # unless that is the query itself)
        first = order[self._start]
        last = order[self._start + self._count - 1]
        gap_first, gap_last = t - t[first], t[last] - t
        use_last = (gap_last > gap_first) | ((gap_last == gap_first) & (first == pos))
        self._farthest = np.where(self._count > 1, np.where(use_last, last, first), pos).astype(np.int64)

        # other season: rows sorted by (location, season, time); the query's season is one
        # contiguous block inside its location, so "any row but that block" is one draw
        month = pd.DatetimeIndex(df["timestamp"]).month.to_numpy()
        loc_lat = pd.Series(df["lat"].to_numpy(dtype=np.float64)).groupby(codes).transform("mean").to_numpy()
        self.seasons = season_of(month, loc_lat)
        self._season_order = np.lexsort((np.arange(n), t, self.seasons, codes)).astype(np.int64)
        block = np.bincount(codes * 4 + self.seasons, minlength=n_loc * 4).reshape(n_loc, 4)
        block_off = np.cumsum(block, axis=1) - block
        self._season_off = block_off[codes, self.seasons].astype(np.int64)
        self._season_size = block[codes, self.seasons].astype(np.int64)

        self._make_views()
        self.singleton_share = float(np.mean(self._count == 1)) if n else 0.0
        # rows are sorted by time inside each location: one timestamp when the first equals the last
        multi = counts > 1
        first_t, last_t = t[order[loc_start]], t[order[loc_start + counts - 1]]
        self.multi_image_locations = int(multi.sum())
        self.one_time_locations = int((multi & (first_t == last_t)).sum())
        no_other = (self._count > 1) & (self._count == self._season_size)
        self.other_season_fallback_share = float(np.mean(no_other)) if n else 0.0

    def __len__(self) -> int:
        return len(self._order)

    def revisits(self, i: int) -> np.ndarray:
        """Rows of row ``i``'s location, sorted by time (``i`` included)."""
        s = int(self._start[i])
        return self._order[s : s + int(self._count[i])].copy()

    # Fast scalar access: a memoryview over an int64 numpy array returns plain Python ints
    # (about twice as fast as indexing numpy, and no int() conversions). Memoryviews do not
    # pickle, so they are rebuilt after unpickling (DataLoader workers under spawn).
    _ARRAYS = (
        "_count", "_rank", "_order", "_start", "_nearest", "_farthest", "_season_order", "_season_off", "_season_size",
    )  # fmt: skip
    _count_v: memoryview
    _rank_v: memoryview
    _order_v: memoryview
    _start_v: memoryview
    _nearest_v: memoryview
    _farthest_v: memoryview
    _season_order_v: memoryview
    _season_off_v: memoryview
    _season_size_v: memoryview

    def _make_views(self) -> None:
        for name in self._ARRAYS:
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            setattr(self, name, arr)
            setattr(self, name + "_v", arr.data)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, memoryview)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_views()

    def positive(self, i: int, strategy: Strategy = "any-other", rng: Any = None) -> int:
        """The row of the temporal positive (key) for query row ``i``: O(1), no file access.

        Draws the uniform number of :meth:`draw` from ``rng`` (only for the random strategies).

        Args:
            i: query row (positional).
            strategy: one of :data:`STRATEGIES` (paper: ``"any-other"``).
            rng: anything with a ``random()`` method returning a float in [0, 1)
                (``numpy.random.Generator``, ``random.Random``); default: a fresh unseeded
                generator.

        Returns:
            The key's row; ``i`` itself for ``same-image`` and for single-image locations.

        Raises:
            StrategyError: ``strategy`` is not one of :data:`STRATEGIES` (a ValueError).
        """
        rule = _RULES.get(strategy) or _rule(strategy)
        single = self._count_v[i] == 1
        u = 0.0
        if rule.random and (rule.uniform_for_single_image or not single):
            u = (rng if rng is not None else np.random.default_rng()).random()
        return int(i) if single else rule.pick(self, i, u)

    def draw(self, i: int, strategy: Strategy, u: float) -> int:
        """:meth:`positive` given the uniform random number ``u`` in [0, 1) (what datasets use).

        Args:
            i: query row.
            strategy: one of :data:`STRATEGIES`.
            u: a uniform number in [0, 1); ignored by the deterministic strategies.

        Returns:
            The key's row; ``i`` itself for single-image locations.

        Raises:
            StrategyError: ``strategy`` is not one of :data:`STRATEGIES` (a ValueError).
        """
        rule = _RULES.get(strategy) or _rule(strategy)
        return int(i) if self._count_v[i] == 1 else rule.pick(self, i, u)

    def positives(
        self, rows: Any, strategy: Strategy = "any-other", rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """:meth:`draw` for many query rows at once, with one uniform per row drawn in one call.

        Args:
            rows: query rows, int array.
            strategy: one of :data:`STRATEGIES`.
            rng: random generator (``len(rows)`` numbers are drawn for the random strategies).

        Returns:
            int64 array of key rows.

        Raises:
            StrategyError: ``strategy`` is not one of :data:`STRATEGIES` (a ValueError).
        """
        rule = _rule(strategy)
        rows = np.asarray(rows, dtype=np.int64)
        if rule.random:
            u = (rng if rng is not None else np.random.default_rng()).random(len(rows)).tolist()
        else:
            u = [0.0] * len(rows)
        count, pick = self._count_v, rule.pick
        keys = (i if count[i] == 1 else pick(self, i, ui) for i, ui in zip(rows.tolist(), u))
        return np.fromiter(keys, np.int64, len(rows))


# ----------------------------------------------------------------------------- the strategies
# One function per strategy: the key row for query row ``i`` of a location with two images or
# more, given the uniform number ``u``. LocationIndex.positive, .draw and .positives all end here.
# The arrays are read through memoryviews (plain Python ints, no numpy scalar per read).
def _any_other(index: LocationIndex, i: int, u: float) -> int:
    """The paper's: uniform over the other images of the location, the ``u``-th of them in time order."""
    j = int(u * (index._count_v[i] - 1))
    if j >= index._rank_v[i]:
        j += 1
    return index._order_v[index._start_v[i] + j]


def _other_season(index: LocationIndex, i: int, u: float) -> int:
    """Uniform over the location's images of another season; :func:`_any_other` when it has none."""
    size = index._season_size_v[i]
    m = index._count_v[i] - size
    if m == 0:
        return _any_other(index, i, u)
    j = int(u * m)
    if j >= index._season_off_v[i]:
        j += size
    return index._season_order_v[index._start_v[i] + j]


def _nearest(index: LocationIndex, i: int, u: float) -> int:
    """The other image closest in time (ties: the earlier one)."""
    return index._nearest_v[i]


def _farthest(index: LocationIndex, i: int, u: float) -> int:
    """The other image farthest in time: the location's first or last."""
    return index._farthest_v[i]


def _same_image(index: LocationIndex, i: int, u: float) -> int:
    """The query image itself (plain MoCo-v2)."""
    return int(i)


@dataclass(frozen=True)
class _Rule:
    """How a strategy draws: its function and whether it takes a uniform number.

    ``uniform_for_single_image``: :meth:`LocationIndex.positive` draws the uniform number even
    for a single-image location (``other-season`` always did; kept so that seeded draws stay
    the same).
    """

    pick: Callable[[LocationIndex, int, float], int]
    random: bool
    uniform_for_single_image: bool = False


_RULES: dict[str, _Rule] = {
    "any-other": _Rule(_any_other, random=True),
    "nearest": _Rule(_nearest, random=False),
    "farthest": _Rule(_farthest, random=False),
    "other-season": _Rule(_other_season, random=True, uniform_for_single_image=True),
    "same-image": _Rule(_same_image, random=False),
}
assert set(_RULES) == set(STRATEGIES), "every strategy has one rule"


def uses_uniform(strategy: Strategy) -> bool:
    """Whether ``strategy`` draws its positive with a uniform number (else it is a function of the row).

    Raises:
        StrategyError: ``strategy`` is not one of :data:`STRATEGIES` (a ValueError).
    """
    return _rule(strategy).random


def _rule(strategy: str) -> _Rule:
    """The rule of ``strategy`` (a :class:`StrategyError` naming the strategies when unknown)."""
    return _RULES[check_strategy(strategy)]
