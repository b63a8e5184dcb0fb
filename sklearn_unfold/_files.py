"""File-system helpers shared by the data cache, the WAV writer, the demo and the command line."""

import os
import tempfile
from pathlib import Path


def atomic_write(path, write, *, binary=True, readable_by_all=False, sync=False):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    Readers see no file or a complete one, never half of it (also after Ctrl-C).

    Parameters
    ----------
    path : str or Path
    write : callable
        ``write(file_object)``.
    binary : bool, default=True
        Open the temporary file in binary mode.
    readable_by_all : bool, default=False
        ``mkstemp`` creates a private (0600) file; set 0644 instead (POSIX).
    sync : bool, default=False
        ``fsync`` before the rename.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if readable_by_all and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o644)
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def writable_dir_problem(folder):
    """Create ``folder`` if needed; return why it cannot be written to, or None."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{str(folder)!r} exists and is not a directory"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create directory {str(folder)!r}: {exc.strerror or exc}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"directory {str(folder)!r} is not writable"
    return None
