"""Core: configuration, the data model and schema names, time, the home registry and the errors.

Imports no other layer: every part and the application build on it.
"""
