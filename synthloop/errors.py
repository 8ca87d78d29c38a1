"""Errors a user can act on. The CLI prints their message on one line and exits with code 2."""
from __future__ import annotations


class SynthloopError(ValueError):
    """Base class: the message names the file, line or column and says what to do."""


class DataError(SynthloopError):
    """The input table cannot be read or learned as given."""


class SchemaError(SynthloopError):
    """A schema or override file is invalid."""


class ConditionError(SynthloopError):
    """A sampling condition names an unknown column or an impossible value."""


class ModelFileError(SynthloopError):
    """A saved model file is missing, corrupt or from an incompatible version."""


class PrivacyError(SynthloopError):
    """A differentially private fit would release something its budget does not cover."""
