"""Evaluation: judging predictions: metrics, surface distances, scoring mask files, tables and
overlay figures."""
