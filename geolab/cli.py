"""The ``geolab`` command: parses the arguments and dispatches to the library functions the notebooks call too.

Exit status: 0 done; 1 the work ran but failed or found problems (a course notebook failed,
``doctor`` found problems); 2 a user error: a bad option (argparse), a bad manifest, checkpoint,
setting or path; 130 interrupted (Ctrl-C). Every user error passes through one handler
(:func:`main`) that prints ``geolab: error: <one line>`` on stderr, without a traceback; set
``GEOLAB_DEBUG=1`` to see the traceback as well.

Layout: one ``_add_<group>`` function per group registers its sub-commands. A handler calls
the library and lets its errors through to that one handler. Handlers import the modules that
need pandas, torch or papermill when they run, so that ``geolab --help`` stays fast. The options
of ``pretrain``, ``probe`` and ``knn`` are derived from :class:`geolab.config.PretrainConfig`
and :class:`geolab.config.ProbeConfig` (:func:`geolab.argtypes.add_dataclass_arguments`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geolab import __version__
from geolab.argtypes import (
    add_dataclass_arguments,
    dataclass_from_args,
    int_between,
    non_negative_int,
    positive_float,
    positive_int,
)
from geolab.config import ProbeConfig, add_pretrain_arguments, config_from_args
from geolab.envcheck import environment_report, problems
from geolab.errors import UserError
from geolab.io import MissingFileError, atomic_write_json, check_output_file
from geolab.paths import check_run_out

if TYPE_CHECKING:
    from geolab.sources.build import BuildReport




# ----------------------------------------------------------------------------- data
def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, check and fetch data (manifests, geoworld, fMoW)")
    dsub = data.add_subparsers(dest="data_cmd", required=True)

    p = dsub.add_parser("validate", help="check a manifest against the contract")
    p.add_argument("manifest", type=Path)
    p.add_argument("--no-check-files", action="store_true", help="do not check that image files exist")
    p.add_argument("--confine-to-root", action="store_true",
                   help="refuse image paths outside the manifest's folder (symbolic links followed): "
                   "for manifests you did not write")
    p.set_defaults(func=_data_validate)

    p = dsub.add_parser("stats", help="counts per split, label and location; revisit time spans")
    p.add_argument("manifest", type=Path)
    p.set_defaults(func=_data_stats)

    p = dsub.add_parser("world", help="generate (or reuse from cache) the geoworld simulation")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--size", type=positive_int, default=None, help="image side in pixels")
    p.add_argument("--locations", type=positive_int, default=None, help="number of locations")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the cache)")
    p.set_defaults(func=_data_world)
    _add_real_data(dsub)


def _data_validate(args: argparse.Namespace) -> int:
    from geolab.manifest import load_manifest, paths_outside_root  # noqa: PLC0415 - start-up: pandas

    df = load_manifest(args.manifest, check_files=not args.no_check_files, confine_to_root=args.confine_to_root)
    splits = ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().sort_index().items())
    files = "image files not checked" if args.no_check_files else "all image files found"
    outside = paths_outside_root(df, args.manifest.expanduser().resolve().parent)
    where = (f"{outside} image paths outside the manifest's folder (--confine-to-root refuses them)"
             if outside else "all image paths inside the manifest's folder")
    print(
        f"{args.manifest}: OK ({len(df)} images, {df['location_id'].nunique()} locations; "
        f"images per split: {splits}; {files}; {where})"
    )
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from geolab.manifest import format_stats, load_manifest  # noqa: PLC0415 - start-up: pandas

    print(format_stats(load_manifest(args.manifest, check_files=False)))
    return 0


def _data_world(args: argparse.Namespace) -> int:
    from geolab.world import load_world  # noqa: PLC0415 - start-up: scipy

    kwargs = {k: v for k, v in dict(size=args.size, locations=args.locations).items() if v is not None}
    print(load_world(seed=args.seed, out=args.out, **kwargs))  # WorldError: another world in --out; ValueError: a knob
    return 0


# ----------------------------------------------------------------------------- real data
def _add_real_data(dsub: argparse._SubParsersAction) -> None:
    """fMoW, the official GASSL CSVs, GeoImageNet, the fmow-mini download and the prepared cache."""
    p = dsub.add_parser("fmow-manifest", help="manifest from a raw fMoW-rgb tree (images + JSON metadata)")
    p.add_argument("root", type=Path, help="folder holding train/ val/ test/ as distributed")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.parquet or .csv)")
    p.add_argument("--splits", nargs="+", default=None, help="splits to read (default: all present)")
    p.add_argument("--categories", nargs="+", default=None, help="keep only these categories")
    p.add_argument("--image-kind", choices=("rgb", "msrgb"), default="rgb")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_data_fmow_manifest)

    p = dsub.add_parser("from-official-csv", help="manifest from the official GASSL code's CSVs")
    p.add_argument("csv", type=Path, help="category CSV (label in column 0, image path in column 1)")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.parquet or .csv)")
    p.add_argument("--geo-csv", type=Path, action="append", default=[],
                   help="geo-cluster CSV (e.g. train_100geoclasses.csv); adds official_geo_cluster")
    p.add_argument("--split", default=None, help="split of rows whose path holds no split folder")
    p.add_argument("--rebase", action="append", default=[], metavar="OLD=NEW",
                   help="rewrite an image path prefix (the official CSVs hold the authors' paths)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_data_from_official_csv)

    p = dsub.add_parser("geoimagenet-manifest", help="manifest from the official GeoImageNet downloader's folder")
    p.add_argument("root", type=Path, help="the downloader's -data_root (imagenet_images/ + metadata.csv)")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (.parquet or .csv)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of images in val (stable hash)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_data_geoimagenet_manifest)

    p = dsub.add_parser("fmow-download", help="download fmow-mini: chosen fMoW locations with all revisits")
    p.add_argument("--out", type=Path, default=None, help="folder (default: <cache>/downloads/fmow-mini)")
    p.add_argument("--selection", type=Path, default=None,
                   help="selection file (default: data_manifests/fmow-mini.json)")
    p.add_argument("--categories", nargs="+", default=None, help="categories (default: the selection's)")
    p.add_argument("--locations-per-category", type=non_negative_int, default=None,
                   help="train locations per category (default: the selection's)")
    p.add_argument("--val-locations-per-category", type=non_negative_int, default=None,
                   help="val locations per category (default: the selection's)")
    p.add_argument("--endpoint", default=None, help="S3 endpoint (default https://s3.amazonaws.com)")
    p.add_argument("--bucket", default=None, help="bucket (default spacenet-dataset)")
    p.add_argument("--prefix", default=None, help="key prefix (default Hosted-Datasets/fmow/fmow-rgb/)")
    p.add_argument("--path-style", action="store_true", help="path-style URLs (<endpoint>/<bucket>/<key>)")
    p.add_argument("--workers", type=positive_int, default=8, help="transfers in flight (default 8)")
    p.add_argument("--retries", type=non_negative_int, default=5, help="retries per request after the first attempt")
    p.add_argument("--short-side", type=positive_int, default=None, help="prepared cache short side (default 256)")
    p.add_argument("--dry-run", action="store_true", help="list and print the size; fetch nothing")
    p.add_argument("--no-md5-check", action="store_true",
                   help="do not compare bodies with MD5-shaped ETags (mirrors whose ETags are not MD5s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_data_fmow_download)

    p = dsub.add_parser("prepare", help="decode once, resize, write a compact JPEG cache and its manifest")
    p.add_argument("manifest", type=Path)
    p.add_argument("--short-side", type=positive_int, default=256, help="short side in pixels (default 256)")
    p.add_argument("--out", type=Path, required=True, help="cache folder (manifest.parquet inside)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    p.add_argument("--quality", type=int_between(1, 100), default=95, help="JPEG quality, 1-100 (default 95)")
    p.add_argument("--force", action="store_true",
                   help="replace a manifest.parquet, images/ or prepare_failed.csv in --out that prepare did not write")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_data_prepare)


# The sources' errors (ValueError, S3Error, DownloadError, PrepareError) are user errors (see main).
def _report_build(report: BuildReport) -> int:
    print(report.summary())
    return 0


def _data_fmow_manifest(args: argparse.Namespace) -> int:
    from geolab.sources.fmow import build_fmow_manifest  # noqa: PLC0415 - start-up: pandas

    return _report_build(build_fmow_manifest(args.root, args.out, splits=args.splits, image_kind=args.image_kind,
                                             categories=args.categories, progress=not args.no_progress))


def _data_from_official_csv(args: argparse.Namespace) -> int:
    from geolab.sources.official_csv import build_from_official_csv, parse_rebase  # noqa: PLC0415 - start-up: pandas

    return _report_build(build_from_official_csv(args.csv, args.out, geo_csvs=args.geo_csv, split=args.split,
                                                 rebase=parse_rebase(args.rebase), progress=not args.no_progress))


def _data_geoimagenet_manifest(args: argparse.Namespace) -> int:
    from geolab.sources.geoimagenet import build_geoimagenet_manifest  # noqa: PLC0415 - start-up: pandas

    return _report_build(build_geoimagenet_manifest(args.root, args.out, val_fraction=args.val_fraction,
                                                    progress=not args.no_progress))


def _data_fmow_download(args: argparse.Namespace) -> int:
    from geolab.sources.fmow_mini import download_fmow_subset, load_selection  # noqa: PLC0415 - start-up: pandas

    sel = load_selection(args.selection)
    trains, vals = args.locations_per_category, args.val_locations_per_category
    result = download_fmow_subset(
        out=args.out,
        categories=args.categories or sel.categories,
        locations_per_category={
            "train": sel.locations["train"] if trains is None else trains,
            "val": sel.locations["val"] if vals is None else vals,
        },
        endpoint=args.endpoint or sel.endpoint,
        bucket=args.bucket or sel.bucket,
        prefix=args.prefix if args.prefix is not None else sel.prefix,
        path_style=args.path_style,
        workers=args.workers,
        retries=args.retries,
        short_side=args.short_side or sel.short_side,
        dry_run=args.dry_run,
        progress=not args.no_progress,
        log=print,
        check_md5=not args.no_md5_check,
    )
    print(result.summary())
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from geolab.sources.prepare import prepare_cache  # noqa: PLC0415 - start-up: pandas

    print(prepare_cache(args.manifest, args.out, short_side=args.short_side, quality=args.quality,
                        workers=args.workers, progress=not args.no_progress, force=args.force).summary())
    return 0


# ----------------------------------------------------------------------------- doctor
def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check that this environment is ready for the course")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    report = environment_report()
    for key, value in report.items():
        print(f"{key:>15}: {value}")
    found = problems(report)
    for p in found:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if found else 0


# ----------------------------------------------------------------------------- course
def _add_course(sub: argparse._SubParsersAction) -> None:
    course = sub.add_parser("course",
                            help="run the course notebooks in batch (papermill): results.json and a report")
    csub = course.add_subparsers(dest="course_cmd", required=True)

    p = csub.add_parser(
        "run",
        help="execute the numbered notebooks with a profile's parameters",
        description="Execute notebooks/NN_*.ipynb in order with papermill, injecting the profile's "
        "parameters; write executed notebooks, results.json, report.md and report.html into --out. "
        "Rerunning into the same --out skips notebooks that already succeeded with the same source "
        "and parameters, and continues from a failed one.",
    )
    p.add_argument("--profile", default="cpu",
                   help="smoke (tests), cpu (make course), gpu-full (fMoW, paper settings)")
    p.add_argument("--data", default=None,
                   help="data tier: geoworld | fmow-mini | fmow | geoimagenet (default: the profile's)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="manifest of the real data (needed for fmow, geoimagenet)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<profile>-<data>)")
    p.add_argument("--only", nargs="+", metavar="NB", default=None,
                   help="run only these notebooks (name or number, e.g. 03)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter (VALUE read as JSON, else as text), e.g. --set epochs=2",
    )
    p.add_argument("--kernel", default="geolab", help="Jupyter kernel (default: geolab, installed by make setup)")
    p.add_argument("--notebooks-dir", type=Path, default=None, help="folder of the notebooks (default: notebooks/)")
    p.add_argument("--force", action="store_true", help="rerun notebooks that would be skipped")
    p.add_argument("--cell-timeout", type=positive_float, default=None,
                   help="seconds one cell may run (default: no limit)")
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

    p = csub.add_parser("book", help="render a run's executed notebooks and report as an offline static site")
    p.add_argument("run", type=Path, help="a course run folder (geolab course run --out RUN)")
    p.add_argument("--out", type=Path, default=None, help="the site's folder (default: RUN/book)")
    p.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    p.set_defaults(func=_course_book)


def _parse_overrides(items: list[str]) -> dict:
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


# CourseError and ResultsValidationError are user errors (see main).
def _course_run(args: argparse.Namespace) -> int:
    from geolab import course  # noqa: PLC0415 - start-up: pandas, papermill

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
    return 0 if run.ok else 1


def _course_plan(args: argparse.Namespace) -> int:
    from geolab import course  # noqa: PLC0415 - start-up: pandas, papermill

    print(course.describe_plan(args.profile, data=args.data, only=args.only, notebooks_dir=args.notebooks_dir,
                               overrides=_parse_overrides(args.overrides)))
    return 0


def _course_report(args: argparse.Namespace) -> int:
    from geolab import course  # noqa: PLC0415 - start-up: pandas, papermill

    md, html = course.rebuild_report(args.out)
    print(f"{md}\n{html}")
    return 0


def _course_book(args: argparse.Namespace) -> int:
    from geolab.course.book import build_book  # noqa: PLC0415 - start-up: Sphinx, myst-nb

    print(build_book(args.run, args.out, verbose=args.verbose).resolve())  # the last line: the site's index.html
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
    p.add_argument("--k", type=positive_int, default=None, help="add geo clusters with K-means (paper: 100)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--png", type=Path, default=None, help="also write a static PNG of the same map")
    p.add_argument("--max-locations", type=positive_int, default=2000)
    p.set_defaults(func=_viz_map)


# AssetError is a user error (see main).
def _viz_assets(args: argparse.Namespace) -> int:
    from geolab.viz.assets import leaflet_assets  # noqa: PLC0415 - start-up: pandas

    a = leaflet_assets()
    print(f"Leaflet {a.version} from {a.source}: {a.folder}")
    return 0


def _viz_fetch_assets(args: argparse.Namespace) -> int:
    from geolab.viz.assets import fetch_assets  # noqa: PLC0415 - start-up: pandas

    a = fetch_assets(args.source)
    print(f"Leaflet {a.version} from {a.source}: {a.folder}")
    return 0


def _viz_map(args: argparse.Namespace) -> int:
    from geolab.manifest import load_manifest  # noqa: PLC0415 - start-up: pandas
    from geolab.viz import location_map, save_figure, save_map, static_map  # noqa: PLC0415 - start-up: matplotlib

    df = load_manifest(args.manifest, check_files=False)
    if args.k is not None:
        from geolab.geo import add_geo_clusters  # noqa: PLC0415 - start-up: scikit-learn, only with --k

        df = add_geo_clusters(df, k=args.k, seed=args.seed)
    elif args.color_by == "geo_cluster":
        raise UserError("--color-by geo_cluster needs --k (the number of geo clusters; paper: 100).")
    m = location_map(df, color_by=args.color_by, max_locations=args.max_locations, seed=args.seed)
    print(save_map(m, args.out))
    if args.png is not None:
        print(save_figure(static_map(df, color_by=args.color_by), args.png))
    return 0


# ----------------------------------------------------------------------------- engine
def _add_engine(sub: argparse._SubParsersAction) -> None:
    """``pretrain``, ``probe``, ``knn`` and ``export``: geolab.train, geolab.evaluate and geolab.weights."""
    p = sub.add_parser(
        "pretrain",
        help="train supervised | geoloc | moco | moco-geo | moco-tp | moco-tp-geo (CPU, GPU; torchrun for DDP)",
        description="One training loop for every method. For several GPUs/nodes run the same arguments "
        "as `torchrun --nproc_per_node=N -m geolab.train ...`.",
    )
    add_pretrain_arguments(p)
    p.set_defaults(func=_engine_pretrain)

    # one option per ProbeConfig field, less those the other evaluation does not read
    for name, what, exclude in (
        ("probe", "linear probe on frozen features (top-1, macro-F1)", ("k", "knn_temperature")),
        ("knn", "weighted kNN on frozen features (cosine, k=20)", ("backend", "C", "seed")),
    ):
        p = sub.add_parser(name, help=what)
        add_dataclass_arguments(p, ProbeConfig, exclude=exclude)
        p.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
        p.add_argument("--force", action="store_true",
                       help="replace a --json file that geolab probe or knn did not write")
        p.set_defaults(func=_engine_evaluate, engine_eval=name)

    p = sub.add_parser(
        "export",
        help="write a checkpoint's query backbone as a plain torchvision ResNet state dict (+ JSON)",
        description="The file people share and load elsewhere: only the query backbone's tensors "
        "(torch.load(weights_only=True); torchvision.models.resnetXX() loads it with strict=False, "
        "only fc.* missing), and a JSON beside it (method, arch, image size, normalisation, epochs, data). "
        "Files at --out or its .json that an earlier export did not write are not replaced without --force.",
    )
    p.add_argument("checkpoint", type=Path, help="geolab checkpoint (or official GASSL .pth.tar / state dict)")
    p.add_argument("--out", required=True, type=Path, help="backbone file to write, e.g. backbone.pth")
    p.add_argument("--arch", default=None,
                   help="architecture of an official file or state dict (default: inferred)")
    p.add_argument("--force", action="store_true",
                   help="replace a .pth or .json at --out that an earlier `geolab export` did not write")
    p.set_defaults(func=_engine_export)


def _check_device(name: str) -> None:
    """``--device cuda`` on a machine without CUDA is a user error, said before any work."""
    if name == "cuda":
        import torch  # noqa: PLC0415 - start-up: torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                            "use --device cpu or --device auto.")


#: ``format`` of the JSON that ``geolab probe`` / ``knn --json`` write: how they recognise their own file.
EVALUATION_FORMAT = "geolab-evaluation"


def _our_evaluation(path: Path) -> bool:
    """``path`` is a result ``geolab probe`` or ``knn`` wrote (its ``format``; before issue 23: its keys)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and (meta.get("format") == EVALUATION_FORMAT
                                       or {"checkpoint", "manifest", "test_split", "train_images"} <= meta.keys())


