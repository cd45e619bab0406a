"""Across the grid: every run in one table, seeds aggregated, best run per backbone, paired comparisons between strategies."""
