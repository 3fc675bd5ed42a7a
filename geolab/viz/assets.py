"""Leaflet's JavaScript and CSS, found on this machine and inlined into saved maps.

folium's pages load Leaflet, jQuery, Bootstrap and Font Awesome from CDNs, so a map saved on
an air-gapped cluster (or in CI) opens blank. geolab's maps need Leaflet alone, and take it
from a package that a package registry installed, never from a copy in the repository:

1. ``$GEOLAB_LEAFLET_DIR``: a folder holding ``leaflet.js``, ``leaflet.css`` and ``images/``
   (for sites that keep their own web assets);
2. ``geolab/_assets/leaflet/``: written by ``geolab viz fetch-assets --source npm`` from the
   npm registry's ``leaflet`` package (ignored by git);
3. the PyPI package ``xstatic-leaflet`` (Leaflet 1.9.3, BSD-2-Clause, no dependencies), which
   ``pip install geolab[lab]`` installs; this is the default and needs no extra step.

The first that holds a complete Leaflet wins; :func:`leaflet_assets` says which.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from geolab import paths
from geolab.errors import UserError
from geolab.io import atomic_write_json

#: The Leaflet release geolab's maps are written against (folium 0.20 uses it too).
LEAFLET_VERSION = "1.9.3"
#: PyPI package and version that ship it.
XSTATIC_REQUIREMENT = "xstatic-leaflet==1.9.3.0"

_REQUIRED = ("leaflet.js", "leaflet.css")


class AssetError(UserError, RuntimeError):
    """Leaflet's files could not be found or fetched; the message says what to do."""


@dataclass(frozen=True)
class LeafletAssets:
    """Where Leaflet's files are and where they came from.

    Attributes:
        folder: holds ``leaflet.js``, ``leaflet.css`` and ``images/``.
        source: ``"env"``, ``"npm"`` or ``"pypi"``.
        version: Leaflet's version as its ``leaflet.js`` banner states it.
    """

    folder: Path
    source: str
    version: str

    def js(self) -> str:
        """Leaflet's minified JavaScript."""
        return (self.folder / "leaflet.js").read_text(encoding="utf-8")

    def css(self) -> str:
        """Leaflet's CSS with its images inlined as ``data:`` URIs.

        A page opened from ``file://`` then asks for no file beside it.
        """
        css = (self.folder / "leaflet.css").read_text(encoding="utf-8")

        def inline(match: re.Match[str]) -> str:
            image = self.folder / "images" / match.group(2)
            if not image.is_file():  # leave it: the browser test reports a missing file
                return match.group(0)
            data = base64.b64encode(image.read_bytes()).decode("ascii")
            return f"url(data:image/png;base64,{data})"

        return re.sub(r"url\((['\"]?)images/([\w.-]+\.png)\1\)", inline, css)


def npm_assets_dir() -> Path:
    """Where ``geolab viz fetch-assets --source npm`` puts Leaflet (inside the package)."""
    return paths.PACKAGE_DIR / "_assets" / "leaflet"


def _version_of(folder: Path) -> str | None:
    """Leaflet's version from the banner of ``leaflet.js``, or None if the folder lacks it."""
    if not all((folder / name).is_file() for name in _REQUIRED):
        return None
    head = (folder / "leaflet.js").read_text(encoding="utf-8", errors="replace")[:400]
    match = re.search(r"Leaflet (\d+\.\d+\.\d+)", head)
    return match.group(1) if match else "unknown"


def _candidates() -> list[tuple[str, Path | None]]:
    env = os.environ.get("GEOLAB_LEAFLET_DIR")
    out: list[tuple[str, Path | None]] = [("env", Path(env).expanduser() if env else None)]
    out.append(("npm", npm_assets_dir()))
    try:
        import xstatic.pkg.leaflet as xleaflet  # noqa: PLC0415 - xstatic-leaflet: a lab extra, maybe installed since

        out.append(("pypi", Path(xleaflet.BASE_DIR)))
    except ImportError:
        out.append(("pypi", None))
    return out


