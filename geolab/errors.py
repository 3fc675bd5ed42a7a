"""The one base class of every error whose message is the whole story for the user.

A :class:`UserError` says what was wrong, where (file, row, column, value) and what to do; the
command line prints its message and exits 2 with no traceback. Any other exception is a bug in
geolab and keeps its traceback. Module-specific errors (``ManifestError``, ``CourseError``, ...)
derive from it, beside the built-in base that callers already catch (``ValueError``, ...).
"""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave (a file, a folder, a value), not in geolab's code."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist; the message says which and what to do."""
