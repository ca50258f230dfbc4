"""All exceptions the streamer raises on purpose.

Each error says what went wrong and what the user can do about it; callers
chain the original cause with ``raise ... from``.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base class: an error with a message meant for the user."""


class ConfigError(StreamerError):
    """A configuration key is unknown, missing or has a bad value."""


class AudioInputError(StreamerError):
    """Audio could not be read or decoded (malformed file, wrong format, no device)."""


class ModelLoadError(StreamerError):
    """A model (ASR, encoder, fusion bundle) could not be found or loaded."""


class PublisherError(StreamerError):
    """An event publisher (WebSocket, MQTT, file) could not start or deliver."""


class EventEncodingError(PublisherError, ValueError):
    """An event cannot be written as JSON: a NaN/inf number or text that is not valid
    Unicode (a lone surrogate). Publishers skip such an event, log it and count it."""
