"""Course profiles and the parameters each notebook gets.

A profile (:data:`geolab.config.PROFILES`: ``smoke``, ``cpu``, ``gpu-full`` ...) holds ``common``
values for every notebook and per-notebook sections. A notebook gets only the keys its
``parameters`` cell declares (found with papermill); ``--set`` overrides are checked against
those declarations before anything runs. Also: finding the course notebooks and the kernel.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from geolab import paths
from geolab.argtypes import positive_int
from geolab.config import PRETRAIN_ROLES, PROFILES, RANDOM_INIT, DenseConfig, PretrainConfig, WorldConfig
from geolab.course.records import CourseError
from geolab.tiers import check_tier

#: Notebooks of the course: two digits, an underscore, a name (``03_temporal_positives.ipynb``).
NOTEBOOK_PATTERN = re.compile(r"^[0-9][0-9]_.+\.ipynb$")
#: The Jupyter kernel ``make setup`` installs into the venv.
DEFAULT_KERNEL = "geolab"
#: Parameters the runner provides itself (never taken from a profile).
RUNNER_PARAMETERS: tuple[str, ...] = ("results_path", "work_dir")


def discover_notebooks(notebooks_dir: str | os.PathLike | None = None, only: Sequence[str] | None = None) -> list[Path]:
    """The course notebooks, in order.

    Args:
        notebooks_dir: folder (default :func:`geolab.paths.notebooks_dir`).
        only: names to keep: a notebook's name (``03_temporal_positives``), its file name, or
            its two-digit number (``03``). ``None`` keeps all.

    Returns:
        Paths of the files matching ``[0-9][0-9]_*.ipynb``, sorted by name.

    Raises:
        CourseError: the folder has no notebooks, or a name in ``only`` matches none.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    if not folder.is_dir():
        raise CourseError(f"The notebooks folder {folder} does not exist.")
    found = sorted(p for p in folder.iterdir() if p.is_file() and NOTEBOOK_PATTERN.match(p.name))
    if not found:
        raise CourseError(f"No course notebooks (files named like 01_name.ipynb) in {folder}.")
    if not only:
        return found
    keep: list[Path] = []
    for name in only:
        key = name[:-6] if name.endswith(".ipynb") else name
        key = Path(key).name
        match = [p for p in found
                 if p.stem == key or (len(key) == 2 and key.isdigit() and p.name.startswith(key + "_"))]
        if not match:
            raise CourseError(
                f"--only {name}: no such notebook in {folder}. Available: {', '.join(p.stem for p in found)}."
            )
        keep.extend(m for m in match if m not in keep)
    return sorted(keep)


