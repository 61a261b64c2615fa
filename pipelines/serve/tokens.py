"""API tokens of the HTTP service: a file of hashes, one token per line.

A line is ``NAME sha256:HEX SCOPE[,SCOPE...]``; ``#`` starts a comment. The file never holds
a token itself, only its SHA-256: a token is 32 random bytes, so a plain hash is enough
(a slow KDF such as bcrypt or argon2 protects low-entropy passwords against guessing;
guessing 256 random bits is hopeless whatever the hash costs).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ConfigError

SCOPES = ("sync:execute", "sync:read", "metrics:read")
"""Every scope a token can hold."""

# always fullmatch: with match, "$" also matches before a trailing newline
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Token:
    """One line of the tokens file: whose token, its hash and what it may do."""

    name: str
    digest: str
    """Hex SHA-256 of the token."""
    scopes: frozenset[str]


def digest(token: str) -> str:
    """Hex SHA-256 of a presented token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse(text: str, source: str = "the tokens file") -> list[Token]:
    """Read the lines of a tokens file.

    Raises:
        ConfigError: A line is malformed or names an unknown scope (the message gives its
            number, never its content: it holds a hash).

    """
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or not _NAME.fullmatch(parts[0]) or not _DIGEST.fullmatch(parts[1]):
            raise ConfigError(
                f"{source}, line {number}: expected 'NAME sha256:HEX SCOPE[,SCOPE...]'"
            )
        scopes = frozenset(s for s in parts[2].split(",") if s)
        unknown = sorted(scopes - set(SCOPES))
        if unknown:
            raise ConfigError(f"{source}, line {number}: unknown scope {', '.join(unknown)}")
        tokens.append(Token(parts[0], parts[1].removeprefix("sha256:"), scopes))
    return tokens


def load(path: Path) -> list[Token]:
    """Read the tokens file at `path`, refusing one that others could have written.

    A file another user owns, or that its group or others may write, could hold a line
    nobody meant to grant: it is refused as a whole rather than trusted.

    Raises:
        ConfigError: It is missing, unreadable, not a regular file, not owned by this
            process's user, writable by group or others, or malformed.

    """
    try:
        # one descriptor for the checks and the read: the file checked is the file read
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(
            f"no tokens file at {path} (ATLAS_API_TOKENS_FILE): create a token with"
            " `python -m pipelines.run token create NAME --scope sync:read`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"the tokens file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError(
                f"the tokens file {path} is owned by uid {st.st_uid}, not by the service's"
                f" user (uid {os.geteuid()}): chown it"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"the tokens file {path} is writable by group or others"
                f" (mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
            )
        try:
            text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the tokens file {path}: {exc}") from None
    return parse(text, str(path))


def find(tokens: list[Token], presented: str) -> Token | None:
    """The token whose hash matches `presented`, or None.

    Every entry is compared, each in constant time, so the answer's timing tells nothing
    about which hash came close.
    """
    wanted = digest(presented)
    match = None
    for token in tokens:
        if hmac.compare_digest(token.digest, wanted):
            match = token
    return match


def create(path: Path, name: str, scopes: list[str]) -> str:
    """Make a new token, append its hashed line to `path` and return the token.

    The file is created readable by its owner only (0600); the token itself is written
    nowhere, so the caller shows it once.

    Raises:
        ConfigError: A bad name or scope, a name already in the file, or an unwritable file.

    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"token name {name!r}: letters, digits and _.@- only (at most 64, no spaces)"
        )
    if not scopes:
        raise ConfigError(f"give the token at least one --scope ({', '.join(SCOPES)})")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ConfigError(f"unknown scope {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    existing = load(path) if path.exists() else []
    if any(t.name == name for t in existing):
        raise ConfigError(f"a token named {name!r} is already in {path}")
    token = secrets.token_urlsafe(32)  # 32 random bytes
    line = f"{name} sha256:{digest(token)} {','.join(s for s in SCOPES if s in scopes)}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write the tokens file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)
    return token
