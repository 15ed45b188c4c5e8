"""Training: configs, the per-family trainers and steps, the loop, checkpoints, exports."""
