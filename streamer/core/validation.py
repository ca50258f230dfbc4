"""The one rule for strings that come from a client: checked at the edge, before use.

Every identifier (stream ids, roles, channel names, session and call ids, subscribe
filters) and every piece of free text a client sends (AudioHook participant fields,
close reasons) passes through here before it reaches a recognizer, an event, a log line
or a topic. The rule:

- a ``str`` of 1..``max_chars`` characters (identifiers: 128, text: 256);
- every character printable (``str.isprintable``): no control characters (C0, C1, NUL,
  DEL), no lone surrogates (which cannot be encoded as UTF-8), no format characters
  (zero-width, bidi overrides), no line or paragraph separators;
- identifiers additionally contain none of ``/ + #`` (they become MQTT topic levels).

A value that breaks the rule raises ``InvalidClientString`` (a ``ValueError``) whose
message names the field, shows the value safely escaped and says what is allowed; each
protocol turns it into its own error reply and close code.
"""

from __future__ import annotations

import reprlib

MAX_IDENTIFIER_CHARS = 128
MAX_TEXT_CHARS = 256
TOPIC_RESERVED = frozenset("/+#")

_shown = reprlib.Repr()
_shown.maxstring = 60
_shown.maxother = 60
_shown.maxlevel = 3
_shown.maxlist = _shown.maxdict = _shown.maxtuple = 4


class InvalidClientString(ValueError):
    """A client-supplied string breaks the edge rule (see the module docstring)."""


def shown(value: object) -> str:
    """``value`` for an error message: escaped (repr), bounded in length and nesting."""
    return _shown.repr(value)


def string_problem(value: object, max_chars: int, forbidden: frozenset[str] = frozenset()
                   ) -> str | None:
    """What is wrong with ``value`` under the rule, or None when it is acceptable."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > max_chars:
        return f"has {len(value)} characters, at most {max_chars} are allowed"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (f"contains the non-printable character {bad!r} (U+{ord(bad):04X}); control, "
                "format and surrogate characters are not allowed")
    if forbidden and not forbidden.isdisjoint(value):
        bad = next(c for c in value if c in forbidden)
        return f"contains {bad!r}; {' '.join(sorted(forbidden))} are not allowed"
    return None


def check_identifier(value: object, what: str, max_chars: int = MAX_IDENTIFIER_CHARS) -> str:
    """``value`` if it is a valid identifier (printable, bounded, no ``/ + #``)."""
    problem = string_problem(value, max_chars, TOPIC_RESERVED)
    if problem is not None:
        raise InvalidClientString(
            f"{what} {shown(value)} {problem}; use 1..{max_chars} printable characters "
            "without '/', '+' or '#'")
    assert isinstance(value, str)
    return value


def check_text(value: object, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` if it is acceptable free text (printable, bounded)."""
    problem = string_problem(value, max_chars)
    if problem is not None:
        raise InvalidClientString(
            f"{what} {shown(value)} {problem}; use 1..{max_chars} printable characters")
    assert isinstance(value, str)
    return value


def is_identifier(value: object, max_chars: int = MAX_IDENTIFIER_CHARS) -> bool:
    return string_problem(value, max_chars, TOPIC_RESERVED) is None


__all__ = ["InvalidClientString", "check_identifier", "check_text", "is_identifier", "shown",
           "string_problem", "MAX_IDENTIFIER_CHARS", "MAX_TEXT_CHARS", "TOPIC_RESERVED"]
