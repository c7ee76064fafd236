"""Errors a user can act on; the CLI prints them without a traceback."""

from __future__ import annotations


class FacesecError(Exception):
    """Base class: the message says what went wrong and how to fix it."""


class ConfigError(FacesecError):
    """Bad user input (spec, CLI argument, recognizer spec); exit code 2."""


class WeightsError(FacesecError):
    """Weights missing, corrupt, or not matching their declared sha256."""


class DataError(FacesecError):
    """A dataset cannot be found or has no usable images."""


class TooFewIdentities(DataError):
    """A dataset has fewer identities with enough usable faces than a run asks for; `available` says how many
    (None when re-raised with more context, where the message already says it)."""

    def __init__(self, message: str, available: int | None = None) -> None:
        super().__init__(message)
        self.available = available


class NotFetched(ConfigError):
    """The threat model is valid but needs a file a facesec command makes (a fetched model, a trained student):
    `validate` warns with the command, `run` refuses."""
