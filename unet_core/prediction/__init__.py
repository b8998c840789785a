"""Prediction: the run over a config's test files, the sliding-window pieces the public
:mod:`unet_core.prediction_api` re-exports, outputs, scores, evaluation of prediction files."""
