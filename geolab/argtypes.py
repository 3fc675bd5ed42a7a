"""Argument types shared by every ``geolab`` command (and ``python -m geolab.train``).

A bad number or name is refused by argparse itself, with the option named and exit status 2,
before anything heavy is imported or any file is touched.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator


def positive_int(text: str) -> int:
    """An integer >= 1 (``--epochs``, ``--batch-size``, ``--k``...)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--retries``, ``--num-workers``, ``--seed``...)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (``--temperature``, ``--cell-timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def int_between(low: int, high: int):
    """A type for integers in ``[low, high]`` (``--quality``)."""

    def parse(text: str) -> int:
        value = _int_at_least(text, low)
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} must be <= {high}")
        return value

    parse.__name__ = f"int in [{low}, {high}]"
    return parse


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


class LazyChoices:
    """The keys of a registry in another module, read when argparse first checks a value.

    ``choices=LazyChoices("geolab.models", "ARCHS")`` keeps the list derived from the registry
    (new architectures appear by themselves) without importing torch for every command: the
    module is imported only when a value is checked or the choices are printed. Give the
    argument a ``metavar`` so that usage lines do not import it either.
    """

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _names(self) -> list[str]:
        return list(getattr(importlib.import_module(self.module), self.name))

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return f"LazyChoices({self.module}.{self.name})"


#: Backbone names: the keys of :data:`geolab.models.ARCHS`.
ARCH_CHOICES = LazyChoices("geolab.models", "ARCHS")
#: Temporal positive strategies: :data:`geolab.datasets.STRATEGIES`.
STRATEGY_CHOICES = LazyChoices("geolab.datasets", "STRATEGIES")
#: Devices every command accepts.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
