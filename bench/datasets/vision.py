"""Image classification sets, read through torchvision's dataset classes and flattened.

======================  ============================  ===========  =============  =======
name                    source                        train        test (official) input
======================  ============================  ===========  =============  =======
``mnist``               torchvision ``MNIST``         60000        10000          784 (28x28x1)
``fashion_mnist``       torchvision ``FashionMNIST``  60000        10000          784 (28x28x1)
``cifar10``             torchvision ``CIFAR10``       50000        10000          3072 (32x32x3)
======================  ============================  ===========  =============  =======

Files (see :mod:`bench.datasets.paths` for how the data folder is chosen)::

    <data_dir>/mnist/MNIST/raw/train-images-idx3-ubyte.gz  (+ train-labels-idx1-ubyte.gz,
                               t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz;
                               gunzipped copies are accepted too)
    <data_dir>/fashion-mnist/FashionMNIST/raw/...          (the same four names)
    <data_dir>/cifar10/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta
                               (or <data_dir>/cifar10/cifar-10-python.tar.gz)

``<data_dir>`` itself is accepted as torchvision's root too (``<data_dir>/MNIST/raw``,
``<data_dir>/cifar-10-batches-py``), so a folder torchvision already downloaded into works.
A missing set is downloaded through torchvision (``download=True``) unless
``KANBENCH_OFFLINE=1``; when that fails the loader raises one
:class:`~bench.errors.DataUnavailableError` that names the files and where to put them.

Decoding happens once: the .gz files are gunzipped (torchvision needs the plain files) and the
decoded uint8 tensors are saved as ``kanbench-decoded.pt`` next to the data, or, when the
data folder is read-only (a shared copy), under ``$KANBENCH_CACHE/<folder>-<hash>/``
(default ``~/.cache/kanbench/cache``). The cache is rebuilt when a source file's size or
modification time changes. Checksums of the source files are compared with torchvision's
published md5s and the result is recorded (``info["checksum"]``). Files that do not match are
refused with a :class:`~bench.errors.DatasetError` naming them, unless the dataset entry opts
out with the option ``verify_checksum: false`` (for example tiny synthetic files in tests;
the option is part of every run's key, so such runs never mix with verified ones). For
CIFAR-10 torchvision refuses batches whose md5 differs, so with the opt-out they are read
through a subclass of torchvision's ``CIFAR10`` with the md5 checks off (same pickle reader).
A file that cannot be decoded (a truncated or corrupted .gz, an IDX file whose size does not
match its header) is one DatasetError naming it and saying how to replace it.

Preprocessing, in order (every choice is recorded in ``Dataset.info``):

1. ``max_train`` (int): stratified subsample of the official training set (seeded with
   ``split.seed``), before the validation split is carved; the test set is always complete.
2. pixels as float in [0, 1] (uint8 / 255); images are ``(C, H, W)``.
3. ``resize`` (int side): downscale to ``side x side`` with area averaging
   (``torch.nn.functional.interpolate(mode="area")``; bilinear when enlarging).
4. flatten channel-major (``C*H*W`` features); official test split; validation carved from
   the training set (stratified, ``split.val_size``, ``split.seed``).
5. ``pca`` (int): principal components fitted on the training part only (not validation).
6. standardisation with training-part statistics when ``split.scale == "standard"``:
   ``normalize: feature`` (default; per input feature, as every other dataset) or
   ``normalize: channel`` (one mean and std per colour channel, not with ``pca``).
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import os
import shutil
import struct
import tarfile
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from bench.datasets import paths
from bench.datasets.base import Dataset, SplitSpec, split_and_scale
from bench.datasets.registry import DatasetOptionError, checksum_flag, dataset
from bench.errors import DatasetError

log = logging.getLogger(__name__)

CACHE_NAME = "kanbench-decoded.pt"
CACHE_VERSION = 2  # 2: every blob names its reader
OPTIONS = ("resize", "pca", "max_train", "normalize", "verify_checksum")

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclasses.dataclass(frozen=True)
class _Raw:
    """Decoded official arrays: images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    info: dict[str, Any]


