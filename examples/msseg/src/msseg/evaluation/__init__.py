"""Evaluation: metrics, reports, cross-validation, the threshold baseline, overlays, the demo."""
