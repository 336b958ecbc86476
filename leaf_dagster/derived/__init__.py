"""Outputs derived from the standard points: filters, unit systems, geometry, summary, images."""
