"""Errors that carry a message for the caller (CLI exit code 2, HTTP 400), importable without heavy modules."""


class FieldError(ValueError):
    """A boundary file that cannot be read as field polygons."""


class MergeError(ValueError):
    """The files cannot be merged; the message names the rule that failed."""
