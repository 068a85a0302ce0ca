"""heatwatch simulators."""
