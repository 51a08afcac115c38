"""Report files are written whole or not at all, into folders checked before any work."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from bench.errors import KanbenchError


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temporary file in ``path``'s folder that replaces ``path`` (``os.replace``) only when
    the block ends without an error: an interrupted write leaves the previous file, never a
    truncated one, and no temporary file stays behind (short of a kill)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0o600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, write: Callable[[IO], None], mode: str = "w") -> Path:
    with atomic_file(path, mode) as f:
        write(f)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Create ``folder`` and write and delete a probe file in it, or raise a KanbenchError
    naming it: a run finds out before training, not after, that its reports cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kanbench-probe-"):
            pass
    except OSError as exc:
        raise KanbenchError(f"cannot write the {what} {folder} ({exc.strerror or exc}); "
                            f"choose a writable folder") from None
