"""One module per group of ``heatwatch`` sub-commands; each has ``register(subparsers)``."""
