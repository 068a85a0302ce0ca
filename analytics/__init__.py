"""heatwatch analytics."""
