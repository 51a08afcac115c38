"""The real data files (shared/data, see its MANIFEST.md) through the real loaders.

Run with ``pytest -m slow tests/test_real_data.py``. The folder is ``$KANBENCH_SHARED_DATA``,
default ``<repo>/../shared/data``; a set whose files are absent is skipped with the reason.
Counts are the published ones (MANIFEST.md; MNIST per-class counts from the original files).
The shared folder is read-only in spirit: the test checks that loading wrote nothing there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.datasets import SplitSpec, load_dataset

pytestmark = pytest.mark.slow

SHARED = Path(os.environ.get("KANBENCH_SHARED_DATA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"no shared data folder at {SHARED} (set KANBENCH_SHARED_DATA)")
    before = _snapshot(SHARED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KANBENCH_CACHE", str(tmp_path_factory.mktemp("kanbench-cache")))
        mp.setenv("KANBENCH_OFFLINE", "1")
        yield SHARED
    assert _snapshot(SHARED) == before, "loading wrote into the shared data folder"


def _need(root: Path, *files: str) -> None:
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        pytest.skip(f"real data absent from {root}: {', '.join(missing)}")


def _counts(ds) -> tuple[list[int], list[int]]:
    k = ds.n_classes
    train = torch.bincount(torch.cat([ds.y_train, ds.y_val]), minlength=k).tolist()
    return train, torch.bincount(ds.y_test, minlength=k).tolist()


def test_mnist(shared):
    _need(shared, "mnist/MNIST/raw/train-images-idx3-ubyte.gz")
    ds = load_dataset("mnist", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified"
    assert (ds.in_dim, ds.n_classes) == (784, 10)
    assert len(ds.x_train) + len(ds.x_val) == 60000 and len(ds.x_test) == 10000
    train, test = _counts(ds)
    assert train == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    small = load_dataset("mnist", SplitSpec(), data_dir=shared, resize=7, max_train=6000)
    assert small.in_dim == 49 and len(small.x_train) + len(small.x_val) == 6000
    assert len(small.x_test) == 10000


def test_fashion_mnist(shared):
    _need(shared, "fashion-mnist/FashionMNIST/raw/train-images-idx3-ubyte.gz")
    ds = load_dataset("fashion_mnist", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified"
    assert _counts(ds) == ([6000] * 10, [1000] * 10)


def test_cifar10(shared):
    _need(shared, "cifar10/cifar-10-batches-py/data_batch_1")
    ds = load_dataset("cifar10", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified" and ds.in_dim == 3072
    assert _counts(ds) == ([5000] * 10, [1000] * 10)


def test_adult(shared):
    _need(shared, "uci/adult/adult.data", "uci/adult/adult.test")
    ds = load_dataset("adult", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified"
    assert ds.info["rows"] == {"train file": 32561, "test file": 16281}
    assert ds.info["rows_dropped"] == {"train file": 32561 - 30162, "test file": 16281 - 15060}
    assert ds.in_dim == 104 and ds.info["classes"] == ["<=50K", ">50K"]
    assert _counts(ds) == ([22654, 7508], [11360, 3700])


def test_magic(shared):
    _need(shared, "uci/magic/magic04.data")
    ds = load_dataset("magic", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified" and ds.in_dim == 10
    train, test = _counts(ds)
    assert [a + b for a, b in zip(train, test)] == [12332, 6688]  # g, h
    assert len(ds.x_test) == 3804  # stratified 20 %


def test_drybean(shared):
    _need(shared, "uci/drybean/DryBeanDataset/Dry_Bean_Dataset.arff")
    ds = load_dataset("drybean", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified" and ds.in_dim == 16
    published = {"BARBUNYA": 1322, "BOMBAY": 522, "CALI": 1630, "DERMASON": 3546,
                 "HOROZ": 1928, "SEKER": 2027, "SIRA": 2636}
    train, test = _counts(ds)
    assert dict(zip(ds.info["classes"], (a + b for a, b in zip(train, test)))) == published


def test_poker(shared):
    _need(shared, "uci/poker/poker-hand-training-true.data")
    ds = load_dataset("poker", SplitSpec(), data_dir=shared)
    assert ds.info["checksum"] == "verified" and ds.in_dim == 10
    train, test = _counts(ds)
    assert [a + b for a, b in zip(train, test)] == [12493, 10599, 1206, 513, 93, 54, 36, 6, 5, 5]
    assert load_dataset("poker", SplitSpec(), data_dir=shared, encoding="onehot").in_dim == 85
