"""Exceptions. Each message names what was wrong and what to do about it; the CLI prints it on one line."""

from __future__ import annotations


class AttribenchError(Exception):
    """Base of every error the CLI turns into a one-line message (exit 1)."""


class UsageProblem(AttribenchError):
    """The user's input was wrong (the CLI exits 2, as for a usage error)."""


class UnknownNameError(UsageProblem, KeyError):
    """A name that matches no registered dataset, model, explainer or metric."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousNameError(UsageProblem):
    """A short name provided by more than one plugin."""


class ParameterError(UsageProblem):
    """A malformed or unknown parameter value."""


class PluginError(AttribenchError):
    """A plugin registered something invalid (bad name, duplicate, wrong type)."""


class StoreError(AttribenchError):
    """The attribution store could not be opened, locked, read or written."""


class ModelError(AttribenchError):
    """A model could not be built, loaded, trained or verified."""