# --------------------------------------------------------------------------------------------
# decoded-array cache


def _read_cache(path: Path, fp: list[Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: rebuild it
        log.warning("ignoring unreadable cache %s: %s", path, exc)
        return None
    if blob.get("version") != CACHE_VERSION or blob.get("fingerprint") != fp:
        return None
    return blob


def _write_cache(path: Path, blob: dict[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("could not write the decoded cache %s: %s", path, exc)
        return False


def _decoded(cache: Path, fp: list[Any], decode) -> tuple[dict[str, Any], Path | None]:
    """The decoded arrays: from the cache when it matches the sources' fingerprint, else from
    ``decode()`` and then written to the cache. Returns (blob, cache path or None when the cache
    could not be written)."""
    blob = _read_cache(cache, fp)
    if blob is not None:
        return blob, cache
    blob = {"version": CACHE_VERSION, "fingerprint": fp, **decode()}
    return blob, cache if _write_cache(cache, blob) else None


def _raw(blob: dict[str, Any], cache: Path | None, *, files: Path, downloaded: bool) -> _Raw:
    return _Raw(
        blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"], list(blob["classes"]),
        info={
            "source": blob["reader"], "files": str(files), "downloaded": downloaded,
            "checksum": blob["checksum"], "decoded_cache": str(cache) if cache else None,
        },
    )


def _read_official(cls: type, root: Path, name: str, what: str, where: Path, source: str):
    """torchvision's official train and test splits, or one DatasetError naming the files."""
    try:
        return cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except Exception as exc:
        raise DatasetError(
            f"dataset '{name}': could not read the {what} in {where} ({_short(exc)}). "
            f"{paths.how_to_replace(source, 2)}"
        ) from None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)


def _idx_root(candidates: list[Path], cls_name: str) -> Path | None:
    """The first candidate whose ``<cls_name>/raw`` holds all four files (plain or .gz)."""
    for root in candidates:
        raw = root / cls_name / "raw"
        if all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in _IDX_FILES):
            return root
    return None


def _gunzip(src: Path, dst: Path, name: str, source: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dst)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # truncated, corrupted, not gzip
        raise paths.damaged(name, src, f"cannot be gunzipped: {_short(exc)}", source) from None
    finally:
        tmp.unlink(missing_ok=True)


def _idx_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an original IDX file of unsigned bytes (magic 0x0000 08 ndim,
    ndim big-endian sizes, then the data), or None; torchvision's own errors name no file."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08":
            return "no IDX header of unsigned bytes"
        ndim = head[3]
        sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        return "its IDX header is cut short"
    expected = 4 + 4 * ndim + math.prod(struct.unpack(f">{ndim}I", sizes))
    size = path.stat().st_size
    return None if size == expected else f"{size:,} bytes; its header describes {expected:,}"


def _idx_source(cls: type, files: list[Path]) -> str:
    """Where good copies of ``files`` (published gzipped) can be downloaded."""
    mirror = cls.mirrors[0]
    return f"{mirror}{files[0].name.removesuffix('.gz')}.gz" if len(files) == 1 else mirror


def _load_idx(name: str, cls: type, folder: str, data_dir: Path | None, verify: bool) -> _Raw:
    base = paths.resolve_data_dir(data_dir)
    cls_name = cls.__name__
    # the data folder (two layouts), then where a download into a read-only folder went
    candidates = [base / folder, base, paths.cache_twin(base / folder, folder)]
    root = _idx_root(candidates, cls_name)
    downloaded = False
    if root is None:
        root = _download_idx(name, cls, base / folder, folder)
        downloaded = True
    raw = root / cls_name / "raw"
    sources = [raw / f"{f}.gz" if (raw / f"{f}.gz").is_file() else raw / f for f in _IDX_FILES]
    work = paths.writable_twin(root, folder, cls_name, f"{cls_name}/raw")
    cache = work / cls_name / CACHE_NAME
    fp = [str(root.resolve()), *paths.fingerprint(sources)]
    md5 = dict(cls.resources)
    gz = [s for s in sources if s.suffix == ".gz"]

    def mismatched() -> list[Path]:
        return [s for s in gz if paths.checksum_status(s, {"md5": md5[s.name]}) == "mismatch"]

    def decode() -> dict[str, Any]:
        bad = mismatched()
        if bad and verify:
            raise paths.checksum_error(name, bad, "md5", _idx_source(cls, bad))
        if not gz:
            status = "unknown (gunzipped files; md5s are published for the .gz files)"
        elif bad:
            status = "mismatch"
        else:
            status = "verified" if len(gz) == len(sources) else "partly verified (.gz files)"
        tv_root = work if gz else root  # torchvision reads plain files: gunzip into a twin
        for src in sources:
            plain = tv_root / cls_name / "raw" / src.name.removesuffix(".gz")
            if src.suffix == ".gz":
                _gunzip(src, plain, name, _idx_source(cls, [src]))
            elif src != plain:
                plain.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, plain)
            problem = _idx_problem(plain)
            if problem is not None:
                if plain != src:  # a derived copy: never leave a bad one behind
                    plain.unlink()
                raise paths.damaged(name, src, problem, _idx_source(cls, [src]))
        train, test = _read_official(cls, tv_root, name, "IDX files", raw,
                                     _idx_source(cls, sources))
        return {
            "checksum": status,
            "x_train": train.data.unsqueeze(1).contiguous(), "y_train": train.targets.long(),
            "x_test": test.data.unsqueeze(1).contiguous(), "y_test": test.targets.long(),
            "classes": list(cls.classes),
            "reader": f"torchvision.datasets.{cls_name}",
        }

    blob, written = _decoded(cache, fp, decode)
    bad = mismatched() if verify and blob["checksum"] == "mismatch" else []
    if bad:  # decoded earlier with verify_checksum: false
        raise paths.checksum_error(name, bad, "md5", _idx_source(cls, bad))
    return _raw(blob, written, files=raw, downloaded=downloaded)


def _download_idx(name: str, cls: type, target: Path, folder: str) -> Path:
    raw = target / cls.__name__ / "raw"
    how = (f"Copy the four files (as published, .gz or gunzipped) into {raw}, e.g. "
           f"`mkdir -p {raw} && cp <copy>/{cls.__name__}/raw/*.gz {raw}/`.")
    return _download(name, cls, target, folder, [f"{f}.gz" for f in _IDX_FILES], raw, how)


def _download(name: str, cls: type, target: Path, label: str, files: list[str], where: Path,
              how: str) -> Path:
    """Fetch a set with torchvision's ``cls(..., download=True)`` into ``target`` (or its
    writable twin) and return that root; offline or on failure, the DataUnavailableError
    naming ``files``, the folder ``where`` they belong and ``how`` to place them."""
    if paths.offline():
        raise paths.unavailable(name, files, where, how)
    dl_root = paths.writable_twin(target, label)
    try:
        with paths.socket_timeout(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(str(dl_root), train=True, download=True)
    except Exception as exc:
        raise paths.unavailable(
            name, files, where, how, reason=f"downloading them failed ({_short(exc)})"
        ) from None
    return dl_root


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)


def _tvd():
    """torchvision's dataset classes, imported on first use: importing torchvision takes
    about 2 s (it pulls in torch._dynamo), which suites without images should not pay."""
    from torchvision import datasets

    return datasets


def _cifar10() -> type:
    return _tvd().CIFAR10


def _unverified_cifar10() -> type:
    """torchvision's CIFAR10 reader with its md5 checks off (used only when the batches do not
    match the published md5s, e.g. tiny synthetic batches in tests; recorded in info)."""
    base = _cifar10()
    return type("_UnverifiedCIFAR10", (base,), {
        "train_list": [[f, None] for f, _ in base.train_list],
        "test_list": [[f, None] for f, _ in base.test_list],
        "meta": {**base.meta, "md5": None},
    })


def _cifar_files() -> list[tuple[str, str]]:
    cls = _cifar10()
    return [(f, m) for f, m in cls.train_list + cls.test_list] + [
        (cls.meta["filename"], cls.meta["md5"])
    ]


def _cifar_root(candidates: list[Path], folder: str) -> tuple[Path | None, Path | None]:
    """(root holding cifar-10-batches-py/ complete, or root holding the .tar.gz). Cache twins
    of the candidates are searched too: that is where a read-only folder's archive was
    extracted, or a download went."""
    cifar = _cifar10()
    names = [f for f, _ in _cifar_files()]
    for root in [*candidates, *(paths.cache_twin(c, folder) for c in candidates)]:
        batches = root / cifar.base_folder
        if all((batches / f).is_file() for f in names):
            return root, None
    for root in candidates:
        if (root / cifar.filename).is_file():
            return None, root
    return None, None


def _extract_cifar(archive_root: Path, folder: str) -> Path:
    """Extract the archive next to it (or into the cache twin), via a temporary folder so an
    interrupted extraction never leaves batches that look complete."""
    cifar = _cifar10()
    work = paths.writable_twin(archive_root, folder)
    work.mkdir(parents=True, exist_ok=True)
    target = work / cifar.base_folder
    tmp = Path(tempfile.mkdtemp(prefix=".kanbench-extract-", dir=work))
    try:
        with tarfile.open(archive_root / cifar.filename, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / cifar.base_folder).is_dir():
            raise DatasetError(f"dataset 'cifar10': {archive_root / cifar.filename} has "
                               f"no {cifar.base_folder}/ folder; is it the CIFAR-10 "
                               f"python archive?")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / cifar.base_folder, target)
    except (OSError, tarfile.TarError) as exc:
        raise paths.damaged("cifar10", archive_root / cifar.filename,
                            f"cannot be extracted: {_short(exc)}", cifar.url) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return work


