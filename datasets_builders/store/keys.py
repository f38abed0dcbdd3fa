"""Sample key rules, checked when a sample is written.

WebDataset readers split a member name at the first dot of its basename, so a dotted key silently
turns into a different key plus a strange extension (webdataset#237); slashes create directories
on extraction. We allow a conservative alphabet that survives every reader, file system and URL.
"""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 100
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")


class InvalidKeyError(ValueError):
    """A sample key breaks the rules; the message names the key and the source record."""


def check_key(key: object, source: str) -> str:
    """Return ``key`` if it is a valid sample key, else raise naming it and ``source``."""
    where = f"sample key {key!r} (from source record {source})"
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"{where}: a key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{where}: {len(key)} characters, at most {MAX_KEY_LENGTH} allowed")
    if not _ALLOWED.match(key):
        bad = sorted({c for c in key if not _ALLOWED.match(c)})
        why = "dots split keys in WebDataset readers" if "." in bad else "slashes create paths" if "/" in bad else ""
        raise InvalidKeyError(
            f"{where}: characters {''.join(bad)!r} are not allowed (only A-Z a-z 0-9 _ -)"
            + (f"; {why}" if why else "")
        )
    return key