def leaflet_assets() -> LeafletAssets:
    """Find Leaflet's JS/CSS on this machine (see the module docstring for the order).

    Returns:
        The first complete set found.

    Raises:
        AssetError: none found; the message names the places looked at and the fixes.
    """
    looked: list[str] = []
    for source, folder in _candidates():
        if folder is None:
            looked.append(f"{source}: not installed" if source == "pypi" else f"{source}: not set")
            continue
        version = _version_of(folder)
        if version is not None:
            return LeafletAssets(folder=folder, source=source, version=version)
        looked.append(f"{source}: {folder} has no {' / '.join(_REQUIRED)}")
    raise AssetError(
        "Leaflet's JavaScript/CSS were not found, so an offline map cannot be written ("
        + "; ".join(looked)
        + f"). Fix: `pip install {XSTATIC_REQUIREMENT}` (part of `pip install geolab[lab]`), "
        "or `geolab viz fetch-assets --source npm`, or point GEOLAB_LEAFLET_DIR at a folder "
        "with leaflet.js, leaflet.css and images/."
    )


def extract_npm_tarball(tarball: Path, dest: Path | None = None) -> Path:
    """Copy Leaflet's ``dist/`` files out of an ``npm pack`` tarball into ``dest``.

    Only ``leaflet.js``, ``leaflet.css``, ``images/*.png`` and the licence are taken; members
    are read by name, never extracted by path (a tarball cannot write outside ``dest``).

    Args:
        tarball: the ``leaflet-<version>.tgz`` that ``npm pack`` wrote.
        dest: target folder (default :func:`npm_assets_dir`); replaced atomically.

    Returns:
        ``dest``.

    Raises:
        AssetError: the tarball lacks ``package/dist/leaflet.js`` or ``leaflet.css``.
    """
    dest = Path(dest) if dest is not None else npm_assets_dir()
    wanted = re.compile(r"^package/(dist/(leaflet\.js|leaflet\.css|images/[\w.-]+\.png)|LICENSE)$")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".leaflet.", dir=dest.parent))
    try:
        found: dict[str, str] = {}
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or not wanted.match(member.name):
                    continue
                rel = member.name.removeprefix("package/").removeprefix("dist/")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                target.write_bytes(data)
                found[rel] = hashlib.sha256(data).hexdigest()
        missing = [name for name in _REQUIRED if name not in found]
        if missing:
            raise AssetError(
                f"{tarball} is not a Leaflet package: it lacks package/dist/{', '.join(missing)}. "
                f"Fetch it with `npm pack leaflet@{LEAFLET_VERSION}`."
            )
        atomic_write_json(tmp / "SOURCE.json", {"tarball": Path(tarball).name, "sha256": found})
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp/mkstemp make them private; others read them
            path.chmod(0o755 if path.is_dir() else 0o644)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_assets(source: str = "pypi", version: str = LEAFLET_VERSION) -> LeafletAssets:
    """Install Leaflet's JS/CSS from a package registry.

    Args:
        source: ``"pypi"`` runs ``pip install xstatic-leaflet`` into this Python;
            ``"npm"`` runs ``npm pack leaflet@<version>`` and keeps ``dist/`` in
            ``geolab/_assets/leaflet/``.
        version: Leaflet's version for ``"npm"`` (PyPI's package pins 1.9.3).

    Returns:
        The assets now found by :func:`leaflet_assets`.

    Raises:
        AssetError: the client is missing or the registry said no.
    """
    if source == "pypi":
        cmd = [sys.executable, "-m", "pip", "install", XSTATIC_REQUIREMENT]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssetError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()[-2000:]}")
        importlib.invalidate_caches()
    elif source == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError("npm is not installed; use `--source pypi` or install Node.js' npm.")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [npm, "pack", f"leaflet@{version}", "--pack-destination", tmp, "--silent"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise AssetError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()[-2000:]}")
            tarballs = sorted(Path(tmp).glob("leaflet-*.tgz"))
            if not tarballs:
                raise AssetError(f"`{' '.join(cmd)}` wrote no leaflet-*.tgz in {tmp}.")
            extract_npm_tarball(tarballs[0])
    else:
        raise AssetError(f"Unknown asset source {source!r}: use 'pypi' or 'npm'.")
    return leaflet_assets()