def _load_cifar(name: str, data_dir: Path | None, verify: bool) -> _Raw:
    cifar = _cifar10()
    base = paths.resolve_data_dir(data_dir)
    folder = "cifar10"
    candidates = [base / folder, base]
    root, archive_root = _cifar_root(candidates, folder)
    downloaded = False
    if root is None and archive_root is not None:
        root = _extract_cifar(archive_root, folder)
    if root is None:
        root = _download_cifar(name, base / folder, folder)
        downloaded = True
    batches = root / cifar.base_folder
    sources = [batches / f for f, _ in _cifar_files()]
    work = paths.writable_twin(root, folder)
    cache = work / CACHE_NAME
    fp = [str(root.resolve()), *paths.fingerprint(sources)]

    def mismatched() -> list[Path]:
        return [batches / f for f, m in _cifar_files()
                if paths.checksum_status(batches / f, {"md5": m}) == "mismatch"]

    def decode() -> dict[str, Any]:
        bad = mismatched()
        if bad and verify:
            raise paths.checksum_error(name, bad, "md5", cifar.url)
        status = "mismatch" if bad else "verified"
        cls = _unverified_cifar10() if bad else cifar
        train, test = _read_official(cls, root, name, "CIFAR-10 batches", batches,
                                     cifar.url)
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        return {
            "checksum": status,
            "x_train": as_t(train.data), "y_train": torch.tensor(train.targets, dtype=torch.long),
            "x_test": as_t(test.data), "y_test": torch.tensor(test.targets, dtype=torch.long),
            "classes": list(train.classes),
            "reader": "torchvision.datasets." + ("CIFAR10 (md5 checks off)" if bad else "CIFAR10"),
        }

    blob, written = _decoded(cache, fp, decode)
    bad = mismatched() if verify and blob["checksum"] == "mismatch" else []
    if bad:  # decoded earlier with verify_checksum: false
        raise paths.checksum_error(name, bad, "md5", cifar.url)
    return _raw(blob, written, files=batches, downloaded=downloaded)


