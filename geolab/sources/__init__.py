"""Real data: readers that turn data sets as they are on disk into manifests, and fetchers.

* :mod:`geolab.sources.build` -- what every builder returns (:class:`~geolab.sources.build.BuildReport`)
  and the one routine that saves it (``save_build``).
* :mod:`geolab.sources.fmow` -- a raw fMoW-rgb tree (images + per-image JSON metadata).
* :mod:`geolab.sources.fmow_mini` -- ``download_fmow_subset`` (fmow-mini: chosen categories and
  locations with all revisits, fetched from fMoW's public bucket).
* :mod:`geolab.sources.official_csv` -- the CSVs of the official GASSL code (category + image
  path, plus the geo-cluster CSVs), so users of that code can switch.
* :mod:`geolab.sources.geoimagenet` -- the folder written by the official GeoImageNet downloader.
* :mod:`geolab.sources.s3` -- anonymous ListObjectsV2 listing of an S3-compatible store (with
  its errors and retries); :mod:`geolab.sources.download` -- parallel, resumable, checked
  downloads of what was listed.
* :mod:`geolab.sources.prepare` -- the prepared cache: images decoded once, resized, re-encoded.

Each builder returns a :class:`geolab.sources.build.BuildReport` that lists every file it left
out and why; nothing is dropped silently. The user guide is ``docs/REAL_DATA.md``.
The official GASSL checkpoints (weights, not data) are read by :mod:`geolab.official_weights`, beside
the other weight readers; nothing here imports the model.
"""
