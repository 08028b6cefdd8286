"""Measuring a checkpoint: hold-out evaluation (P, R, AP, AUC_PR), baselines, calibration, their plots and example figures."""
