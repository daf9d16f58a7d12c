"""Why a path cannot be used: one answer for every script, so that each refusal names the true reason (missing,
a broken link, a folder where a file is wanted, permission denied), and the output folders a run owns."""
from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from .cli import UserError

LOCK_FILE = ".mixcl-dehaze.lock"  # in an output folder while a run writes there (flock: the kernel releases it)


def unreadable_file(path: Path | str) -> str | None:
    """Why `path` cannot be read as a file, or None when it can."""
    path = Path(path)
    if not path.exists():
        return "a broken link (it points to nothing)" if path.is_symlink() else "no such file"
    if path.is_dir():
        return "a folder, not a file"
    if not path.is_file():
        return "not a regular file (a pipe, socket or device)"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "permission denied: this user may not read it"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return None


def check_readable(path: Path | str, what: str = "file") -> Path:
    """`path`, or a UserError naming it and why it cannot be read."""
    problem = unreadable_file(path)
    if problem:
        raise UserError(f"{what} {path}: {problem}")
    return Path(path)


def _folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot become an output folder, or None: it, or its nearest existing parent, must be a
    writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{'it' if existing == folder else existing} cannot be written by this user (permission denied)"
    return None


class OutputFolder:
    """An output folder owned by this process while the `with` block runs: created if needed, then locked with
    flock on a lock file in it, so that a second run into it stops at once (the kernel releases the lock when this
    process ends, even by kill -9). The lock file is removed on leaving, and so are the folders this process created
    when it leaves them empty after an error. Where the file system cannot lock, the run goes on unlocked, with a
    warning."""

    def __init__(self, folder: Path | str, purpose: str = "output folder"):
        self.folder, self.purpose = Path(folder), purpose
        self.created: list[Path] = []
        self.handle = None

    def __enter__(self) -> Path:
        problem = _folder_problem(self.folder)
        if problem:
            raise UserError(f"{self.purpose} {self.folder}: {problem}; choose another one")
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.folder / LOCK_FILE, "a+")  # held open while the run lasts
        except OSError as e:
            self._remove_created()
            raise UserError(f"{self.purpose} {self.folder} cannot be created or written ({e.strerror}); choose "
                            f"another one") from None
        try:
            self._lock()
        except BaseException:
            self._release(failed=True)
            raise
        return self.folder

    def _lock(self) -> None:
        try:
            import fcntl  # noqa: PLC0415 — POSIX only: elsewhere runs go on unlocked
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):  # e.g. a network file system without locks
                print(f"warning: {self.folder} cannot be locked ({e.strerror}): nothing stops a second run writing there",
                      file=sys.stderr)
                return
            self.handle.seek(0)
            holder = self.handle.read(200).strip() or "another process"
            self.handle.close()
            self.handle = None
            raise UserError(f"{self.purpose} {self.folder} is in use by {holder}: wait for it to finish, or choose "
                            f"another one") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        self.handle.flush()

    def __exit__(self, kind, error, traceback) -> None:
        self._release(failed=error is not None)

    def _release(self, failed: bool) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
        if failed:
            self._remove_created()

    def _remove_created(self) -> None:
        """The folders this process created, innermost first, as long as they are empty."""
        for folder in self.created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