def load_profile(profile: str | Mapping[str, Any]) -> dict[str, Any]:
    """A profile as ``{"description", "common": {...}, "notebooks": {name: {...}}}``.

    Args:
        profile: a name in :data:`geolab.config.PROFILES` (``smoke``, ``cpu``, ``gpu-full``) or
            a dict of that shape (tests, custom runs).

    Raises:
        CourseError: unknown name or malformed profile.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise CourseError(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.")
        prof = copy.deepcopy(dict(PROFILES[profile]))
        prof.setdefault("name", profile)
    elif isinstance(profile, Mapping):
        prof = copy.deepcopy(dict(profile))
        prof.setdefault("name", "custom")
    else:
        raise CourseError(f"A profile is a name or a dict, got {type(profile).__name__}.")
    unknown = set(prof) - {"name", "description", "common", "notebooks"}
    if unknown:
        raise CourseError(f"Profile {prof['name']!r} has unknown sections {sorted(unknown)}; use common and notebooks.")
    prof.setdefault("description", "")
    prof.setdefault("common", {})
    prof.setdefault("notebooks", {})
    if not isinstance(prof["common"], Mapping) or not isinstance(prof["notebooks"], Mapping):
        raise CourseError(f"Profile {prof['name']!r}: common and notebooks must be dicts.")
    for key in RUNNER_PARAMETERS:
        if key in prof["common"] or any(key in v for v in prof["notebooks"].values()):
            raise CourseError(f"Profile {prof['name']!r} sets {key!r}, which the runner provides itself.")
    return prof


def declared_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Names declared in a notebook's ``parameters`` cell, with papermill's inferred defaults.

    Raises:
        CourseError: the notebook has no cell tagged ``parameters``.
    """
    import nbformat  # noqa: PLC0415 - optional extra (geolab[lab]); CLI start-up
    import papermill  # noqa: PLC0415 - optional extra (geolab[lab]); CLI start-up

    nb = nbformat.read(str(notebook), as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise CourseError(
            f"{notebook}: no cell tagged 'parameters'. Every course notebook has one parameters "
            "cell right after Setup (tag it in Jupyter: View > Cell toolbar > Tags)."
        )
    return papermill.inspect_notebook(str(notebook))


def notebook_parameters(
    profile: Mapping[str, Any], name: str, declared: Iterable[str], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters one notebook gets from the profile and the overrides.

    The parameters a notebook gets: profile ``common``, then its per-notebook section, then
    ``overrides`` (``--data``, ``--manifest``, ``--set``), kept only where the notebook declares them.

    Args:
        profile: a loaded profile (:func:`load_profile`).
        name: notebook name without ``.ipynb``.
        declared: names in the notebook's parameters cell.
        overrides: values that beat the profile.

    Returns:
        The injected parameters (the runner adds ``results_path`` / ``work_dir``).
    """
    merged = {**profile["common"], **profile["notebooks"].get(name, {}), **(overrides or {})}
    declared = set(declared)
    return {k: v for k, v in merged.items() if k in declared and k not in RUNNER_PARAMETERS}


def check_overrides(
    overrides: Mapping[str, Any], notebooks: Sequence[Path], profile: Mapping[str, Any] | None = None
) -> None:
    """``--set`` values against the course's ``parameters`` cells, before anything runs.

    A key that no notebook of the course declares is an error (a typo such as ``epoch``), and
    so is a value whose type does not fit the declared default: a whole number for an int
    default (not a bool), a number for a float, text for a string, true/false for a bool, a
    list (with fitting items) for a list. A default of ``None`` takes anything, and ``null``
    is accepted where a profile sets the key to ``None`` (e.g. ``max_steps_per_epoch``). The
    types come from the notebooks' own declarations, so new parameters need no change here.

    Args:
        overrides: the ``--set`` values (JSON-parsed), plus the runner's ``data``/``manifest``.
        notebooks: every notebook of the course (a key declared by one that is not selected
            is not a typo).
        profile: the profile in use (its ``None`` values allow ``null``).

    Raises:
        CourseError: every problem found, each naming the key, the value and what fits.
    """
    declared: dict[str, list[tuple[str, Any]]] = {}
    for nb in notebooks:
        for name, info in declared_parameters(nb).items():
            try:
                default = ast.literal_eval(str(info.get("default")))
            except (ValueError, SyntaxError):
                default = None  # not a literal: anything goes
            declared.setdefault(name, []).append((nb.stem, default))
    nullable = {k for prof in [*PROFILES.values(), *([profile] if profile else [])]
                for section in [prof.get("common", {}), *prof.get("notebooks", {}).values()]
                for k, v in section.items() if v is None}
    problems = []
    for key, value in overrides.items():
        if key not in declared:
            if key in ("data", "manifest"):
                continue  # set by --data / --manifest; a course without them ignores them
            close = difflib.get_close_matches(key, declared, n=1)
            hint = (f"did you mean {close[0]}?" if close
                    else f"the course's parameters are {', '.join(sorted(declared))}")
            problems.append(f"--set {key}: no notebook declares this parameter ({hint})")
            continue
        defaults = [d for _, d in declared[key]]
        if any(d is None for d in defaults) or (value is None and key in nullable):
            continue
        if not any(_fits(value, d) for d in defaults):
            where, default = declared[key][0]
            problems.append(f"--set {key}={json.dumps(value)}: {key} takes {_kind(default)} "
                            f"(declared `{key} = {default!r}` in {where}), e.g. --set {key}={json.dumps(default)}")
    if problems:
        raise CourseError("; ".join(problems))


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of the declared ``default`` (ints pass for floats)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            return False
        return not default or all(_fits(v, default[0]) for v in value)
    return isinstance(value, type(default))


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "text"
    if isinstance(default, (list, tuple)):
        return f"a list of {_kind(default[0]).replace('a ', '', 1)}s" if default else "a list"
    return f"a {type(default).__name__}"


# ----------------------------------------------------------------------------- values
@dataclasses.dataclass(frozen=True)
class Rule:
    """How a notebook parameter that is no :class:`~geolab.config.PretrainConfig` field is checked.

    Its value (each item, for a list) must be a valid value of ``config``'s ``field``: the config
    is built with it, so the rule is the config's own (:func:`geolab.argtypes.check_fields`,
    ``__post_init__``). ``also``: values allowed besides; ``check``: an argtypes check instead of a
    field, for a parameter that no config has; ``min_items``: ``None`` for a single value, else the
    fewest items its list may have.
    """

    config: type | None = None
    field: str = ""
    min_items: int | None = None
    also: tuple[Any, ...] = ()
    check: Any = None


#: The course's notebook parameters that are not fields of PretrainConfig (whose fields are checked
#: as PretrainConfig itself checks them): the one place their rules are named.
NOTEBOOK_RULES: dict[str, Rule] = {
    "seeds": Rule(PretrainConfig, "seed", min_items=1),
    "variant_seeds": Rule(PretrainConfig, "seed", min_items=0),
    "methods": Rule(PretrainConfig, "method", min_items=1, also=(RANDOM_INIT,)),
    "strategies": Rule(PretrainConfig, "strategy", min_items=1),
    "inits": Rule(PretrainConfig, "method", min_items=1, also=("random",)),
    "geo_k_values": Rule(PretrainConfig, "geo_k", min_items=0),
    "strategy_values": Rule(PretrainConfig, "strategy", min_items=0),
    "beta_values": Rule(PretrainConfig, "beta", min_items=0),
    "temperature_values": Rule(PretrainConfig, "temperature", min_items=0),
    "world_locations": Rule(WorldConfig, "locations"),
    "world_size": Rule(WorldConfig, "size"),
    "world_seed": Rule(WorldConfig, "seed"),
    "dense_epochs": Rule(DenseConfig, "epochs"),
    "freeze_backbone": Rule(DenseConfig, "freeze_backbone"),
    "max_locations": Rule(check=positive_int),  # the rule of `geolab viz map --max-locations`
    "data": Rule(check=check_tier),
}
#: The method whose rules every notebook's training parameters must pass (it has every part:
#: contrastive, temporal, geo), unless the notebook declares its own ``method``.
_FULL_METHOD = "moco-tp-geo"
#: PretrainConfig fields that the course's notebooks do not hand to PretrainConfig as they are: the run's own
#: (their declared part, ``run``: method, manifest, seed ..., given per run; :func:`geolab.config.training_settings`).
_NOT_TRAINING = tuple(name for name, role in PRETRAIN_ROLES.items() if role.part == "run")


def _config_error(config: type | None, values: Mapping[str, Any], method: str = _FULL_METHOD) -> str | None:
    """What ``config(**values)`` refuses (``None``: nothing), with the placeholders its required fields need."""
    if config is None:
        return None
    base = {"method": method, "manifest": "", "out": ""} if config is PretrainConfig else {}
    try:
        config(**{**base, **values})
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _rule_error(rule: Rule, value: Any) -> str | None:
    """What ``rule`` refuses in one value (an item of a list)."""
    if value in rule.also or (value is None and rule.check is not None):  # None: "all" (max_locations)
        return None
    if rule.check is not None:
        try:
            rule.check(str(value))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            return str(exc)
        return None
    return _config_error(rule.config, {rule.field: value}, value if rule.field == "method" else _FULL_METHOD)


def _value_errors(values: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(parameter, what is wrong) for the values one notebook runs with; ``None``: between parameters."""
    problems: list[tuple[str | None, str]] = []
    own = values.get("method")
    if isinstance(own, str) and (err := _config_error(PretrainConfig, {}, own)):
        problems.append(("method", err))
    method = own if isinstance(own, str) and not problems else _FULL_METHOD
    fields = {f.name for f in dataclasses.fields(PretrainConfig)} - set(_NOT_TRAINING)
    training = {k: v for k, v in values.items() if k in fields}
    alone = {key: err for key, value in training.items()  # one at a time, so that each problem names its parameter
             if value is not None and (err := _config_error(PretrainConfig, {key: value}, method))}
    context = {k: v for k, v in training.items() if k not in alone}  # the notebook's other, valid values
    for key, err in alone.items():  # a rule between fields (bn_splits divides batch_size) read with the notebook's own
        if (err := _config_error(PretrainConfig, {**context, key: training[key]}, method)):
            problems.append((key, err))
    if not problems and (err := _config_error(PretrainConfig, training, method)):
        problems.append((None, err))  # a rule between fields, e.g. warmup_epochs <= epochs
    for key, rule in NOTEBOOK_RULES.items():
        if key not in values:
            continue
        value = values[key]
        if rule.min_items is None:
            if (err := _rule_error(rule, value)):
                problems.append((key, err))
        elif not isinstance(value, (list, tuple)):
            problems.append((key, "must be a list"))
        elif len(value) < rule.min_items:
            what = f"{rule.config.__name__}.{rule.field}" if rule.config is not None else "value"
            problems.append((key, f"is empty; list at least {rule.min_items} (each a valid {what})"))
        else:
            for item in value:
                if (err := _rule_error(rule, item)):
                    problems.append((key, f"item {item!r}: {err}"))
                    break
    return problems


def _literal(text: Any) -> Any:
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None  # not a literal: not checked


def check_values(
    profile: Mapping[str, Any],
    notebooks: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    overrides: Mapping[str, Any],
) -> None:
    """Every value the selected notebooks will run with, by geolab's own rules, before anything runs.

    A notebook runs with its declared defaults, replaced by what the runner injects (profile,
    ``--set``). Each value that is a :class:`~geolab.config.PretrainConfig` field must pass
    PretrainConfig's checks (the rules of ``geolab pretrain``'s options, which ``probe`` and ``knn``
    share; as the method with every part, MoCo-v2+Geo+TP, unless the notebook declares its
    ``method``); every other parameter has its :data:`NOTEBOOK_RULES` entry. So ``seeds=[]``,
    ``max_steps_per_epoch=-5`` or ``device="tpu"`` are refused here, not 30 s into a notebook.

    Args:
        profile: the loaded profile.
        notebooks: notebook name -> (injected parameters, :func:`declared_parameters`).
        overrides: the ``--set`` values.

    Raises:
        CourseError: one line: each problem with where the value comes from (``--set``, the profile,
            a notebook's default), the notebook(s) where only some notebooks are concerned, and the rule.
    """
    found: dict[tuple[str | None, str], list[str]] = {}
    declaring: dict[str | None, list[str]] = {}
    for name, (injected, declared) in notebooks.items():
        values = {k: _literal(v.get("default")) for k, v in declared.items() if k not in RUNNER_PARAMETERS}
        values.update(injected)
        for key in values:
            declaring.setdefault(key, []).append(name)
        for param, err in _value_errors(values):
            origin = _origin(profile, name, param, values, overrides)
            found.setdefault((param, f"{origin}: {err}"), []).append(name)
    if not found:
        return
    lines = []
    for (param, text), names in found.items():
        everywhere = param is not None and len(declaring.get(param, [])) > 1 and names == declaring[param]
        lines.append(text.rstrip(".") + ("" if everywhere else f" (in {', '.join(names)})"))
    raise CourseError("; ".join(lines) + ".")


def _origin(profile: Mapping[str, Any], notebook: str, key: str | None, values: Mapping[str, Any],
            overrides: Mapping[str, Any]) -> str:
    """Where a notebook's value of ``key`` comes from, as the user would write it."""
    if key is None:
        return "these values together"
    value = json.dumps(values[key], default=str)
    if key in overrides:
        return f"--set {key}={value}"
    if key in profile["notebooks"].get(notebook, {}):
        return f"profile {profile['name']!r}, section {notebook}: {key}={value}"
    if key in profile["common"]:
        return f"profile {profile['name']!r}: {key}={value}"
    return f"the default `{key} = {values[key]!r}`"


def check_kernel(kernel_name: str) -> None:
    """Fail early, with what to do, when the Jupyter kernel is not installed.

    Raises:
        CourseError: the kernel is missing.
    """
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415 - optional extra (geolab[lab])

    specs = KernelSpecManager().find_kernel_specs()
    if kernel_name not in specs:
        hint = (
            "Run `make setup` (it installs the kernel into .venv: python -m ipykernel install "
            f"--sys-prefix --name {DEFAULT_KERNEL})"
            if kernel_name == DEFAULT_KERNEL
            else "Install it with `python -m ipykernel install --sys-prefix --name NAME` or pass --kernel"
        )
        raise CourseError(
            f"The Jupyter kernel {kernel_name!r} is not installed "
            f"(found: {', '.join(sorted(specs)) or 'none'}). {hint}."
        )


def describe_plan(
    profile: str | Mapping[str, Any],
    *,
    data: str | None = None,
    only: Sequence[str] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """What ``course run`` would inject into each notebook, without running anything."""
    prof = load_profile(profile)
    over = dict(overrides or {})
    over["data"] = data or over.get("data") or prof["common"].get("data") or "geoworld"
    check_overrides(over, discover_notebooks(notebooks_dir), prof)
    lines = [f"profile {prof['name']}: {prof['description']}".rstrip(": ")]
    selected = {}
    for nb in discover_notebooks(notebooks_dir, only):
        declared = declared_parameters(nb)
        selected[nb.stem] = (notebook_parameters(prof, nb.stem, declared, over), declared)
    check_values(prof, selected, overrides or {})
    for name, (params, _) in selected.items():
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "(defaults only)"
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)
