"""Exported generators: portable artifacts (StableHLO, SavedModel, TFLite, ONNX) that run
without Flax or this package."""
