#!/usr/bin/env bash
# Run HERE (a machine with the package registries), in the repository root, before a device
# session: fetches the wheels the GPU image lacks into .whl/ and copies the NCEP data into
# .gpu/data/. Both folders are git-ignored; name them in the device call's carry list.
# Idempotent: files already present are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BAYESDA_DATA_DIR:-../shared/data}
# The GPU image has jax 0.11, flax, optax, xarray and numpyro 0.21 for python 3.12; these are
# the versions that ran there (../shared/FINDINGS.md), numpyro 0.22 for numpyro issue 2225.
WHEELS="numpyro==0.22.0 arviz==0.23.4 xarray-einstats==0.9.1 h5netcdf==1.8.2 netCDF4==1.7.5.1.post1
cftime==1.6.6.1 global-land-mask==1.0.0 pooch==1.9.0 platformdirs==4.14.8 flatbuffers==25.12.19"
mkdir -p .whl
for w in $WHEELS; do
  name=$(echo "${w%%==*}" | tr 'A-Z-' 'a-z_')
  if ls .whl/ 2>/dev/null | tr 'A-Z-' 'a-z_' | grep -q "^${name}-${w##*==}-"; then continue; fi
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
    -d .whl "$w"
done
mkdir -p .gpu/data/ncep-air
if [ ! -f .gpu/data/ncep-air/air_temperature.nc ]; then
  cp "$DATA/ncep-air/air_temperature.nc" .gpu/data/ncep-air/
  cp "$DATA/README.md" .gpu/data/ 2>/dev/null || true
fi
du -sh .whl .gpu/data
echo 'ready: run(command="bash analysis/gpu/run.sh", carry=[".whl", ".gpu/data"], timeout_s=590)'
