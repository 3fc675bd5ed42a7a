#!/usr/bin/env bash
# Re-execute notebooks in their default (quick) parameters and keep only the outputs that
# nbval checks. Run after changing a notebook or anything its checked cells print.
# Usage: scripts/refresh_notebooks.sh [notebooks/NN_name.ipynb ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export GEOLAB_CACHE="${GEOLAB_CACHE:-$(mktemp -d)}" GEOLAB_RUNS="$(mktemp -d)" MPLBACKEND=Agg
nbs=("$@"); [ ${#nbs[@]} -gt 0 ] || nbs=(notebooks/[0-9][0-9]_*.ipynb)
for nb in "${nbs[@]}"; do
  echo "== $nb"
  .venv/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.kernel_name=geolab \
    --ExecutePreprocessor.timeout=1200 "$nb" 2>&1 | grep -v -e WARNING -e "^\[NbConvertApp\] Converting" || true
done
.venv/bin/python scripts/nb_strip.py "${nbs[@]}"
