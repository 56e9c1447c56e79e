#!/usr/bin/env bash
# The whole perfect-model experiment (issue 10) in one command, at the issue's full size by
# default. Every step is resumable or cheap to rerun; results land in analysis/*/results/.
#
#   bash analysis/osse/osse_full.sh                      # full size: 20,000 snapshots, d 32..256
#   N_SNAPSHOTS=6000 DIMS=32,64 bash analysis/osse/osse_full.sh   # what fitted 2 shared CPU cores
#
# Environment: N_SNAPSHOTS (20000), DIMS (32,64,128,256), EPOCHS (60), N_TIMES (60),
# STRIDE (NUTS at every k-th time, 3), MODEL_D (latent dim used for assimilation, 64),
# TRAIN_FLAGS (extra osse_train flags, default "--roll-lon --flip-lat").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
N=${N_SNAPSHOTS:-20000}
DIMS=${DIMS:-32,64,128,256}
EPOCHS=${EPOCHS:-60}
N_TIMES=${N_TIMES:-60}
STRIDE=${STRIDE:-3}
MODEL_D=${MODEL_D:-64}
TRAIN_FLAGS=${TRAIN_FLAGS:---roll-lon --flip-lat}
TAG=${TAG:-full}

"$PY" -m bayesda.cli.main data simulate --preset full --n-snapshots "$N"
"$PY" -m analysis.gaussianity.osse_stats --max-snapshots "$N"
# shellcheck disable=SC2086
"$PY" -m analysis.osse.osse_train --max-snapshots "$N" --dims "$DIMS" --epochs "$EPOCHS" \
    --patience 10 --tag "$TAG" $TRAIN_FLAGS
"$PY" -m analysis.osse.osse_assimilate --max-snapshots "$N" --n-times "$N_TIMES" --stride "$STRIDE" \
    --model-dir "${HOME}/.cache/bayesda/osse/models/${TAG}-d${MODEL_D}"
"$PY" -m analysis.winds_pressure.osse_winds_pressure --max-snapshots "$N" --n-times "$N_TIMES"
"$PY" -m analysis.osse.osse_maps --max-snapshots "$N" \
    --model-dir "${HOME}/.cache/bayesda/osse/models/${TAG}-d${MODEL_D}"
"$PY" -m analysis.osse.osse_report