def _download_cifar(name: str, target: Path, label: str) -> Path:
    cifar = _cifar10()
    folder = target / cifar.base_folder
    how = (f"Download {cifar.url} elsewhere and put it in {target} (it is extracted "
           f"on first use), or extract it so that {folder} holds the batches.")
    return _download(name, cifar, target, label, [f for f, _ in _cifar_files()], folder, how)


# --------------------------------------------------------------------------------------------
# preprocessing shared by the three sets


@dataclasses.dataclass(frozen=True)
class _Options:
    resize: int | None
    pca: int | None
    max_train: int | None
    normalize: str
    verify_checksum: bool


def _positive_int(name: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetOptionError(key, f"dataset '{name}': option '{key}' must be a positive "
                                      f"integer or null, got {value!r}")
    return value


def _options(name: str, resize: Any = None, pca: Any = None, max_train: Any = None,
             normalize: Any = "feature", verify_checksum: Any = True) -> _Options:
    """The options checked before any file is looked for (a typo costs no download)."""
    if normalize not in ("feature", "channel"):
        raise DatasetOptionError("normalize", f"dataset '{name}': option 'normalize' must be "
                                              f"'feature' or 'channel', got {normalize!r}")
    opts = _Options(_positive_int(name, "resize", resize), _positive_int(name, "pca", pca),
                    _positive_int(name, "max_train", max_train), normalize,
                    checksum_flag(name, verify_checksum))
    if normalize == "channel" and opts.pca is not None:
        raise DatasetOptionError("normalize", f"dataset '{name}': 'normalize: channel' cannot be "
                                              f"combined with 'pca' (components have no "
                                              f"channels); use 'feature'")
    return opts


def _resize(x: torch.Tensor, side: int, chunk: int = 8192) -> tuple[torch.Tensor, str]:
    """uint8/float (N, C, H, W) -> float32 (N, C, side, side) in [0, 1]."""
    h = x.shape[-1]
    mode = "area" if side <= h else "bilinear"
    out = []
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].float().div_(255.0)
        if side != h:
            kwargs = {"align_corners": False} if mode == "bilinear" else {}
            part = F.interpolate(part, size=(side, side), mode=mode, **kwargs)
        out.append(part)
    return torch.cat(out) if out else x.float(), mode


