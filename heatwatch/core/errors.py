"""Errors an operator reads: each is phrased to say what is wrong and what to do. The command prints them
as one line and exits 2 (heatwatch.app.cli)."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, phrased for an operator (key, what is wrong, what is expected)."""


class RegistryError(Exception):
    """Registry file problem: names the file, row and column."""


class UsageError(Exception):
    """Bad command-line input, phrased for the operator."""
