"""pyarallel's built-in plugins.

Each module is an ordinary plugin, registered through the same hooks a third-party
plugin uses (see ``pyarallel.hookspecs``); removing one loses a feature, never breaks
the core.
"""
