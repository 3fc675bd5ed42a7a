"""The set-up files agree with each other, so `make setup`, conda users and CI install the same
thing."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    """name -> version range of every requirement (core, lab and test extras)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in ("lab", "test"):
        reqs += meta["optional-dependencies"][extra]
    return {_name(r): Requirement(r).specifier for r in reqs}


def _environment_requirements() -> dict[str, SpecifierSet]:
    """name (PyPI's) -> version range of every package environment.yml installs."""
    found: dict[str, SpecifierSet] = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s+(.+?)\s*$", line)
        if not m or m.group(1).endswith(":") or m.group(1).startswith("-e "):
            continue  # "- pip:" opens the pip section; "-e ." is geolab itself
        if line.startswith("  - conda-forge"):
            continue
        spec = m.group(1).split("#")[0].strip()
        name = CONDA_TO_PYPI.get(_name(spec), _name(spec))
        if name not in NOT_PACKAGES:
            # conda match specs and pip requirements both write ranges as ">=2.1,<3"
            found[name] = SpecifierSet(spec[len(_name(spec)):].replace(" ", ""))
    return found


def _pyproject_names() -> set[str]:
    return set(_pyproject_requirements())


def _environment_names() -> set[str]:
    return set(_environment_requirements())


def test_environment_yml_names_the_same_packages_as_pyproject():
    """environment.yml and pyproject.toml cannot drift: same package names on both sides."""
    py, env = _pyproject_names(), _environment_names()
    assert py == env, f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


def test_environment_yml_and_pyproject_ask_for_the_same_versions():
    """Same version range for every package on both sides (e.g. torch>=2.1 and pytorch>=2.1),
    so a conda user never gets a release that pip users are told geolab does not support."""
    py, env = _pyproject_requirements(), _environment_requirements()
    differ = {n: (str(py[n]), str(env[n])) for n in sorted(py.keys() & env.keys()) if py[n] != env[n]}
    assert not differ, f"version ranges differ (pyproject, environment.yml): {differ}"
    unbounded = sorted(n for n, spec in py.items() if not str(spec))
    assert not unbounded, f"give these a lower bound in pyproject.toml and environment.yml: {unbounded}"


def test_build_backend_supports_the_spdx_license_string():
    """`license = "MIT"` (an SPDX string, PEP 639) needs setuptools>=77; older setuptools, or a
    TOML table, makes `pip install -e .` print deprecation warnings."""
    toml = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(toml["project"]["license"], str)
    setuptools = next(Requirement(r) for r in toml["build-system"]["requires"] if _name(r) == "setuptools")
    assert "76.9" not in setuptools.specifier and "77.0" in setuptools.specifier


def test_environment_yml_installs_geolab_with_its_extras():
    """The conda environment ends by installing geolab itself with the lab and test extras."""
    assert "- -e .[lab,test]" in (ROOT / "environment.yml").read_text()


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run calls the README's test command, so CI checks what users are told to run."""
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert ci_commands[-1] == "make test"


def test_makefile_treats_pytest_exit_5_as_failure():
    """An empty test collection must fail `make test`, never pass silently."""
    text = (ROOT / "Makefile").read_text()
    assert "-eq 5" in text and "exit 1" in text


def _make_lab_command(uid: int) -> str:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    # -n prints the recipe without running it; -o keeps the set-up stamp from being rebuilt
    out = subprocess.run(
        ["make", "-n", "-o", ".venv/.geolab-installed", "lab", f"LAB_UID={uid}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return next(line for line in out.splitlines() if "jupyter lab" in line)


def test_make_lab_opens_notebooks_with_the_geolab_kernel_and_runs_as_root():
    """`make lab` serves notebooks/ with `geolab` as the default kernel; as root (containers)
    it passes --allow-root (Jupyter refuses to start without it) and --no-browser (the URL
    is printed instead); as another user it passes neither."""
    root, user = _make_lab_command(0), _make_lab_command(1000)
    for cmd in (root, user):
        assert "--ServerApp.root_dir=notebooks" in cmd and "--MappingKernelManager.default_kernel_name=geolab" in cmd
    assert "--allow-root" in root and "--no-browser" in root
    assert "--allow-root" not in user and "--no-browser" not in user
