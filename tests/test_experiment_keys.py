"""The experiment keys of every run the course's notebooks train stay byte-identical (issue 27).

A course run reuses a finished run by its key (:func:`geolab.course.experiment.experiment_key`):
a change in how the key is made would retrain every cached run. ``tests/data/experiment_keys.json``
holds the keys of all runs that notebooks 02-07 train under the ``cpu``, ``cpu-long`` and ``gpu``
profiles, computed before issue 27 moved the config's roles into one declaration. The manifest's
fingerprint is faked (a fixed path, size and mtime) so that the keys do not depend on this machine;
the geolab version is part of the key, so a version bump regenerates the file
(``python tests/test_experiment_keys.py``).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat

from geolab.course import ablation, experiment
from geolab.course.profiles import declared_parameters, load_profile, notebook_parameters

DATA = Path(__file__).parent / "data" / "experiment_keys.json"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PROFILES = ("cpu", "cpu-long", "gpu")
FAKE_MANIFEST = "/geolab-keys/world/manifest.parquet"
_STAT = os.stat_result((0o100644, 1, 1, 1, 0, 0, 123456, 1_700_000_000, 1_700_000_000, 1_700_000_000,
                        1_700_000_000, 1_700_000_000, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789,
                        1_700_000_000_123_456_789))


def _fake_manifest(monkeypatch: Any) -> None:
    """Make FAKE_MANIFEST resolve to itself and stat as a fixed file (size and mtime)."""
    real_stat, real_realpath = os.stat, os.path.realpath

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        return _STAT if str(path).startswith("/geolab-keys/") else real_stat(path, *args, **kwargs)

    def realpath(path: Any, *args: Any, **kwargs: Any) -> Any:
        return str(path) if str(path).startswith("/geolab-keys/") else real_realpath(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os.path, "realpath", realpath)


def _notebook_values(profile: dict[str, Any], name: str) -> dict[str, Any]:
    """The values a notebook runs with under ``profile``: its declared defaults, then what the runner injects."""
    declared = declared_parameters(NOTEBOOKS / f"{name}.ipynb")
    values = {k: ast.literal_eval(str(v["default"])) for k, v in declared.items()}
    values.update(notebook_parameters(profile, name, declared))
    return values


def _train(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The notebook's own ``train = ...`` cell (and its imports), run on ``values``."""
    nb = nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = next(s for s in code if s.lstrip().startswith(("import", "from")))
    cell = next(s for s in code if s.startswith("train = "))
    namespace = dict(values)
    exec(setup, namespace)  # the notebook's own cells
    exec(cell, namespace)
    return dict(namespace["train"])


def _runs(name: str, values: dict[str, Any], train: dict[str, Any]) -> list[dict[str, Any]]:
    """The (method, seed, settings) of each run notebook ``name`` trains, as its cells ask for them."""
    seeds = values.get("seeds", [0])
    if name == "02_supervised_gap":
        return [dict(method=m, seed=s, **train) for m in ("random-init", "supervised", "moco") for s in seeds]
    if name == "03_temporal_positives":
        main = [dict(method=m, seed=s, **train) for m in ("random-init", "moco", "moco-tp") for s in seeds]
        return main + [dict(method="moco-tp", seed=seeds[0], variant=s, strategy=s, **train)
                       for s in values["strategies"]]
    if name == "04_geo_pretext":
        methods = ("random-init", "moco", "moco-geo", "moco-tp", "moco-tp-geo")
        return [dict(method=m, seed=s, **train) for m in methods for s in seeds]
    if name == "05_ablations":
        methods = ["random-init", "moco", "moco-tp", "moco-geo", "moco-tp-geo"]
        runs = [dict(method=m, seed=s, **train) for m in methods for s in seeds]
        baseline = {**train, "beta": 1.0, "strategy": None}
        sweeps = {"geo_k": values["geo_k_values"], "strategy": values["strategy_values"],
                  "beta": values["beta_values"], "temperature": values["temperature_values"]}
        variant_seeds = values["variant_seeds"]
        for step in ablation.sweep_plan(baseline, sweeps):
            for seed in (seeds if step["is_baseline"] or not variant_seeds else variant_seeds):
                runs.append(dict(method="moco-tp-geo", seed=seed, variant=step["variant"], **step["config"]))
        return runs
    if name == "06_maps_and_embeddings":
        return [dict(method=m, seed=seeds[0], **train) for m in values["methods"]]
    if name == "07_transfer":
        return [dict(method=m, seed=seeds[0], **train) for m in values["inits"] if m != "random"]
    raise AssertionError(name)


NOTEBOOKS_THAT_TRAIN = ("02_supervised_gap", "03_temporal_positives", "04_geo_pretext", "05_ablations",
                        "06_maps_and_embeddings", "07_transfer")


def course_keys() -> dict[str, dict[str, list[str]]]:
    """profile -> notebook -> ``"<method> seed <s> [variant]: <key>"`` for each run, in the notebook's order."""
    out: dict[str, dict[str, list[str]]] = {}
    for profile_name in PROFILES:
        profile = load_profile(profile_name)
        out[profile_name] = {}
        for name in NOTEBOOKS_THAT_TRAIN:
            values = _notebook_values(profile, name)
            lines = []
            for run in _runs(name, values, _train(name, values)):
                method, seed, variant = run.pop("method"), run.pop("seed"), run.pop("variant", "")
                _, key, _ = experiment._plan(method, FAKE_MANIFEST, seed, False, run, "")
                lines.append(f"{method} seed {seed}{' ' + variant if variant else ''}: {key}")
            out[profile_name][name] = lines
    return out


def test_experiment_keys_of_the_course_are_unchanged(monkeypatch):
    _fake_manifest(monkeypatch)
    expected = json.loads(DATA.read_text())
    assert course_keys() == expected


if __name__ == "__main__":  # regenerate tests/data/experiment_keys.json (only for a new geolab version)
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        _fake_manifest(mp)
        DATA.write_text(json.dumps(course_keys(), indent=1) + "\n")
    print(f"wrote {DATA}", file=sys.stderr)
