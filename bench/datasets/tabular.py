"""UCI tabular datasets.

The sets bundled inside scikit-learn (breast_cancer, wine, digits, iris, diabetes) need no
download. The others are read from the original UCI files:

- ``adult``: ``adult/adult.data`` + ``adult/adult.test``, the official split (32561 + 16281
  rows; 30162 + 15060 without missing values); 6 numeric + 8 categorical columns -> 104
  features; 2 classes (<=50K, >50K).
- ``magic``: ``magic/magic04.data``, 19020 rows (g 12332, h 6688); 10 numeric features.
- ``drybean``: ``drybean/DryBeanDataset/Dry_Bean_Dataset.arff``, 13611 rows; 16 numeric
  features; 7 classes.
- ``poker``: ``poker/poker-hand-training-true.data``, 25010 rows; 10 features (suit and rank of
  5 cards; ``encoding: onehot`` gives 85); 10 classes, 0:12493 ... 9:5. With
  ``test_file: true`` the 1,000,000-row ``poker/poker-hand-testing.data`` is the test set.

(paths under ``<data_dir>/uci/``, the layout of ``shared/data/uci``)

Protocol (the public tabular KAN benchmark's, recorded in ``Dataset.info``): rows with a
missing value (``?`` in Adult) are dropped; categorical columns are one-hot encoded with the
categories seen in the training file (a category seen only in the test file encodes as all
zeros); numeric columns are standardised with training-part statistics, one-hot columns are
left as 0/1 (``split.scale: none`` leaves everything unscaled); the split is Adult's official
train/test split, otherwise a stratified ``split.test_size`` test split with ``split.seed``;
validation is carved from the training part (stratified, ``split.val_size``).

A missing file is downloaded from the UCI repository unless ``KANBENCH_OFFLINE=1`` and kept
only if its checksum matches (md5 for Adult, as published; sha256 for the others). When the
data folder is read-only, downloads go to ``$KANBENCH_CACHE/uci/`` (searched too). A local file
whose checksum differs is refused with a :class:`~bench.errors.DatasetError` naming it, unless
the dataset entry opts out with the option ``verify_checksum: false`` (accepted by every
loader here that reads files; recorded as ``checksum: mismatch`` and part of every run's key).
A file that cannot be parsed (empty, non-numeric values, an unknown class) is one DatasetError
naming it and saying how to replace it.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn import datasets as skd

from bench.datasets import paths
from bench.datasets.base import Dataset, SplitSpec, split_and_scale
from bench.datasets.registry import DatasetOptionError, checksum_flag, dataset
from bench.errors import DatasetError

_BUNDLED = {
    # name: (sklearn loader, task, description)
    "breast_cancer": (skd.load_breast_cancer, "classification",
                      "UCI Breast Cancer Wisconsin (diagnostic): 569 x 30, 2 classes"),
    "wine": (skd.load_wine, "classification", "UCI Wine: 178 x 13, 3 classes"),
    "digits": (skd.load_digits, "classification",
               "UCI optical recognition of handwritten digits (8x8): 1797 x 64, 10 classes"),
    "iris": (skd.load_iris, "classification", "UCI Iris: 150 x 4, 3 classes"),
    "diabetes": (skd.load_diabetes, "regression",
                 "Diabetes (Efron et al. 2004): 442 x 10, disease progression after one year"),
}


def _register_bundled(name: str) -> None:
    load, task, description = _BUNDLED[name]

    @dataset(name, task, description, offline=True)
    def _load(split: SplitSpec, data_dir=None) -> Dataset:
        x, y = load(return_X_y=True)
        return split_and_scale(name, task, x, y, split,
                               info={"source": f"scikit-learn {load.__name__} (bundled)"})


for _name in _BUNDLED:
    _register_bundled(_name)


# ============================================================================================
# UCI tables read from the original files (downloaded from the UCI repository when missing)
_UCI_ML = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_UCI_STATIC = "https://archive.ics.uci.edu/static/public"


@dataclass(frozen=True)
class UciFile:
    """One original file: where it lives under ``<data_dir>/uci``, where to fetch it
    (``(url, zip member or None)``, tried in order) and its published checksums."""

    rel: str
    sources: tuple[tuple[str, str | None], ...]
    checksums: dict[str, str]

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


UCI_FILES: dict[str, UciFile] = {
    "adult.data": UciFile(
        "adult/adult.data",
        ((f"{_UCI_ML}/adult/adult.data", None), (f"{_UCI_STATIC}/2/adult.zip", "adult.data")),
        {"md5": "5d7c39d7b8804f071cdd1f2a7c460872"}),
    "adult.test": UciFile(
        "adult/adult.test",
        ((f"{_UCI_ML}/adult/adult.test", None), (f"{_UCI_STATIC}/2/adult.zip", "adult.test")),
        {"md5": "35238206dfdf7f1fe215bbb874adecdc"}),
    "magic04.data": UciFile(
        "magic/magic04.data",
        ((f"{_UCI_ML}/magic/magic04.data", None),
         (f"{_UCI_STATIC}/159/magic+gamma+telescope.zip", "magic04.data")),
        {"sha256": "e9314b7ebd4b4b59a3b3d65f7316663963777b16a46786877651dbbaa640b36a"}),
    "Dry_Bean_Dataset.arff": UciFile(
        "drybean/DryBeanDataset/Dry_Bean_Dataset.arff",
        ((f"{_UCI_STATIC}/602/dry+bean+dataset.zip", "Dry_Bean_Dataset.arff"),),
        {"sha256": "b2a4a76a2aedfb8ed415adfc1bfc70b5f202cb00cb72e500766e364c14834014"}),
    "poker-hand-training-true.data": UciFile(
        "poker/poker-hand-training-true.data",
        ((f"{_UCI_ML}/poker/poker-hand-training-true.data", None),
         (f"{_UCI_STATIC}/158/poker+hand.zip", "poker-hand-training-true.data")),
        {"sha256": "37becdf87d5f8cbf2b91d6471e965a25b86cb4a6d878c0f94a4025969fca464f"}),
    "poker-hand-testing.data": UciFile(
        "poker/poker-hand-testing.data",
        ((f"{_UCI_ML}/poker/poker-hand-testing.data", None),
         (f"{_UCI_STATIC}/158/poker+hand.zip", "poker-hand-testing.data")),
        {"sha256": "3cd75958e19dd321ed5ca3f7f154c0f6aad544aab9f37731ac545b5f66b232c7"}),
}

UCI_PAGES = {
    "adult": "https://archive.ics.uci.edu/dataset/2/adult",
    "magic": "https://archive.ics.uci.edu/dataset/159/magic+gamma+telescope",
    "drybean": "https://archive.ics.uci.edu/dataset/602/dry+bean+dataset",
    "poker": "https://archive.ics.uci.edu/dataset/158/poker+hand",
}


def _fetch_uci(file: UciFile, dest: Path) -> None:
    """Download ``file`` into ``dest`` from the first source that gives a verified copy."""
    failures: list[str] = []
    for url, member in file.sources:
        try:
            if member is None:
                paths.download_file([url], dest, file.checksums)
                return
            with tempfile.TemporaryDirectory(prefix="kanbench-uci-") as tmp:
                archive = Path(tmp) / "archive.zip"
                paths.download_file([url], archive, {})
                with zipfile.ZipFile(archive) as zf:
                    names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
                    if not names:
                        raise OSError(f"{member} is not in the archive")
                    extracted = Path(tmp) / member
                    extracted.write_bytes(zf.read(names[0]))
                if paths.checksum_status(extracted, file.checksums) == "mismatch":
                    raise OSError(f"{member} from the archive fails its checksum")
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
                part.write_bytes(extracted.read_bytes())
                os.replace(part, dest)
                return
        except Exception as exc:  # download_file's message already names the URL
            text = " ".join(str(exc).split())
            failures.append(text if text.startswith(url) else f"{url}: {text}")
    raise OSError("; ".join(failures))


def _page(file: UciFile) -> str:
    return UCI_PAGES[file.rel.split("/")[0]]


def uci_files(dataset_name: str, keys: list[str], data_dir: Path | None,
              verify: bool = True) -> tuple[list[Path], str]:
    """Local paths of the named UCI files (downloading missing ones when allowed) and the
    combined checksum status ('verified', 'mismatch' or 'unknown'); a mismatch is a
    DatasetError unless ``verify`` is False."""
    base = paths.resolve_data_dir(data_dir) / "uci"
    cached = paths.cache_dir() / "uci"
    files = [UCI_FILES[k] for k in keys]
    found: list[Path | None] = []
    for f in files:
        hit = next((p for p in (base / f.rel, cached / f.rel) if p.is_file()), None)
        found.append(hit)
    missing = [f for f, p in zip(files, found) if p is None]
    if missing:
        folder = base / files[0].rel.rsplit("/", 1)[0]
        names = [f.name for f in files]
        how = (f"Download {', '.join(names)} from {_page(files[0])} and "
               f"copy {'them' if len(names) > 1 else 'it'} into {folder}/ (original file "
               f"names and formats).")
        if paths.offline():
            raise paths.unavailable(dataset_name, names, folder, how)
        for i, (f, p) in enumerate(zip(files, found)):
            if p is not None:
                continue
            dest = base / f.rel if paths.is_writable_dir((base / f.rel).parent) else cached / f.rel
            try:
                _fetch_uci(f, dest)
            except Exception as exc:
                raise paths.unavailable(
                    dataset_name, names, folder, how,
                    reason=f"downloading {f.name} failed ({' '.join(str(exc).split())[:600]})",
                ) from None
            found[i] = dest
    statuses = [paths.checksum_status(p, f.checksums) for f, p in zip(files, found)]
    if "mismatch" in statuses:
        bad = [(f, p) for f, p, s in zip(files, found, statuses) if s == "mismatch"]
        if verify:
            algorithm = "/".join(sorted({a for f, _ in bad for a in f.checksums}))
            raise paths.checksum_error(dataset_name, [p for _, p in bad], algorithm,
                                       _page(bad[0][0]))
        status = "mismatch"
    else:
        status = "verified" if all(s == "verified" for s in statuses) else "unknown"
    return [p for p in found if p is not None], status


def _encode(df: pd.DataFrame, numeric: list[str], categorical: list[str],
            categories: dict[str, list[Any]]) -> np.ndarray:
    blocks = [df[numeric].to_numpy(dtype=np.float64)]
    for col in categorical:
        codes = pd.Index(categories[col]).get_indexer(df[col])  # -1: not a training category
        onehot = np.zeros((len(df), len(categories[col])))
        rows = np.flatnonzero(codes >= 0)
        onehot[rows, codes[rows]] = 1.0
        blocks.append(onehot)
    return np.hstack(blocks)


def table_dataset(name: str, train: pd.DataFrame, target: str, split: SplitSpec, *,
                  test: pd.DataFrame | None = None, categorical: list[str] | tuple[str, ...] = (),
                  info: dict[str, Any] | None = None) -> Dataset:
    """The tabular protocol on data frames: drop rows with missing values, one-hot
    ``categorical`` columns, standardise only the numeric columns (training-part statistics)."""
    categorical = list(categorical)
    numeric = [c for c in train.columns if c != target and c not in categorical]
    record = dict(info or {})
    n_rows = {"train file" if test is not None else "file": len(train)}
    before = len(train)
    train = train.dropna()
    dropped = {"train file" if test is not None else "file": before - len(train)}
    if test is not None:
        n_rows["test file"] = len(test)
        before = len(test)
        test = test.dropna()
        dropped["test file"] = before - len(test)
    categories = {c: sorted(train[c].unique().tolist()) for c in categorical}
    x = _encode(train, numeric, categorical, categories)
    x_test = _encode(test, numeric, categorical, categories) if test is not None else None
    y = train[target].to_numpy()
    y_test = test[target].to_numpy() if test is not None else None
    record.update(
        rows=n_rows, missing_values="rows with a missing value dropped", rows_dropped=dropped,
        numeric_features=numeric,
        categorical_features={c: len(v) for c, v in categories.items()},
        one_hot=("categories of the training file; unseen test categories encode as all zeros"
                 if categorical else None),
        classes=sorted(np.unique(y).tolist()),
    )
    ds = split_and_scale(name, "classification", x, y, split.model_copy(update={"scale": "none"}),
                         x_test=x_test, y_test=y_test, info=record)
    if split.scale == "standard" and numeric:
        k = len(numeric)
        head = ds.x_train[:, :k].double()
        mean, std = head.mean(dim=0), head.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))

        def scale(a: torch.Tensor) -> torch.Tensor:
            out = a.clone()
            out[:, :k] = ((a[:, :k].double() - mean) / std).float()
            return out

        ds = replace(ds, x_train=scale(ds.x_train), x_val=scale(ds.x_val), x_test=scale(ds.x_test))
        ds.info["scaling"] = (f"standard (train statistics) on the {k} numeric columns"
                              + ("; one-hot columns left as 0/1" if categorical else ""))
    elif split.scale == "standard":
        ds.info["scaling"] = "none needed: every column is one-hot 0/1"
    return ds


_ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]
_ADULT_CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship",
                      "race", "sex", "native-country"]


def _read_adult(path: Path) -> pd.DataFrame:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    # adult.test starts with the line "|1x3 Cross validator"; its labels end with "."
    df = pd.read_csv(path, header=None, names=_ADULT_COLUMNS, sep=",", skipinitialspace=True,
                     na_values=["?"], skiprows=1 if first.startswith("|") else 0,
                     skip_blank_lines=True)
    df["income"] = df["income"].astype(str).str.strip().str.rstrip(".")
    return df


def _parsed(name: str, files: list[Path], build: Callable[[], Dataset]) -> Dataset:
    """``build()``, with any failure to read or use ``files`` (a damaged or foreign file:
    pandas, scipy or scikit-learn errors) as one DatasetError naming the file."""
    try:
        return build()
    except (DatasetError, MemoryError):
        raise
    except Exception as exc:
        empty = next((p for p in files if p.stat().st_size == 0), None)
        which = str(empty) if empty else " or ".join(str(p) for p in files)
        text = " ".join(str(exc).split())[:300]
        problem = "it is empty" if empty else type(exc).__name__ + (f": {text}" if text else "")
        raise paths.damaged(name, which, f"cannot be read as the UCI file: {problem}",
                            UCI_PAGES[name]) from None


@dataset("adult", "classification",
         "UCI Adult (census income >50K): official 32561 / 16281 split, rows with missing "
         "values dropped (30162 / 15060), 6 numeric + 8 one-hot categorical -> 104 features",
         options=("verify_checksum",))
def load_adult(split: SplitSpec, data_dir: Path | None = None,
               verify_checksum: bool = True) -> Dataset:
    verify = checksum_flag("adult", verify_checksum)
    (train_path, test_path), status = uci_files("adult", ["adult.data", "adult.test"], data_dir,
                                                verify)
    return _parsed("adult", [train_path, test_path], lambda: table_dataset(
        "adult", _read_adult(train_path), "income", split, test=_read_adult(test_path),
        categorical=_ADULT_CATEGORICAL,
        info={"source": "UCI Adult (adult.data / adult.test)",
              "files": [str(train_path), str(test_path)], "checksum": status,
              "labels": "trailing '.' of adult.test labels removed"}))


_MAGIC_COLUMNS = ["fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long",
                  "fM3Trans", "fAlpha", "fDist", "class"]


@dataset("magic", "classification",
         "UCI MAGIC gamma telescope: 19020 x 10 numeric, 2 classes (g 12332, h 6688)",
         options=("verify_checksum",))
def load_magic(split: SplitSpec, data_dir: Path | None = None,
               verify_checksum: bool = True) -> Dataset:
    (path,), status = uci_files("magic", ["magic04.data"], data_dir,
                                checksum_flag("magic", verify_checksum))
    return _parsed("magic", [path], lambda: table_dataset(
        "magic", pd.read_csv(path, header=None, names=_MAGIC_COLUMNS, sep=","), "class", split,
        info={"source": "UCI MAGIC Gamma Telescope (magic04.data)", "files": [str(path)],
              "checksum": status}))


@dataset("drybean", "classification",
         "UCI Dry Bean: 13611 x 16 numeric shape features, 7 classes",
         options=("verify_checksum",))
def load_drybean(split: SplitSpec, data_dir: Path | None = None,
                 verify_checksum: bool = True) -> Dataset:
    from scipy.io import arff

    (path,), status = uci_files("drybean", ["Dry_Bean_Dataset.arff"], data_dir,
                                checksum_flag("drybean", verify_checksum))

    def build() -> Dataset:
        records, meta = arff.loadarff(str(path))
        df = pd.DataFrame(records)
        target = meta.names()[-1]
        df[target] = df[target].map(lambda v: v.decode() if isinstance(v, bytes) else v)
        return table_dataset("drybean", df, target, split,
                             info={"source": "UCI Dry Bean (Dry_Bean_Dataset.arff, scipy.io.arff)",
                                   "files": [str(path)], "checksum": status})

    return _parsed("drybean", [path], build)


_POKER_COLUMNS = [f"{kind}{i}" for i in range(1, 6) for kind in ("S", "C")] + ["hand"]


def _read_poker(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=None, names=_POKER_COLUMNS, sep=",")


@dataset("poker", "classification",
         "UCI Poker Hand (training file): 25010 x 10 (suit, rank of 5 cards), 10 classes, "
         "highly imbalanced", options=("encoding", "test_file", "verify_checksum"))
def load_poker(split: SplitSpec, data_dir: Path | None = None, encoding: str = "numeric",
               test_file: bool = False, verify_checksum: bool = True) -> Dataset:
    """``encoding``: 'numeric' (10 integer features, standardised; the UCI description calls
    them ordinal) or 'onehot' (suits 4 and ranks 13 one-hot per card: 85 features).
    ``test_file``: use poker-hand-testing.data (1,000,000 rows) as the official test set
    instead of a stratified split of the training file."""
    if encoding not in ("numeric", "onehot"):
        raise DatasetOptionError("encoding", f"dataset 'poker': option 'encoding' must be "
                                             f"'numeric' or 'onehot', got {encoding!r}")
    if not isinstance(test_file, bool):
        raise DatasetOptionError("test_file", f"dataset 'poker': option 'test_file' must be "
                                              f"true or false, got {test_file!r}")
    verify = checksum_flag("poker", verify_checksum)
    keys = ["poker-hand-training-true.data"] + (["poker-hand-testing.data"] if test_file else [])
    found, status = uci_files("poker", keys, data_dir, verify)
    categorical = _POKER_COLUMNS[:-1] if encoding == "onehot" else []
    return _parsed("poker", found, lambda: table_dataset(
        "poker", _read_poker(found[0]), "hand", split,
        test=_read_poker(found[1]) if test_file else None, categorical=categorical,
        info={"source": "UCI Poker Hand", "files": [str(p) for p in found], "checksum": status,
              "encoding": encoding}))
