"""Text that becomes a file name: one sanitiser, and a check that the file stays in its folder.

Suite names and dataset labels are data from a suite file, yet they name the store, the reports
and the plot files. Only ``[A-Za-z0-9._-]`` reaches a file name and leading dots are dropped, so
no text can climb out of the folder chosen for it (``..``, ``/``, an absolute path), hide a file
or name a device. Torch-free: the store and the reports use it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from bench.errors import KanbenchError

#: longest text accepted as a name (a file system allows 255 bytes per name; suffixes follow)
MAX_NAME_CHARS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
PATH_SEPARATORS = ("/", "\\")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "...")


def file_stem(value: str, what: str, *, unique: bool = False) -> str:
    """``value`` as the stem of a file name: every character outside ``[A-Za-z0-9._-]`` becomes
    ``_`` and leading dots go. With ``unique``, a stem that had to change ends in a short hash
    of ``value``, so two labels that differ only in such characters never share a file.

    Refuses, with a :class:`KanbenchError` naming ``what`` and the value, text with a NUL
    character, longer than :data:`MAX_NAME_CHARS`, or that leaves no name (empty, only dots)."""
    if "\0" in value:
        raise KanbenchError(f"{what} {_shown(value)} contains a NUL character: it cannot name "
                            f"a file")
    if len(value) > MAX_NAME_CHARS:
        raise KanbenchError(f"{what} {_shown(value)} is {len(value)} characters long: a name "
                            f"that names files may have at most {MAX_NAME_CHARS}")
    stem = _UNSAFE.sub("_", value).lstrip(".")
    if not stem:
        raise KanbenchError(f"{what} {_shown(value)} leaves no file name (it is empty or only "
                            f"dots)")
    if unique and stem != value:
        stem += "-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return stem


def inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused unless it lies directly in ``folder`` (a sanitised name always
    does: this guards the callers, not the sanitiser)."""
    folder = Path(folder)
    path = folder / name
    if Path(os.path.abspath(path)).parent != Path(os.path.abspath(folder)):
        raise KanbenchError(f"file name {_shown(name)} would leave the folder {folder}")
    return path


def named_file(folder: str | Path, value: str, suffix: str, what: str, *,
               unique: bool = False) -> Path:
    """The file in ``folder`` named by the text ``value`` (through :func:`file_stem`) and
    ``suffix``."""
    return inside(folder, file_stem(value, what, unique=unique) + suffix)


def plain_name(value: str, what: str) -> str:
    """Check a name the user gives to name files (a suite's ``name``): a path separator is
    refused rather than flattened, since whoever wrote one meant a location, and folders are
    chosen with ``--store`` and ``--out-dir``. Returns the file stem."""
    if any(sep in value for sep in PATH_SEPARATORS):
        raise KanbenchError(f"{what} {_shown(value)} contains a path separator: a name names "
                            f"files, not folders (choose folders with --store and --out-dir)")
    return file_stem(value, what)