def _engine_pretrain(args: argparse.Namespace) -> int:
    # the checks that need no torch first, so that a wrong --out is said in a moment
    check_run_out(args.out, args.manifest)
    _check_device(args.device)
    from geolab.train import pretrain  # noqa: PLC0415 - start-up: torch

    print(pretrain(config_from_args(args)))
    return 0


def _engine_evaluate(args: argparse.Namespace) -> int:
    # the checks that need no torch first
    if not args.checkpoint.is_file():
        raise MissingFileError(f"checkpoint not found: {args.checkpoint}")
    if args.json is not None:  # the output rule of geolab.io: replace only our own result, or with --force
        check_output_file(args.json, ours=_our_evaluation(args.json), command=f"geolab {args.engine_eval}",
                          option="--json", inputs=[args.checkpoint, args.manifest], force=args.force,
                          example="result.json")
    _check_device(args.device)
    from geolab.evaluate import evaluate_checkpoint  # noqa: PLC0415 - start-up: torch

    # CheckpointError and OfficialCheckpointError are ValueErrors: user errors (see main)
    cfg = dataclass_from_args(ProbeConfig, args)
    result = evaluate_checkpoint(cfg, linear=args.engine_eval == "probe", knn_eval=args.engine_eval == "knn")
    result = {"format": EVALUATION_FORMAT, **result}
    if args.json is not None:
        atomic_write_json(args.json, result)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _engine_export(args: argparse.Namespace) -> int:
    from geolab.weights import export_backbone  # noqa: PLC0415 - start-up: torch

    # errors: as _engine_evaluate's, and OutputRefusedError (a FileExistsError) for files it did not write
    weights, sidecar = export_backbone(args.checkpoint, args.out, arch=args.arch, force=args.force)
    size = weights.stat().st_size / 2**20
    print(f"{weights} ({size:.1f} MiB, backbone only) and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``geolab`` parser with every sub-command; each sets ``func``, its handler."""
    parser = argparse.ArgumentParser(prog="geolab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"geolab {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    _add_doctor(sub)
    _add_course(sub)
    _add_viz(sub)
    _add_engine(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """An exception's message as one line (multi-line messages joined with "; ")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run ``geolab`` with ``argv`` (default: the command line); returns the exit status (module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("geolab: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:  # a user error is its message; anything else is a bug and keeps its traceback
        if os.environ.get("GEOLAB_DEBUG"):
            raise
        print(f"geolab: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
