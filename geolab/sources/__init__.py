"""Real data: readers that turn data sets as they are on disk into manifests, and fetchers.

* :mod:`geolab.sources.fmow` -- a raw fMoW-rgb tree (images + per-image JSON metadata), and
  ``download_fmow_subset`` (fmow-mini: chosen categories and locations with all revisits).
* :mod:`geolab.sources.official_csv` -- the CSVs of the official GASSL code (category + image
  path, plus the geo-cluster CSVs), so users of that code can switch.
* :mod:`geolab.sources.geoimagenet` -- the folder written by the official GeoImageNet downloader.
* :mod:`geolab.sources.s3` -- anonymous ListObjectsV2 listing and parallel, resumable, checked
  downloads from an S3-compatible store.
* :mod:`geolab.sources.prepare` -- the prepared cache: images decoded once, resized, re-encoded.
* :mod:`geolab.sources.official` -- the official GASSL ResNet-50 checkpoints (``.pth.tar``)
  loaded into geolab's backbone (never downloaded by geolab).

Each builder returns a :class:`geolab.sources.fmow.BuildReport` that lists every file it left
out and why; nothing is dropped silently. The user guide is ``docs/REAL_DATA.md``.
"""
