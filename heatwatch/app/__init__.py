"""The application: the ``heatwatch`` command, ``run``, ``demo``, status and report. It wires the parts together."""
