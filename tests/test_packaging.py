"""The set-up files agree with each other, so `make setup`, conda users and CI install the same
thing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in ("lab", "test"):
        reqs += meta["optional-dependencies"][extra]
    return {_name(r) for r in reqs}


def _environment_names() -> set[str]:
    names: set[str] = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s+(.+?)\s*$", line)
        if not m or m.group(1).endswith(":") or m.group(1).startswith("-e "):
            continue  # "- pip:" opens the pip section; "-e ." is geolab itself
        if line.startswith("  - conda-forge"):
            continue
        name = CONDA_TO_PYPI.get(_name(m.group(1)), _name(m.group(1)))
        if name not in NOT_PACKAGES:
            names.add(name)
    return names


def test_environment_yml_names_the_same_packages_as_pyproject():
    """environment.yml and pyproject.toml cannot drift: same package names on both sides."""
    py, env = _pyproject_names(), _environment_names()
    assert py == env, f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


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
