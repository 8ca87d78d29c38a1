"""Errors of the prompted path; all are SynthloopError, so the CLI prints them on one line and exits 2."""
from __future__ import annotations

from synthloop.errors import SynthloopError


class SpecError(SynthloopError):
    """The YAML spec is invalid; the message names the file, line and YAML path (columns[2].llm.prompt)."""


class GenerationError(SynthloopError):
    """Generation cannot go on as configured (journal of another spec, backend unusable, ...)."""


class LLMError(SynthloopError):
    """A language-model backend failed for good (after retries) or cannot be started."""