def _prepare(name: str, raw: _Raw, split: SplitSpec, opts: _Options) -> Dataset:
    resize, n_pca, max_train, normalize = opts.resize, opts.pca, opts.max_train, opts.normalize
    n_classes = len(raw.classes)
    info = dict(raw.info)
    c, h, w = (int(s) for s in raw.x_train.shape[1:])
    info.update(image_shape=[c, h, w], classes=raw.classes)

    x_pool, y_pool = raw.x_train, raw.y_train
    info["n_train_official"] = len(y_pool)
    if max_train is not None and max_train < len(y_pool):
        # the stratified validation split needs at least one row per class on each side
        need = math.ceil(n_classes / min(split.val_size, 1 - split.val_size))
        if max_train < need:
            raise DatasetOptionError("max_train", f"dataset '{name}': max_train={max_train} is "
                                     f"too small for stratified train/validation parts of "
                                     f"{n_classes} classes with val_size {split.val_size:g}; "
                                     f"use at least {need}")
        keep, _ = train_test_split(np.arange(len(y_pool)), train_size=max_train,
                                   random_state=split.seed, stratify=y_pool.numpy())
        keep = torch.from_numpy(np.sort(keep))
        x_pool, y_pool = x_pool[keep], y_pool[keep]
        info["max_train"] = f"{max_train} (stratified subsample of the official training set, " \
                            f"seed {split.seed}, before the validation split)"
    else:
        info["max_train"] = None

    side = resize if resize is not None else h
    x_tr, mode = _resize(x_pool, side)
    x_te, _ = _resize(raw.x_test, side)
    info["resize"] = (f"{side}x{side} ({mode} interpolation, from {h}x{w})"
                      if resize is not None and resize != h else None)
    info["input_shape"] = [c, side, side]
    info["pixels"] = "uint8 / 255 in [0, 1]; flattened channel-major (C, H, W)"

    ds = split_and_scale(
        name, "classification", x_tr.reshape(len(x_tr), -1).numpy(), y_pool.numpy(),
        split.model_copy(update={"scale": "none"}),
        x_test=x_te.reshape(len(x_te), -1).numpy(), y_test=raw.y_test.numpy(), info=info,
    )
    x_train, x_val, x_test = ds.x_train, ds.x_val, ds.x_test

    if n_pca is not None:
        limit = min(x_train.shape[0], x_train.shape[1])
        if n_pca > limit:
            raise DatasetOptionError("pca", f"dataset '{name}': pca={n_pca} exceeds "
                                            f"min(training rows, features) = {limit}")
        model = PCA(n_components=n_pca, random_state=split.seed).fit(x_train.numpy())
        x_train, x_val, x_test = (torch.from_numpy(model.transform(a.numpy()).astype(np.float32))
                                  for a in (x_train, x_val, x_test))
        ds.info["pca"] = (f"{n_pca} components fitted on the training part only (explained "
                          f"variance {float(model.explained_variance_ratio_.sum()):.4f})")
    else:
        ds.info["pca"] = None

    if split.scale == "standard":
        if normalize == "channel":
            per = x_train.reshape(len(x_train), c, -1).double()
            mean = per.mean(dim=(0, 2))
            std = per.std(dim=(0, 2), unbiased=False).clamp_min(1e-12)
            del per
            mean32, std32 = mean.float()[:, None], std.float()[:, None]
            shift = lambda a: ((a.reshape(len(a), c, -1) - mean32)  # noqa: E731
                               / std32).reshape(len(a), -1)
            x_train, x_val, x_test = shift(x_train), shift(x_val), shift(x_test)
            ds.info["scaling"] = "per channel: one mean/std per colour channel (train statistics)"
        else:
            wide = x_train.double()  # statistics in float64, the transform in float32
            mean, std = wide.mean(dim=0), wide.std(dim=0, unbiased=False)
            del wide
            std = torch.where(std > 0, std, torch.ones_like(std))
            mean32, std32 = mean.float(), std.float()
            shift = lambda a: (a - mean32) / std32  # noqa: E731
            x_train, x_val, x_test = shift(x_train), shift(x_val), shift(x_test)
            ds.info["scaling"] = ("standard per input feature (train statistics; constant "
                                  "features only centred)")
    ds.info["normalize"] = normalize if split.scale == "standard" else None
    return dataclasses.replace(ds, x_train=x_train.contiguous(), x_val=x_val.contiguous(),
                               x_test=x_test.contiguous(), n_classes=n_classes)


