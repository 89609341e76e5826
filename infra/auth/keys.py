"""NATS nkeys: user seeds made here, written owner-only, read back; and the
connection options for a credentials file of either standard form (an nkey
seed file, or a `.creds` file holding a user JWT and its seed)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nkeys


def new_user_seed() -> bytes:
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    return str(nkeys.from_seed(bytearray(seed.strip())).public_key.decode())


@contextmanager
def _beside(path: Path, content: bytes) -> Iterator[Path]:
    """`content` in a new owner-only file beside `path`, on disk, removed
    after the body (which moves or links it into place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def write_secret(path: Path, content: bytes) -> None:
    """Written whole or not at all, readable by the owner only."""
    with _beside(path, content) as temporary:
        os.replace(temporary, path)


def write_once(path: Path, content: bytes) -> bytes:
    """`content` written to `path` (owner-only, whole) unless a file is
    there already; what the file holds either way. Two processes making the
    same key at once (two instances starting together) end up with one."""
    if not path.exists():
        with _beside(path, content) as temporary, contextlib.suppress(FileExistsError):
            os.link(temporary, path)  # fails if another got there first: theirs stands
    return path.read_bytes()


def seed_file(path: Path) -> str:
    """The public key of an existing seed file, or of a new one written there."""
    return public_key(write_once(path, new_user_seed() + b"\n"))


class BadCredentials(Exception):
    """A credentials file that is missing or not of a form NATS takes."""


def connect_options(path: Path) -> dict[str, Any]:
    """nats-py's connect arguments for a credentials file of either form."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BadCredentials(f"no credentials file at {path}") from None
    except OSError as error:
        raise BadCredentials(f"cannot read the credentials file {path}: {error.strerror}") from None
    if "BEGIN NATS USER JWT" in text:
        return {"user_credentials": str(path)}
    if text.strip().startswith("SU"):
        return {"nkeys_seed": str(path)}
    raise BadCredentials(f"{path} is neither a NATS .creds file nor an nkey user seed (SU...)")


def user_of_seed_file(path: Path) -> str:
    """The public key (U...) of a seed file."""
    return public_key(path.read_bytes())
