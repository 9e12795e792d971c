#!/usr/bin/env bash
# Runs the load generator's scenarios as benches/README.md describes: the
# servers pinned to CPU 0, the generator to CPU 1, in release; natsgate,
# Centrifugo (memory engine, and NATS broker), nats-server's WebSocket and
# the floor side by side, b and c published through each server's HTTP API
# (nats-ws over NATS, the floor over its trigger), plus natsgate published
# straight to NATS and natsgate with write coalescing, for the ratios.
#
#   benches/run-scenarios.sh              # a b c d
#   SCENARIOS="b c" benches/run-scenarios.sh --clients 500   # reduced size
#   WRITE_DELAY=2ms benches/run-scenarios.sh
#
# Extra arguments go to every run. Each run's table and JSON line are
# appended to $OUT (default target/loadgen/results-<time>.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=${SCENARIOS:-a b c d}
delay=${WRITE_DELAY:-5ms}
out=${OUT:-target/loadgen/results-$(date -u +%Y%m%dT%H%M%SZ).txt}
mkdir -p "$(dirname "$out")"

# Build first, unpinned, so that compiling is not part of any run.
cargo bench --bench loadgen --no-run

{
  echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+uncommitted')"
  echo "# $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$out"

run() {
  echo "## $*" | tee -a "$out"
  taskset -c 1 cargo bench --bench loadgen -- --pin-server 0 --timeout 600 --json "$@" 2>&1 | tee -a "$out" || true
}

for s in $scenarios; do
  case $s in
    a) run --scenario a --target all "${@}" ;;
    b | c)
      run --scenario "$s" --target all --publish-via http "${@}"
      run --scenario "$s" --target natsgate --publish-via nats "${@}"
      run --scenario "$s" --target natsgate --publish-via http --gateway-env "NATSGATE_CLIENT_WRITE_DELAY=$delay" "${@}"
      ;;
    d) run --scenario d --target natsgate,centrifugo,centrifugo-nats,nats-ws "${@}" ;;
  esac
done
echo "results in $out"
