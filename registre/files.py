"""Files that hold secrets or personal data: created 0600 before the first byte, written
whole (a reader sees the old file or the new one, never half of one), never through a link."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class UnsafePath(ValueError):
    """A path registre refuses to write to (a symbolic link, a directory)."""


def refuse_link(path: Path) -> None:
    """Refuse a path that is a symbolic link or a directory (one line, naming it)."""
    if path.is_symlink():
        raise UnsafePath(f"{path}: is a symbolic link; registre writes only to a plain file")
    if path.is_dir():
        raise UnsafePath(f"{path}: is a directory")


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically, the file created with ``mode`` (default 0600)."""
    path = Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_or_create_secret(path: Path, nbytes: int = 24) -> str:
    """The secret kept in ``path`` (0600), generated on first use. Never printed."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(nbytes) + "\n")
    return path.read_text().strip()
