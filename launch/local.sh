#!/usr/bin/env bash
# One host, all its local accelerators, one process (pmap / shard_map over every device).
#
#   launch/local.sh --config paper256 --workdir runs/ffhq256 --config.data.path=/data/ffhq256
#
# CPU only, to try the multi-process path: PROCESSES=2 DEVICES_PER_PROCESS=4 launch/local.sh ...
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail

# On GPUs, let XLA overlap the gradient all-reduces with compute (latency-hiding
# scheduler); harmless elsewhere. Flags already in XLA_FLAGS are kept.
if [[ "${XLA_FLAGS:-}" != *xla_gpu_enable_latency_hiding_scheduler* ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
fi

cmd=(stylegan-jax train)
if [[ "${PROCESSES:-1}" -gt 1 ]]; then
  cmd+=(--processes "${PROCESSES}")
  if [[ -n "${DEVICES_PER_PROCESS:-}" ]]; then
    cmd+=(--devices-per-process "${DEVICES_PER_PROCESS}")
  fi
fi
cmd+=("$@")

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
else
  exec "${cmd[@]}"
fi
