"""How ``geolab`` commands read their options: argument types, and options derived from config dataclasses.

A bad number or name is refused by argparse itself, with the option named and exit status 2,
before anything heavy is imported or any file is touched. The options of a config dataclass
(:class:`geolab.config.PretrainConfig`, :class:`geolab.config.ProbeConfig`) are derived from its
fields (:func:`add_dataclass_arguments`, :func:`dataclass_from_args`), so every field can be set
from the command line and a new field brings its option with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import numbers
import typing
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from geolab.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A setting's value that geolab refuses, with the setting named and what it takes."""


def positive_int(text: str) -> int:
    """An integer >= 1 (``--epochs``, ``--batch-size``, ``--k``...)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--retries``, ``--num-workers``, ``--seed``...)."""
    return _int_at_least(text, 0)


def finite_float(text: str) -> float:
    """Any finite number (``--lr``, ``--alpha``...): ``nan`` and ``inf`` are refused, as every float option's."""
    try:
        value = float(text)
    except ValueError:  # argparse's own words for a plain float option, which these options were
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (``--temperature``, ``--cell-timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--warmup-epochs``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
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

    def __init__(self, module: str, name: str) -> None:
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
#: Temporal positive strategies: :data:`geolab.positives.STRATEGIES`.
STRATEGY_CHOICES = LazyChoices("geolab.positives", "STRATEGIES")
#: What to do with an unreadable image: :data:`geolab.datasets.BAD_IMAGE_POLICIES`.
BAD_IMAGE_CHOICES = LazyChoices("geolab.datasets", "BAD_IMAGE_POLICIES")
#: Devices every command accepts.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- options of config dataclasses
#: Key of a dataclass field's metadata that holds its command-line option (see :func:`option`).
OPTION_KEY = "geolab.option"
#: Key of a dataclass field's metadata that holds its :class:`Role`.
ROLE_KEY = "geolab.role"

#: Which part of a training run a config field belongs to. ``run``: what names one run and is given
#: by whoever starts it (the method, the manifest, the seed, the run folder), not a training setting.
Part = Literal["run", "model", "loss", "optimiser", "data", "runtime"]


@dataclasses.dataclass(frozen=True)
class Role:
    """What a config field is for, declared once beside its default (see :func:`option`).

    Attributes:
        part: the part of the run it belongs to (:data:`Part`).
        learns: it changes the learned weights. Derived from it: what a resumed run must share with its
            checkpoint (:data:`geolab.checkpoints.RESUME_MUST_MATCH`) and what an experiment's key holds
            (:func:`geolab.course.experiment.experiment_key`).
        keyed: for a field that does not change the weights, but was part of every experiment key
            before the roles were declared (issue 27): the key holds its *default*, so that every
            key stays byte-identical and a run that differs only in it is the same run.
    """

    part: Part
    learns: bool = True
    keyed: bool = False


def option(default: Any, help_text: str | None = None, *, part: Part | None = None, learns: bool = True,
           keyed: bool = False, **argparse_kwargs: Any) -> Any:
    """A dataclass field with what :func:`add_dataclass_arguments` needs beyond its name, type and default.

    Args:
        default: the field's default, which is also the option's.
        help_text: the option's help. A ``bool`` field that defaults to ``True`` is set off with
            ``--no-<name>``, which gets this help; a ``bool | None`` field gets ``--<name>`` (with
            this help) and ``--no-<name>``.
        part: the field's :class:`Role` part (``None``: no role, for configs that need none).
        learns: whether it changes the learned weights (:attr:`Role.learns`).
        keyed: see :attr:`Role.keyed`.
        **argparse_kwargs: keywords of ``ArgumentParser.add_argument`` (``type``, ``choices``,
            ``metavar``, ``required``), and ``flag``: the option's name where it is not
            ``--<field-name>`` with dashes for underscores.

    Returns:
        A ``dataclasses.field`` carrying the option (and the role) in its metadata.
    """
    metadata: dict[str, Any] = {OPTION_KEY: {"help": help_text, **argparse_kwargs}}
    if part is not None:
        metadata[ROLE_KEY] = Role(part, learns, keyed)
    return dataclasses.field(default=default, metadata=metadata)


def roles(cls: type) -> dict[str, Role]:
    """Each field of the dataclass ``cls`` with its declared :class:`Role`, in field order.

    Raises:
        TypeError: a field declares no role (give it one with ``option(..., part=...)``).
    """
    out = {}
    for f in dataclasses.fields(cls):
        role = f.metadata.get(ROLE_KEY)
        if not isinstance(role, Role):
            raise TypeError(f"{cls.__name__}.{f.name} declares no role; give it option(..., part=...).")
        out[f.name] = role
    return out


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, exclude: Collection[str] = ()) -> None:
    """One option per field of the dataclass ``cls`` (in field order), except the fields in ``exclude``.

    Each option stores into ``dest=<field name>`` with the field's default. Its type is the
    ``type`` of the field's :func:`option`, else read from the type hint (``int``, ``float`` as
    :func:`finite_float`, ``str``; ``Path`` when the hint names it; ``X | None`` as ``X``). A ``bool`` field is a flag:
    ``--<name>`` when it defaults to ``False``, ``--no-<name>`` when it defaults to ``True``, both
    for ``bool | None`` (neither given: ``None``).

    Args:
        parser: the parser (or sub-command parser) to add the options to.
        cls: a dataclass, e.g. :class:`geolab.config.PretrainConfig`.
        exclude: names of fields that get no option (they keep their default).

    Raises:
        TypeError: a field's type has no option type (give it one with :func:`option`, or exclude it).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        spec = dict(f.metadata.get(OPTION_KEY, {}))
        flag = spec.pop("flag", None)
        if flag is None:
            flag = "--" + f.name.replace("_", "-")
        elif "choices" not in spec:
            spec.setdefault("metavar", flag.removeprefix("--").replace("-", "_").upper())  # as argparse names it
        default = _default(f)
        hint = hints[f.name]
        members = [t for t in (() if typing.get_origin(hint) is Literal else typing.get_args(hint)) or (hint,)
                   if t is not type(None)]
        if members == [bool]:
            _add_switch(parser, flag, f.name, default, spec.get("help"))
            continue
        if "type" not in spec:
            spec["type"] = _option_type(cls, f.name, members)
        if not spec.get("required"):
            spec["default"] = default
        parser.add_argument(flag, dest=f.name, **spec)


def _default(f: dataclasses.Field[Any]) -> Any:
    """A field's default value (from its ``default_factory`` where it has one)."""
    if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def field_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of the dataclass ``cls`` (``dataclasses.MISSING`` for a required one)."""
    return {f.name: _default(f) for f in dataclasses.fields(cls)}


def _add_switch(
    parser: argparse.ArgumentParser, flag: str, dest: str, default: bool | None, help_text: str | None
) -> None:
    """The flag(s) of a ``bool`` or ``bool | None`` field (see :func:`add_dataclass_arguments`)."""
    negative = "--no-" + flag.removeprefix("--")
    if default is None:  # --name, --no-name, or neither (None: decided later, e.g. from the device)
        parser.add_argument(flag, dest=dest, action="store_true", default=None, help=help_text)
        parser.add_argument(negative, dest=dest, action="store_false")
    elif default:
        parser.add_argument(negative, dest=dest, action="store_false", default=True, help=help_text)
    else:
        parser.add_argument(flag, dest=dest, action="store_true", default=False, help=help_text)


def _option_type(cls: type, name: str, members: list[Any]) -> Callable[[str], Any] | None:
    """The argparse ``type`` for a field whose hint, ``None`` left out, is ``members``."""
    if Path in members:
        return Path
    if members == [int]:
        return int
    if members == [float]:
        return finite_float  # float() would take "nan" and "inf"
    if members == [str] or (len(members) == 1 and typing.get_origin(members[0]) is Literal
                            and all(isinstance(v, str) for v in typing.get_args(members[0]))):
        return None  # argparse's default: the text itself (a Literal's names are checked by its choices)
    raise TypeError(f"{cls.__name__}.{name}: no command-line type for {members}; "
                    "give the field a type with geolab.argtypes.option(..., type=...) or exclude it")


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass ``cls`` from a namespace parsed with :func:`add_dataclass_arguments`.

    Args:
        cls: the dataclass whose options were added.
        args: the parsed arguments; a field without an option (excluded) keeps its default.

    Returns:
        ``cls(**values)``, so the dataclass's own checks (``__post_init__``) run as usual.
    """
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def check_finite(config: Any) -> None:
    """Refuse NaN and infinities in every number field of a config dataclass (issue 23).

    ``nan <= 0`` is False, so a range check alone lets ``temperature=nan`` through to a "loss
    became nan" many steps later; the config dataclasses call this first in ``__post_init__``.

    Raises:
        ValueError: ``<Class>.<field> must be a finite number, got nan.``
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            raise ConfigError(f"{type(config).__name__}.{f.name} must be a finite number, got {value}.")


def check_fields(config: Any) -> None:
    """Every rule a config dataclass declares for its fields' values, for configs built in Python too.

    :func:`check_finite`, then each field's :func:`option` rules as argparse applies them to the
    command line: its ``type`` when it is one of this module's checks (:func:`positive_int`,
    :func:`non_negative_float`, :func:`int_between` ...) and its ``choices``. So a notebook's or the
    course runner's ``PretrainConfig(max_steps_per_epoch=-5)`` or ``device="tpu"`` is refused by the
    very rule that refuses ``--max-steps-per-epoch -5`` (one declaration, issue 23). ``None`` passes
    (it means "the default" wherever a field allows it).

    Raises:
        ValueError: ``<Class>.<field>: -5 must be >= 1.`` or ``<Class>.<field>: invalid choice 'tpu';
            choose one of auto, cpu, cuda.``
    """
    check_finite(config)
    name = type(config).__name__
    for f in dataclasses.fields(config):
        spec, value = f.metadata.get(OPTION_KEY), getattr(config, f.name)
        if not spec or value is None:
            continue
        rule = spec.get("type")
        if callable(rule) and getattr(rule, "__module__", None) == __name__:
            try:
                rule(str(value))
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"{name}.{f.name}: {exc}.") from None
        choices = spec.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}.{f.name}: invalid choice {value!r}; choose one of "
                             f"{', '.join(str(c) for c in choices)}.")

