#!/usr/bin/env bash
# Cloud TPU VM slice: the same command on every worker; jax.distributed detects the pod.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b REPO=~/stylegan_jax \
#     launch/tpu_pod.sh --config stylegan2 --workdir gs://bucket/runs/ffhq \
#     --config.data.path=/mnt/data/ffhq1024
#
# Install first (once, on all workers):
#   gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
#     --command="cd $REPO && pip install -e . 'jax[tpu]'"
# DRY_RUN=1 prints the gcloud command.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
REPO="${REPO:-~/stylegan_jax}"

remote="cd ${REPO} && stylegan-jax train"
for arg in "$@"; do
  remote+=" $(printf '%q' "$arg")"
done
cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$remote")

if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%q ' "${cmd[@]}"
  echo
else
  exec "${cmd[@]}"
fi
