"""Where data lives, where derived files are cached, and how files are fetched and checked.

Data folder (``data_dir``), in order of precedence: the command line's ``--data-dir``, the
suite's ``data_dir``, the environment variable ``KANBENCH_DATA``, then
``~/.cache/kanbench/data``. The runner resolves the first two; a loader that receives
``data_dir=None`` calls :func:`default_data_dir` for the last two.

Layout inside the data folder (the same as the offline copies in ``shared/data``)::

    mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    fashion-mnist/FashionMNIST/raw/...                     (same four names)
    cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    uci/adult/adult.{data,test}
    uci/magic/magic04.data
    uci/drybean/DryBeanDataset/Dry_Bean_Dataset.arff
    uci/poker/poker-hand-training-true.data   (poker-hand-testing.data optional)

Cache folder: derived files (decompressed images, decoded tensors) are written next to the
data when that folder is writable, otherwise under ``KANBENCH_CACHE`` (default
``~/.cache/kanbench/cache``), in a sub-folder named after a hash of the data's real path,
so a read-only data folder (a shared copy) is never written to.

Network: ``KANBENCH_OFFLINE=1`` turns every download attempt off (a missing file is then
reported at once). Otherwise a download is tried with a socket timeout of
``KANBENCH_DOWNLOAD_TIMEOUT`` seconds (default 20), and any failure becomes one
:class:`~bench.errors.DataUnavailableError` that says which files to put where.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import stat
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.errors import DatasetError, DataUnavailableError

ENV_DATA = "KANBENCH_DATA"
ENV_CACHE = "KANBENCH_CACHE"
ENV_OFFLINE = "KANBENCH_OFFLINE"
ENV_TIMEOUT = "KANBENCH_DOWNLOAD_TIMEOUT"

USER_AGENT = "kanbench (https://pypi.org/project/kanbench)"


def default_data_dir() -> Path:
    """``$KANBENCH_DATA`` if set, else ``~/.cache/kanbench/data``."""
    env = os.environ.get(ENV_DATA, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kanbench" / "data"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The folder a loader searches: the one given, else :func:`default_data_dir`."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def cache_dir() -> Path:
    """``$KANBENCH_CACHE`` if set, else ``~/.cache/kanbench/cache``."""
    env = os.environ.get(ENV_CACHE, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kanbench" / "cache"


def offline() -> bool:
    """True when ``KANBENCH_OFFLINE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def download_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get(ENV_TIMEOUT, "20")))
    except ValueError:
        return 20.0


@contextlib.contextmanager
def socket_timeout(seconds: float | None = None) -> Iterator[None]:
    """Bound every blocking socket operation (torchvision's downloads set no timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout() if seconds is None else seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def is_writable_dir(path: Path) -> bool:
    """True when ``path`` (or, if it does not exist yet, its nearest existing parent) may be
    written. A folder without any write permission bit counts as read-only even for root
    (who could write it anyway): a shared read-only copy of the data must never change."""
    probe_dir = path
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            return False
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not (stat.S_IMODE(probe_dir.stat().st_mode) & 0o222):
        return False
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".kanbench-probe-"):
            pass
    except OSError:
        return False
    return True


def writable_twin(path: Path, label: str, *inner: str) -> Path:
    """``path`` when it (and each existing ``path / inner`` sub-folder that will be written)
    can be written, else a folder for ``label`` under :func:`cache_dir` keyed by a hash of
    ``path``'s real location."""
    if is_writable_dir(path) and all(is_writable_dir(path / sub) for sub in inner):
        return path
    return cache_twin(path, label)


def cache_twin(path: Path, label: str) -> Path:
    """The folder under :func:`cache_dir` that stands in for a read-only ``path``."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / f"{label}-{digest}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_status(path: Path, expected: dict[str, str]) -> str:
    """'verified' when every expected digest (``{"md5": .., "sha256": ..}``) matches,
    'mismatch' when one differs, 'unknown' when none is known."""
    if not expected:
        return "unknown"
    for algorithm, digest in expected.items():
        if file_digest(path, algorithm) != digest.lower():
            return "mismatch"
    return "verified"


def how_to_replace(source: str, n: int = 1) -> str:
    """How to replace damaged files: the loaders download a missing file again."""
    if n == 1:
        return f"Delete it so it is downloaded again, or copy a good one from {source}."
    return f"Delete them so they are downloaded again, or copy good ones from {source}."


def checksum_error(dataset: str, files: Sequence[Path], algorithm: str,
                   source: str) -> DatasetError:
    """Files that differ from their published checksums: refused unless the dataset entry
    opts out with ``verify_checksum: false``."""
    listed = ", ".join(str(f) for f in files)
    one = len(files) == 1
    return DatasetError(
        f"dataset '{dataset}': {listed} {'does' if one else 'do'} not match the published "
        f"{algorithm} checksum ({'it is' if one else 'they are'} damaged, truncated or not the "
        f"original). {how_to_replace(source, len(files))} To use {'it' if one else 'them'} as "
        f"{'it is' if one else 'they are'}, give the dataset the option verify_checksum: false "
        f"(it becomes part of every run's key)."
    )


def damaged(dataset: str, file: Path | str, problem: str, source: str) -> DatasetError:
    """A data file that cannot be decoded or parsed."""
    return DatasetError(f"dataset '{dataset}': {file} is damaged ({problem}). "
                        f"{how_to_replace(source)}")


def fingerprint(paths: Sequence[Path]) -> list[list[object]]:
    """Cheap identity of source files (name, size, mtime) used to validate derived caches."""
    out: list[list[object]] = []
    for p in paths:
        st = p.stat()
        out.append([p.name, st.st_size, st.st_mtime_ns])
    return out


def download_file(urls: Sequence[str], dest: Path, expected: dict[str, str]) -> None:
    """Fetch the first URL that works into ``dest``, verifying the checksums in ``expected``.

    The file is written to a temporary name and moved into place only after it verified, so
    an interrupted or corrupted download never leaves a file that looks complete. Raises
    ``OSError`` (with every URL's failure) when no URL gives a verified file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, socket_timeout():
                request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                with urllib.request.urlopen(request, timeout=download_timeout()) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
            status = checksum_status(tmp, expected)
            if status == "mismatch":
                failures.append(f"{url}: checksum mismatch (expected {expected})")
                continue
            os.replace(tmp, dest)
            return
        except Exception as exc:  # URLError, HTTPError, timeouts, ...: try the next URL
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise OSError("; ".join(failures) or "no URL to download from")


def unavailable(dataset: str, files: Sequence[str], folder: Path, how: str,
                reason: str | None = None) -> DataUnavailableError:
    """The one message every loader raises when its files are missing and cannot be fetched."""
    why = reason or (f"downloads are off ({ENV_OFFLINE} is set)" if offline()
                     else "the download failed")
    listed = ", ".join(files)
    were = "was" if len(files) == 1 else "were"
    return DataUnavailableError(
        f"dataset '{dataset}' is not available: expected {listed} in {folder}, which {were} "
        f"not found, and {why}. {how} Then run again (or point --data-dir / the suite's data_dir / "
        f"${ENV_DATA} at the folder that holds them)."
    )
