"""Workflows: what runs the stages together: cross-validation, the demo, a run's validation on
the scans' own grids, a recipe's ceiling, the threshold baseline."""
