#!/usr/bin/env bash
# `emotion-stream` serving another bundle, for ../shared/tools/served_check.py (its ES_BIN), so
# that a fold's or an experiment's bundle is scored through the served path like the default:
#   ES_BUNDLE=runs/bundle-ravdess ES_BIN=bench/served_bundle.sh ZS_OUT=/tmp/sc-ravdess \
#       .venv/bin/python ../shared/tools/served_check.py build|run|score nemo
# Extra settings for every run go in ES_SET (e.g. ES_SET=emotion.adaptation_prior_weight=40).
set -euo pipefail
extra=()
for setting in ${ES_SET:-}; do extra+=(--set "$setting"); done
exec "$(dirname "$0")/../.venv/bin/emotion-stream" "$@" \
    --set "emotion.bundle=${ES_BUNDLE:?set ES_BUNDLE to a bundle directory}" "${extra[@]}"
