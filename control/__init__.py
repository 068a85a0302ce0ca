"""heatwatch control."""
