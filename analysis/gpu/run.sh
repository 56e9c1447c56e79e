#!/usr/bin/env bash
# Run THERE (the device machine), in the repository root, after analysis/gpu/prepare.sh here:
#   run(command="bash analysis/gpu/run.sh", carry=[".whl", ".gpu/data"], timeout_s=590)
# Issue 11 in one call: reanalysis throughput at K = 64, 256, 1024 times per program with the
# verdict check, then the demo in two fresh processes. Everything it writes is under $OUT.
# Knobs (environment): KS, BENCH_BUDGET (s), BENCH_FLAGS, TOTAL (s the whole call may take).
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BAYESDA_DATA_DIR=$PWD/.gpu/data
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import bayesda.inference.assimilate, bayesda.inference.batch, bayesda.workflows.reanalysis, arviz" || exit 4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia.txt"
python3 -c "import jax, numpyro, flax; print(jax.__version__, numpyro.__version__, flax.__version__, jax.devices())" \
  | tee -a "$OUT/nvidia.txt"
BENCH_BUDGET=${BENCH_BUDGET:-300}
timeout $((BENCH_BUDGET + 120)) python3 -m analysis.throughput.bench_gpu --k "${KS:-64,256,1024}" \
  --budget-s "$BENCH_BUDGET" --verdict-k 64 --ref-draws 2000 \
  --verdict-out "$OUT/verdict_shipped.json" --out "$OUT/throughput_gpu.json" --no-store \
  ${BENCH_FLAGS:-} 2>&1 | tee "$OUT/bench11.log" | grep -v Warning
echo "bench done at $(( $(date +%s) - T0 )) s"
# One day: the demo in fresh processes (the first exports the programs, bayesda.runtime.export, the
# second loads them); first many short chains (the same 2,000 draws, under a third of the
# sequential leapfrog steps: the one-day <= 1 s target), then the default 4 x (100 + 500).
for cfg in "--chains 16 --warmup 50 --draws 125" ""; do
  for i in 1 2; do
    LEFT=$(( ${TOTAL:-585} - ($(date +%s) - T0) ))
    [ "$LEFT" -gt 75 ] || break 2
    echo "demo $cfg (run $i)" | tee -a "$OUT/demo_gpu.txt"
    timeout 70 python3 -m bayesda.cli.main demo --out /tmp/demo_gpu --no-progress $cfg 2>&1 \
      | grep -E "time:|gradient|verdict|unobserved" | tee -a "$OUT/demo_gpu.txt"
  done
done
echo "all done at $(( $(date +%s) - T0 )) s"
