#!/usr/bin/env bash
# The training-step benchmarks on whatever accelerator this machine has (no tensorflow
# needed): paper256 and config-f 1024, one summary table (img/s, s/kimg, GFLOP/img,
# TFLOP/s, MFU, compile time cold / from the cache, peak memory, host time per call).
#
#   launch/bench_device.sh                       # from the repository root or anywhere
#   BENCHES="paper256:--config.train.batch_size=64" ITERS=32 launch/bench_device.sh
#
# BENCHES: space-separated CONFIG[:OVERRIDE,OVERRIDE...] items. Wheels in .whl/ (e.g.
# ml-collections, for machines that have jax but not this project's other dependencies)
# are installed into /tmp/site first. DRY_RUN=1 prints the commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=${BENCHES:-"paper256:--config.train.batch_size=32 stylegan2:--config.train.batch_size=8"}
iters=${ITERS:-32}
# On GPUs, let XLA overlap the gradient all-reduces with compute (latency-hiding
# scheduler); harmless elsewhere. Flags already in XLA_FLAGS are kept.
if [[ "${XLA_FLAGS:-}" != *xla_gpu_enable_latency_hiding_scheduler* ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
fi
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
if compgen -G ".whl/*.whl" >/dev/null && [[ -z "${DRY_RUN:-}" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="${PYTHONPATH}:/tmp/site"
fi

results=$(mktemp)
for item in ${benches}; do
  name=${item%%:*}
  overrides=()
  if [[ "${item}" == *:* ]]; then
    IFS=, read -r -a overrides <<<"${item#*:}"
  fi
  cmd=(python3 -m stylegan_jax.benchmarks.train --config "${name}" --iters "${iters}" --json
       "${overrides[@]}")
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    continue
  fi
  echo "== ${cmd[*]}" >&2
  "${cmd[@]}" | tee /dev/stderr | grep '^{' >>"${results}"
done
[[ -n "${DRY_RUN:-}" ]] && exit 0

python3 - "${results}" <<'PY'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
cols = [("config", "config"), ("res", "resolution"), ("batch", "batch"),
        ("img/s", "img_per_s"), ("s/kimg", "sec_per_kimg"), ("GFLOP/img", "gflop_per_img"),
        ("TFLOP/s", "tflops"), ("MFU", "mfu"), ("compile s", "compile_total_s"),
        ("cached s", "compile_cached_s"), ("peak GiB", "peak_gib"),
        ("host ms", "host_ms_per_call")]
print(f"device: {rows[0]['device'] if rows else '?'}")
print("| " + " | ".join(c for c, _ in cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    cells = []
    for _, key in cols:
        v = r.get(key)
        cells.append("n/a" if v is None else f"{100 * v:.1f} %" if key == "mfu" else str(v))
    print("| " + " | ".join(cells) + " |")
PY
rm -f "${results}"
