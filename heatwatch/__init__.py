"""heatwatch: district-heating telemetry, analytics and control.

This package holds what every part shares: configuration, the home registry,
storage backends, the data model and the command line.
"""

__version__ = "0.1.0"
