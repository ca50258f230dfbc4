"""Errors raised by the model library; each says which file or setting and what to do."""

from __future__ import annotations


class ModelError(Exception):
    """Base class for model-library errors."""


class ModelFileError(ModelError):
    """A model file or directory is missing, incomplete or does not match what was expected."""


class BundleError(ModelFileError):
    """A bundle directory is missing a file or its files disagree with each other."""
