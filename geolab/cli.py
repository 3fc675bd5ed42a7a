"""The ``geolab`` command. Each sub-command is a thin wrapper over the library function that
the notebooks call too; errors meant for users (bad manifest, missing data) are printed
without a traceback and exit with status 2.

Layout: one ``_add_<group>`` function per group registers its sub-commands; each handler
imports its module lazily so that ``geolab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UserError(Exception):
    """An error whose message is the whole story for the user (no traceback)."""


# ----------------------------------------------------------------------------- data
def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, check and fetch data (manifests, geoworld, fMoW)")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    p = dsub.add_parser("validate", help="check a manifest against the contract")
    p.add_argument("manifest", type=Path)
    p.add_argument("--no-check-files", action="store_true", help="do not check that image files exist")
    p.set_defaults(func=_data_validate)

    p = dsub.add_parser("stats", help="counts per split, label and location; revisit time spans")
    p.add_argument("manifest", type=Path)
    p.set_defaults(func=_data_stats)

    p = dsub.add_parser("world", help="generate (or reuse from cache) the geoworld simulation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--locations", type=int, default=None, help="number of locations")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the cache)")
    p.set_defaults(func=_data_world)


def _data_validate(args: argparse.Namespace) -> int:
    from geolab.manifest import load_manifest

    df = load_manifest(args.manifest, check_files=not args.no_check_files)
    print(f"{args.manifest}: OK ({len(df)} images, {df['location_id'].nunique()} locations)")
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from geolab.manifest import format_stats, load_manifest

    print(format_stats(load_manifest(args.manifest, check_files=False)))
    return 0


def _data_world(args: argparse.Namespace) -> int:
    from geolab.world import load_world

    kwargs = {k: v for k, v in dict(size=args.size, locations=args.locations).items() if v is not None}
    path = load_world(seed=args.seed, out=args.out, **kwargs)
    print(path)
    return 0


# ----------------------------------------------------------------------------- doctor
def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check that this environment is ready for the course")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from geolab.envcheck import environment_report, problems

    report = environment_report()
    for key, value in report.items():
        print(f"{key:>15}: {value}")
    found = problems(report)
    for p in found:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if found else 0


# ----------------------------------------------------------------------------- course
def _add_course(sub: argparse._SubParsersAction) -> None:
    course = sub.add_parser("course", help="run the course notebooks in batch (papermill): results.json and a report")
    csub = course.add_subparsers(dest="course_cmd", required=True)

    p = csub.add_parser(
        "run",
        help="execute the numbered notebooks with a profile's parameters",
        description="Execute notebooks/NN_*.ipynb in order with papermill, injecting the profile's "
        "parameters; write executed notebooks, results.json, report.md and report.html into --out. "
        "Rerunning into the same --out skips notebooks that already succeeded with the same source "
        "and parameters, and continues from a failed one.",
    )
    p.add_argument("--profile", default="cpu", help="smoke (tests), cpu (make course), gpu-full (fMoW, paper settings)")
    p.add_argument("--data", default=None, help="data tier: geoworld | fmow-mini | fmow | geoimagenet (default: the profile's)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest of the real data (needed for fmow, geoimagenet)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<profile>-<data>)")
    p.add_argument("--only", nargs="+", metavar="NB", default=None, help="run only these notebooks (name or number, e.g. 03)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter (VALUE read as JSON, else as text), e.g. --set epochs=2",
    )
    p.add_argument("--kernel", default="geolab", help="Jupyter kernel (default: geolab, installed by make setup)")
    p.add_argument("--notebooks-dir", type=Path, default=None, help="folder of the notebooks (default: notebooks/)")
    p.add_argument("--force", action="store_true", help="rerun notebooks that would be skipped")
    p.add_argument("--cell-timeout", type=float, default=None, help="seconds one cell may run (default: no limit)")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p.set_defaults(func=_course_run)

    p = csub.add_parser("plan", help="show the parameters each notebook would get, without running")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data", default=None)
    p.add_argument("--only", nargs="+", metavar="NB", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--notebooks-dir", type=Path, default=None)
    p.set_defaults(func=_course_plan)

    p = csub.add_parser("report", help="rewrite report.md/html of a run folder from its results.json")
    p.add_argument("out", type=Path)
    p.set_defaults(func=_course_report)


def _parse_overrides(items: list[str]) -> dict:
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set epochs=2")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _course_run(args: argparse.Namespace) -> int:
    from geolab import course

    try:
        run = course.run_course(
            args.profile,
            args.out,
            data=args.data,
            manifest=args.manifest,
            only=args.only,
            overrides=_parse_overrides(args.overrides),
            notebooks_dir=args.notebooks_dir,
            kernel_name=args.kernel,
            force=args.force,
            cell_timeout=args.cell_timeout,
            progress_bar=not args.no_progress and sys.stderr.isatty(),
        )
    except (course.CourseError, course.ResultsValidationError) as exc:
        raise UserError(str(exc)) from exc
    return 0 if run.ok else 1


def _course_plan(args: argparse.Namespace) -> int:
    from geolab import course

    try:
        print(
            course.describe_plan(
                args.profile,
                data=args.data,
                only=args.only,
                notebooks_dir=args.notebooks_dir,
                overrides=_parse_overrides(args.overrides),
            )
        )
    except course.CourseError as exc:
        raise UserError(str(exc)) from exc
    return 0


def _course_report(args: argparse.Namespace) -> int:
    from geolab import course

    try:
        md, html = course.rebuild_report(args.out)
    except (course.CourseError, course.ResultsValidationError) as exc:
        raise UserError(str(exc)) from exc
    print(f"{md}\n{html}")
    return 0


# ----------------------------------------------------------------------------- viz
def _add_viz(sub: argparse._SubParsersAction) -> None:
    viz = sub.add_parser("viz", help="offline maps: Leaflet assets, map pages and PNGs of a manifest")
    vsub = viz.add_subparsers(dest="viz_cmd", required=True)

    p = vsub.add_parser("assets", help="say where Leaflet's JS/CSS for offline maps come from")
    p.set_defaults(func=_viz_assets)

    p = vsub.add_parser("fetch-assets", help="install Leaflet's JS/CSS from a package registry")
    p.add_argument("--source", choices=("pypi", "npm"), default="pypi",
                   help="pypi: pip install xstatic-leaflet (default); npm: npm pack leaflet into geolab/_assets/")
    p.set_defaults(func=_viz_fetch_assets)

    p = vsub.add_parser("map", help="write an offline HTML map (and optionally a PNG) of a manifest")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the .html file")
    p.add_argument("--color-by", choices=("label", "split", "geo_cluster"), default="label")
    p.add_argument("--k", type=int, default=None, help="add geo clusters with K-means (paper: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", type=Path, default=None, help="also write a static PNG of the same map")
    p.add_argument("--max-locations", type=int, default=2000)
    p.set_defaults(func=_viz_map)


def _viz_assets(args: argparse.Namespace) -> int:
    from geolab.viz.assets import AssetError, leaflet_assets

    try:
        a = leaflet_assets()
    except AssetError as exc:
        raise UserError(str(exc)) from exc
    print(f"Leaflet {a.version} from {a.source}: {a.folder}")
    return 0


def _viz_fetch_assets(args: argparse.Namespace) -> int:
    from geolab.viz.assets import AssetError, fetch_assets

    try:
        a = fetch_assets(args.source)
    except AssetError as exc:
        raise UserError(str(exc)) from exc
    print(f"Leaflet {a.version} from {a.source}: {a.folder}")
    return 0


def _viz_map(args: argparse.Namespace) -> int:
    from geolab.manifest import load_manifest
    from geolab.viz import location_map, save_figure, save_map, static_map

    df = load_manifest(args.manifest, check_files=False)
    if args.k is not None:
        from geolab.geo import add_geo_clusters

        df = add_geo_clusters(df, k=args.k, seed=args.seed)
    elif args.color_by == "geo_cluster":
        raise UserError("--color-by geo_cluster needs --k (the number of geo clusters; paper: 100).")
    m = location_map(df, color_by=args.color_by, max_locations=args.max_locations, seed=args.seed)
    print(save_map(m, args.out))
    if args.png is not None:
        print(save_figure(static_map(df, color_by=args.color_by), args.png))
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geolab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    _add_doctor(sub)
    _add_course(sub)
    _add_viz(sub)
    return parser


def _version() -> str:
    from geolab import __version__

    return f"geolab {__version__}"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is shown without a traceback."""
    errors: list[type[BaseException]] = [UserError, FileNotFoundError]
    try:
        from geolab.manifest import ManifestError

        errors.append(ManifestError)
    except ImportError:
        pass
    try:
        from geolab.io import DiskSpaceError

        errors.append(DiskSpaceError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:  # noqa: B030 - a tuple computed at run time
        print(f"geolab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("geolab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
