"""People's console passwords: Argon2id hashes (argon2-cffi's defaults, RFC
9106's second recommended set), kept in the user directory beside the nkey."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_LENGTH = 10
_DUMMY = _hasher.hash("not anybody's password")
"""Checked against when the name is unknown, so a wrong name takes as long as a wrong password."""


class WeakPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def check_password(stored: str, given: str) -> bool:
    """Whether `given` matches the hash (an empty hash: nobody signs in, in the same time)."""
    try:
        return _hasher.verify(stored or _DUMMY, given) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False
