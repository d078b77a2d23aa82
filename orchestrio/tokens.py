"""API token format: `ork_<mode>_<32 random base62><6-char base62 CRC32 checksum>`.

The checksum (as GitHub's tokens do) lets a mistyped or truncated token be rejected before any
database lookup, and lets secret scanners recognise our tokens. Only the SHA-256 of the whole
token is stored, with a 12-character display prefix.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib
from dataclasses import dataclass

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
PREFIX_LENGTH = 12
MODES = ("live", "test")
_TOKEN_RE = re.compile(
    r"^ork_(?P<mode>live|test)_(?P<random>[0-9A-Za-z]{%d})(?P<checksum>[0-9A-Za-z]{%d})$"
    % (RANDOM_LENGTH, CHECKSUM_LENGTH)
)


class TokenFormatError(ValueError):
    """The string is not a well-formed Orchestrio token (bad shape or checksum)."""


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class GeneratedToken:
    plaintext: str
    prefix: str
    sha256: str
    mode: str


def generate(mode: str) -> GeneratedToken:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    body = f"ork_{mode}_" + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    plaintext = body + checksum(body)
    return GeneratedToken(plaintext=plaintext, prefix=plaintext[:PREFIX_LENGTH], sha256=hash_token(plaintext), mode=mode)


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith("ork_")


def validate(plaintext: str) -> str:
    """Check shape and checksum without touching the database; returns the mode."""
    match = _TOKEN_RE.match(plaintext)
    if not match:
        raise TokenFormatError("malformed token: expected ork_live_… or ork_test_… followed by 38 letters and digits")
    body = plaintext[: -CHECKSUM_LENGTH]
    if not secrets.compare_digest(checksum(body), match["checksum"]):
        raise TokenFormatError("token checksum does not match: the token was mistyped or truncated")
    return match["mode"]
