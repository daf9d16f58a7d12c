"""Why a path cannot be used: one answer for every script, so that each refusal names the true reason (missing,
a broken link, a link loop, a folder where a file is wanted, permission denied), and the output folders a run owns."""
from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from .cli import UserError

LOCK_FILE = ".mixcl-dehaze.lock"  # in every output folder, locked (flock) by the run that writes there
LINK_LOOP = "a link loop (a symbolic link that leads back to itself)"


def is_link_loop(path: Path | str) -> bool:
    """Whether following `path` goes round a loop of symbolic links (a link to itself, or links to each other)."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def unreadable_file(path: Path | str) -> str | None:
    """Why `path` cannot be read as a file, or None when it can."""
    path = Path(path)
    if not path.exists():
        if is_link_loop(path):
            return LINK_LOOP
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


def unreadable_folder(path: Path | str) -> str | None:
    """Why `path` cannot be listed as a folder, or None when it can."""
    path = Path(path)
    if not path.exists():
        return unreadable_file(path) if path.is_symlink() or is_link_loop(path) else "no such folder"
    if not path.is_dir():
        return "a file, not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "permission denied: this user may not list it"
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
        if is_link_loop(existing):
            return f"{existing} is {LINK_LOOP}"
        if existing.is_symlink():
            return f"{existing} is a broken link (it points to nothing)"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{'it' if existing == folder else existing} cannot be written by this user (permission denied)"
    return None


class OutputFolder:
    """An output folder owned by this process while the `with` block runs: created if needed, then locked with
    flock on a lock file in it, so that a second run into it stops at once (the kernel releases the lock when this
    process ends, even by kill -9).

    The lock file stays for the folder's life, emptied when the run leaves (then it names no holder, and the next
    run locks it as if new): a run that removed it on leaving would let another, which opened it just before,
    lock a file no longer in the folder while a third locks a new one. Only a failed run removes what it created
    (the lock file, and the folders it leaves empty), while it still holds the lock; a run that locked the old file
    meanwhile sees that it is no longer the folder's and starts again. Where the file system cannot lock, the run
    goes on unlocked, with a warning."""

    def __init__(self, folder: Path | str, purpose: str = "output folder"):
        self.folder, self.purpose = Path(folder), purpose
        self.lock_file = self.folder / LOCK_FILE
        self.created: list[Path] = []
        self.made_lock_file = False
        self.handle = None  # the lock file, open while this process holds the lock

    def __enter__(self) -> Path:
        problem = _folder_problem(self.folder)
        if problem:
            raise UserError(f"{self.purpose} {self.folder}: {problem}; choose another one")
        try:
            while not self._lock(self._open()):  # the file was removed between opening and locking it: again
                pass
        except BaseException:
            self._release(failed=True)
            raise
        return self.folder

    def _open(self):
        """The lock file, opened (created, with the folder, when missing)."""
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.made_lock_file = not self.lock_file.exists()
            return open(self.lock_file, "a+")
        except OSError as e:
            raise UserError(f"{self.purpose} {self.folder} cannot be created or written ({e.strerror}); choose "
                            f"another one") from None

    def _lock(self, handle) -> bool:
        """Lock the opened lock file and write this process into it; False when the file locked is no longer the
        folder's (a failed run removed it meanwhile). A UserError names the holder when another run has it."""
        if not _try_lock(handle, self.folder):
            handle.seek(0)
            holder = handle.read(200).strip() or "another process"
            handle.close()
            raise UserError(f"{self.purpose} {self.folder} is in use by {holder}: wait for it to finish, or choose "
                            f"another one")
        if not _same_file(handle, self.lock_file):
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle
        return True

    def __exit__(self, kind, error, traceback) -> None:
        self._release(failed=error is not None)

    def _release(self, failed: bool) -> None:
        if failed:
            self._remove_created()  # while the lock is still held: no other run is in the folder
        if self.handle is not None:
            if not failed:
                self.handle.truncate(0)  # the file stays, naming no holder
            self.handle.close()
            self.handle = None

    def _remove_created(self) -> None:
        """The lock file when this run made it and holds it, then the folders this process created, innermost
        first, as long as they are empty."""
        if self.made_lock_file and self.handle is not None:
            self.lock_file.unlink(missing_ok=True)
        for folder in self.created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _try_lock(handle, folder: Path) -> bool:
    """Lock an open file exclusively without waiting: False when another process holds it. Where the file system
    (or the platform) cannot lock, True after a warning: the run goes on unlocked."""
    try:
        import fcntl  # noqa: PLC0415 — POSIX only: elsewhere runs go on unlocked
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        print(f"warning: {folder} cannot be locked ({e.strerror}): nothing stops a second run writing there",
              file=sys.stderr)
    return True


def _same_file(handle, path: Path) -> bool:
    """Whether the open file `handle` is the file at `path` now."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
