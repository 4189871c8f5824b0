"""The exception every vf3d error derives from.

Messages say what was wrong and what to do; the CLI prints them as one line (no traceback).
"""


class Vf3dError(Exception):
    """Base of all errors vf3d raises on purpose (bad input, bad settings, unreachable services)."""


class SettingsError(Vf3dError, ValueError):
    """A setting has a value vf3d cannot use; the message names the setting and the fix."""
