#!/usr/bin/env bash
# Runs the load generator's scenarios as benches/README.md describes: the
# servers pinned to CPU 0, the generator to CPU 1, in release.
#
#   benches/run-scenarios.sh              # a b c d, natsgate and nats-ws
#   SCENARIOS="a c" benches/run-scenarios.sh --protocol protobuf
#
# Extra arguments go to every run. Each run's table and JSON line are
# appended to $OUT (default target/loadgen/results-<time>.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=${SCENARIOS:-a b c d}
out=${OUT:-target/loadgen/results-$(date -u +%Y%m%dT%H%M%SZ).txt}
mkdir -p "$(dirname "$out")"

# Build first, unpinned, so that compiling is not part of any run.
cargo bench --bench loadgen --no-run

{
  echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+uncommitted')"
  echo "# $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out"

for s in $scenarios; do
  echo "## scenario $s" | tee -a "$out"
  taskset -c 1 cargo bench --bench loadgen -- \
    --scenario "$s" --target both --pin-server 0 --timeout 600 --json "$@" 2>&1 | tee -a "$out" || true
done
echo "results in $out"
