"""Writing files the way users expect: the umask's permissions, parents created (and removed again
if the write fails), and one readable line when the path cannot be written.

Every atomic writer in the project (temp file + ``os.replace``) creates its temp file through
:func:`mkstemp`, because :func:`tempfile.mkstemp` (and safetensors' own writer) make files mode
``0600`` whatever the umask, and ``os.replace`` keeps that mode: exported generators and FID caches
on a shared volume would be unreadable to everyone else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

__all__ = [
    "chmod_from_umask",
    "current_umask",
    "describe_os_error",
    "make_dirs",
    "mkstemp",
    "remove_dirs",
]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which for a moment would also apply to files other
    threads create; Linux (>= 4.7) reports it in ``/proc/self/status``, so that is asked first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest value, should another thread create a file meanwhile
    os.umask(mask)
    return mask


def chmod_from_umask(path: str | os.PathLike[str]) -> None:
    """Give the file at ``path`` the mode a plain ``open(path, "w")`` would have given it
    (``0o666`` less the umask: ``0644`` under the usual umask ``022``)."""
    os.chmod(path, 0o666 & ~current_umask())


def mkstemp(*, prefix: str, suffix: str, dir: str | os.PathLike[str]) -> tuple[int, str]:
    """:func:`tempfile.mkstemp` in ``dir``, but with the umask's mode instead of ``0600``, so the
    file keeps ordinary permissions when it is renamed into place."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, name


def make_dirs(directory: str | os.PathLike[str]) -> list[Path]:
    """Create ``directory`` and its missing parents; return the directories created, deepest last,
    so a failed write can remove them again with :func:`remove_dirs`.

    An existing ancestor that is not a directory raises :class:`NotADirectoryError` naming it
    (``mkdir`` itself would say "File exists", which reads as if the target were the problem).
    """
    target = Path(directory)
    missing: list[Path] = []
    current = target
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if current.exists() and not current.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current))
    created: list[Path] = []
    try:
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:  # made by someone else meanwhile: not ours to remove
                if not path.is_dir():
                    raise
                continue
            created.append(path)
    except BaseException:
        remove_dirs(created)
        raise
    return created


def remove_dirs(created: list[Path]) -> None:
    """Remove the directories :func:`make_dirs` created, deepest first, as far as they are empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the system's reason and the path it is about, e.g.
    ``Not a directory: '/etc/hostname'`` or ``Read-only file system: '/ro/x'``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{reason}: {str(exc.filename)!r}"
    return reason