# --------------------------------------------------------------------------------------------
# registrations


@dataset("mnist", "classification",
         "MNIST handwritten digits: 60000 train + 10000 official test, 28x28 grey -> 784, "
         "10 classes", options=OPTIONS)
def load_mnist(split: SplitSpec, data_dir: Path | None = None, **options: Any) -> Dataset:
    opts = _options("mnist", **options)
    raw = _load_idx("mnist", _tvd().MNIST, "mnist", data_dir, opts.verify_checksum)
    return _prepare("mnist", raw, split, opts)


@dataset("fashion_mnist", "classification",
         "Fashion-MNIST (Zalando): 60000 train + 10000 official test, 28x28 grey -> 784, "
         "10 classes", options=OPTIONS)
def load_fashion_mnist(split: SplitSpec, data_dir: Path | None = None,
                       **options: Any) -> Dataset:
    opts = _options("fashion_mnist", **options)
    raw = _load_idx("fashion_mnist", _tvd().FashionMNIST, "fashion-mnist", data_dir,
                    opts.verify_checksum)
    return _prepare("fashion_mnist", raw, split, opts)


@dataset("cifar10", "classification",
         "CIFAR-10: 50000 train + 10000 official test, 32x32 RGB -> 3072, 10 classes",
         options=OPTIONS)
def load_cifar10(split: SplitSpec, data_dir: Path | None = None, **options: Any) -> Dataset:
    opts = _options("cifar10", **options)
    return _prepare("cifar10", _load_cifar("cifar10", data_dir, opts.verify_checksum), split,
                    opts)
