"""Image loaders on tiny files written in the real formats (gzipped IDX, CIFAR pickles)."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from bench.datasets import SplitSpec, load_dataset, paths, vision
from bench.errors import DatasetError, DataUnavailableError

N_TRAIN, N_TEST = 60, 20


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes outside tmp_path or reaches the network."""
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    monkeypatch.delenv("KANBENCH_DATA", raising=False)


def _images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return images, labels.astype(np.uint8)


def write_idx(raw: Path, *, gz: bool = True, side: int = 28) -> dict[str, np.ndarray]:
    """The four MNIST files in IDX format (big-endian header) under the names torchvision
    expects; returns the arrays written."""
    raw.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = _images(N_TRAIN, (side, side), 1)
    x_te, y_te = _images(N_TEST, (side, side), 2)
    blobs = {
        "train-images-idx3-ubyte": struct.pack(">IIII", 0x803, N_TRAIN, side, side) + x_tr.tobytes(),
        "train-labels-idx1-ubyte": struct.pack(">II", 0x801, N_TRAIN) + y_tr.tobytes(),
        "t10k-images-idx3-ubyte": struct.pack(">IIII", 0x803, N_TEST, side, side) + x_te.tobytes(),
        "t10k-labels-idx1-ubyte": struct.pack(">II", 0x801, N_TEST) + y_te.tobytes(),
    }
    for name, blob in blobs.items():
        if gz:
            with gzip.open(raw / f"{name}.gz", "wb") as f:
                f.write(blob)
        else:
            (raw / name).write_bytes(blob)
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def write_cifar(folder: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 python batches: dicts with 'data' (N, 3072) uint8 rows (R, G, B planes) and
    'labels'; batches.meta with 'label_names'."""
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = _images(50, (3072,), 3)
    x_te, y_te = _images(N_TEST, (3072,), 4)
    for i in range(5):
        part = slice(10 * i, 10 * (i + 1))
        batch = {"batch_label": f"training batch {i + 1} of 5", "data": x_tr[part],
                 "labels": y_tr[part].tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": x_te, "labels": y_te.tolist()}))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


RAW = SplitSpec(scale="none")


def load(name: str, *args, **options):
    """Generated files cannot match the published md5s: load them with the check off."""
    return load_dataset(name, *args, verify_checksum=False, **options)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST


def test_mnist_gz_through_torchvision(tmp_path):
    data = tmp_path / "data"
    arrays = write_idx(data / "mnist" / "MNIST" / "raw")
    ds = load("mnist", RAW, data_dir=data)
    assert (ds.in_dim, ds.n_classes, ds.task, ds.metric) == (784, 10, "classification", "accuracy")
    assert len(ds.x_train) + len(ds.x_val) == N_TRAIN and len(ds.x_test) == N_TEST
    assert ds.info["split"] == "official" and ds.info["checksum"] == "mismatch"
    # the official test set keeps its order; pixels are uint8 / 255, flattened row-major
    expected = arrays["x_test"].reshape(N_TEST, -1) / 255.0
    assert torch.allclose(ds.x_test, torch.tensor(expected, dtype=torch.float32))
    assert ds.y_test.tolist() == arrays["y_test"].tolist()
    # writable data folder: the decoded cache lies next to the data
    assert Path(ds.info["decoded_cache"]) == data / "mnist" / "MNIST" / vision.CACHE_NAME
    assert (data / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_checksum_mismatch_is_an_error_unless_opted_out(tmp_path):
    data = tmp_path / "data"
    raw = data / "mnist" / "MNIST" / "raw"
    write_idx(raw)
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", RAW, data_dir=data)
    message = str(err.value)
    for part in (str(raw / "train-images-idx3-ubyte.gz"), "published md5 checksum",
                 "Delete", tvd.MNIST.mirrors[0], "verify_checksum: false"):
        assert part in message, message
    assert _no_chained_traceback(err.value)
    assert not (data / "mnist" / "MNIST" / vision.CACHE_NAME).exists()  # nothing decoded
    assert load("mnist", RAW, data_dir=data).info["checksum"] == "mismatch"
    # the cache decoded with the check off does not let a checked load through
    with pytest.raises(DatasetError, match="published md5 checksum"):
        load_dataset("mnist", RAW, data_dir=data)


def _publish(monkeypatch, raw: Path) -> None:
    """Make the generated files' md5s the published ones."""
    monkeypatch.setattr(tvd.MNIST, "resources", [
        (p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in sorted(raw.glob("*.gz"))])


def _damage(path: Path, how: str) -> None:
    blob = path.read_bytes()
    middle = len(blob) // 2
    if how == "truncated":
        blob = blob[:middle]
    elif how == "bit_flip":
        blob = blob[:middle] + bytes([blob[middle] ^ 0x10]) + blob[middle + 1:]
    elif how == "short_content":  # a sound gzip stream of a truncated IDX file
        blob = gzip.compress(gzip.decompress(blob)[:-100])
    else:  # an error page saved under the file's name
        blob = b"<html><body>404 Not Found</body></html>"
    path.write_bytes(blob)


@pytest.mark.parametrize("how", ["truncated", "bit_flip", "not_gzip", "short_content"])
def test_damaged_gz_is_one_message(tmp_path, monkeypatch, how):
    data = tmp_path / "data"
    raw = data / "mnist" / "MNIST" / "raw"
    write_idx(raw)
    _publish(monkeypatch, raw)
    bad = raw / "t10k-images-idx3-ubyte.gz"
    _damage(bad, how)
    with pytest.raises(DatasetError) as err:  # the check on: only the damaged file is named
        load_dataset("mnist", RAW, data_dir=data)
    assert f"{bad} does not match the published md5 checksum" in str(err.value)
    assert "train-images" not in str(err.value)
    with pytest.raises(DatasetError) as err:  # the check off: decoding finds the damage
        load("mnist", RAW, data_dir=data)
    message = str(err.value)
    for part in (f"dataset 'mnist': {bad} is damaged", "Delete it so it is downloaded again",
                 tvd.MNIST.mirrors[0]):
        assert part in message, message
    assert _no_chained_traceback(err.value)
    assert not (raw / "t10k-images-idx3-ubyte").exists()  # no half-written gunzipped copy
    assert not (data / "mnist" / "MNIST" / vision.CACHE_NAME).exists()


def test_damaged_plain_idx_names_the_file(tmp_path):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    write_idx(raw, gz=False)
    bad = raw / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])
    with pytest.raises(DatasetError) as err:
        load("fashion_mnist", RAW, data_dir=tmp_path / "tv")
    message = str(err.value)
    assert f"{bad} is damaged ({N_TRAIN + 1} bytes; its header describes {N_TRAIN + 8})" in message
    assert tvd.FashionMNIST.mirrors[0] in message and _no_chained_traceback(err.value)


def test_standard_scaling_uses_training_part(tmp_path):
    data = tmp_path / "data"
    write_idx(data / "mnist" / "MNIST" / "raw")
    ds = load("mnist", SplitSpec(), data_dir=data)
    varying = ds.x_train.std(dim=0) > 0
    assert torch.allclose(ds.x_train.mean(dim=0), torch.zeros(784), atol=1e-5)
    assert torch.allclose(ds.x_train.std(dim=0, unbiased=False)[varying], torch.ones(784)[varying],
                          atol=1e-4)
    assert "train statistics" in ds.info["scaling"] and ds.info["normalize"] == "feature"
    channel = load("mnist", SplitSpec(), data_dir=data, normalize="channel")
    assert abs(channel.x_train.mean().item()) < 1e-5
    assert abs(channel.x_train.std(unbiased=False).item() - 1) < 1e-4
    assert "per channel" in channel.info["scaling"]


def test_decoded_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    data = tmp_path / "data"
    raw = data / "mnist" / "MNIST" / "raw"
    write_idx(raw)
    first = load("mnist", RAW, data_dir=data)

    def refuse(*args, **kwargs):
        raise AssertionError("torchvision should not be called when the cache is valid")

    monkeypatch.setattr(tvd.MNIST, "__init__", refuse)
    second = load("mnist", RAW, data_dir=data)
    assert torch.equal(first.x_test, second.x_test) and torch.equal(first.y_train, second.y_train)
    # a changed source file invalidates the cache
    monkeypatch.undo()
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    arrays = write_idx(raw)  # same content, new mtime
    future = time.time() + 10
    for f in raw.glob("*.gz"):
        os.utime(f, (future, future))
    monkeypatch.setattr(tvd.MNIST, "__init__", refuse)
    with pytest.raises(DatasetError, match="should not be called"):  # it rebuilds
        load("mnist", RAW, data_dir=data)
    monkeypatch.undo()
    third = load("mnist", RAW, data_dir=data)
    assert third.y_test.tolist() == arrays["y_test"].tolist()


def test_read_only_folder_decodes_into_cache(tmp_path):
    data = tmp_path / "shared"
    write_idx(data / "mnist" / "MNIST" / "raw")
    before = sorted(p for p in data.rglob("*"))
    folders = [p for p in [data, *data.rglob("*")] if p.is_dir()]
    for d in folders:
        d.chmod(0o555)
    try:
        ds = load("mnist", RAW, data_dir=data)
        again = load("mnist", RAW, data_dir=data)
    finally:
        for d in folders:
            d.chmod(0o755)
    assert sorted(p for p in data.rglob("*")) == before  # nothing written next to the data
    cache = Path(ds.info["decoded_cache"])
    assert cache.is_file() and (tmp_path / "cache") in cache.parents
    assert torch.equal(ds.x_test, again.x_test)


def test_fashion_mnist_plain_files_in_data_dir_root(tmp_path, monkeypatch):
    """A folder torchvision itself filled (``<dir>/FashionMNIST/raw``, gunzipped) works too,
    found through $KANBENCH_DATA when data_dir is None."""
    data = tmp_path / "tv"
    arrays = write_idx(data / "FashionMNIST" / "raw", gz=False)
    monkeypatch.setenv("KANBENCH_DATA", str(data))
    assert paths.default_data_dir() == data
    ds = load("fashion_mnist", RAW)
    assert ds.info["source"] == "torchvision.datasets.FashionMNIST"
    assert ds.info["checksum"].startswith("unknown")
    assert ds.y_test.tolist() == arrays["y_test"].tolist()
    assert ds.info["classes"][0] == "T-shirt/top"


def test_resize_pca_and_max_train(tmp_path):
    data = tmp_path / "data"
    arrays = write_idx(data / "mnist" / "MNIST" / "raw")
    small = load("mnist", RAW, data_dir=data, resize=7)
    assert small.in_dim == 49 and "7x7 (area" in small.info["resize"]
    pooled = arrays["x_test"].reshape(N_TEST, 7, 4, 7, 4).mean(axis=(2, 4)) / 255.0
    assert np.allclose(small.x_test.numpy(), pooled.reshape(N_TEST, -1), atol=1e-6)

    sub = load("mnist", SplitSpec(), data_dir=data, max_train=50)
    assert len(sub.x_train) + len(sub.x_val) == 50 and len(sub.x_test) == N_TEST
    counts = torch.bincount(torch.cat([sub.y_train, sub.y_val]), minlength=10)
    assert counts.tolist() == [5] * 10  # stratified
    assert sub.info["max_train"].startswith("50 (stratified")

    pca = load("mnist", SplitSpec(), data_dir=data, resize=14, pca=5)
    assert pca.in_dim == 5 and pca.info["input_shape"] == [1, 14, 14]
    assert "training part only" in pca.info["pca"]
    assert torch.allclose(pca.x_train.mean(dim=0), torch.zeros(5), atol=1e-5)

    big = load("mnist", RAW, data_dir=data, resize=32)  # enlarging: bilinear
    assert big.in_dim == 1024 and "bilinear" in big.info["resize"]


@pytest.mark.parametrize("options, match", [
    ({"resize": 0}, "resize"),
    ({"pca": 1000}, "pca=1000"),
    ({"max_train": 49}, "use at least 50"),
    ({"normalize": "global"}, "normalize"),
    ({"normalize": "channel", "pca": 3}, "cannot be combined"),
])
def test_bad_options(tmp_path, options, match):
    data = tmp_path / "data"
    write_idx(data / "mnist" / "MNIST" / "raw")
    with pytest.raises(DatasetError, match=match):
        load("mnist", data_dir=data, **options)
    with pytest.raises(DatasetError, match="does not accept"):
        load_dataset("mnist", data_dir=data, size=7)


# --------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_unverified_batches(tmp_path):
    data = tmp_path / "data"
    arrays = write_cifar(data / "cifar10" / "cifar-10-batches-py")
    ds = load("cifar10", RAW, data_dir=data)
    assert ds.in_dim == 3072 and ds.n_classes == 10
    assert len(ds.x_train) + len(ds.x_val) == 50 and len(ds.x_test) == N_TEST
    assert ds.info["checksum"] == "mismatch" and "md5 checks off" in ds.info["source"]
    # channel-major flattening gives back CIFAR's own row layout (R plane, G plane, B plane)
    assert torch.allclose(ds.x_test, torch.tensor(arrays["x_test"] / 255.0, dtype=torch.float32))
    assert ds.info["classes"][0] == "airplane" and ds.info["image_shape"] == [3, 32, 32]
    gray = load("cifar10", SplitSpec(), data_dir=data, resize=8, normalize="channel")
    assert gray.in_dim == 3 * 8 * 8


def test_cifar10_mismatch_is_an_error(tmp_path):
    data = tmp_path / "data"
    write_cifar(data / "cifar10" / "cifar-10-batches-py")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", RAW, data_dir=data)
    message = str(err.value)
    assert "data_batch_1" in message and "published md5 checksum" in message
    assert tvd.CIFAR10.url in message and "verify_checksum: false" in message
    assert not (data / "cifar10" / vision.CACHE_NAME).exists()  # refused before decoding


def test_cifar10_verified_through_the_real_class(tmp_path, monkeypatch):
    """With checksums that match, torchvision's own CIFAR10 (md5 checks on) reads the files."""
    folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    write_cifar(folder)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(tvd.CIFAR10, "train_list",
                        [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]})
    ds = load_dataset("cifar10", RAW, data_dir=tmp_path / "data")
    assert ds.info["checksum"] == "verified"
    assert ds.info["source"] == "torchvision.datasets.CIFAR10"


def test_cifar10_archive_is_extracted(tmp_path):
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    target = tmp_path / "data" / "cifar10"
    target.mkdir(parents=True)
    with tarfile.open(target / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load("cifar10", RAW, data_dir=tmp_path / "data")
    assert len(ds.x_test) == N_TEST
    assert (target / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar10_archive_in_read_only_folder_is_extracted_once(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cifar(src / "cifar-10-batches-py")
    data = tmp_path / "shared"
    (data / "cifar10").mkdir(parents=True)
    with tarfile.open(data / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    folders = [data, data / "cifar10"]
    for d in folders:
        d.chmod(0o555)
    try:
        first = load("cifar10", RAW, data_dir=data)
        monkeypatch.setattr(vision, "_extract_cifar", lambda *a: pytest.fail("extracted twice"))
        second = load("cifar10", RAW, data_dir=data)
    finally:
        for d in folders:
            d.chmod(0o755)
    assert sorted(p.name for p in (data / "cifar10").iterdir()) == ["cifar-10-python.tar.gz"]
    assert (tmp_path / "cache") in Path(first.info["files"]).parents
    assert torch.equal(first.x_test, second.x_test)


def test_download_through_torchvision(tmp_path, monkeypatch):
    """download=True is what fetches a missing set: simulated here by a stand-in for
    torchvision's fetcher that writes the files where torchvision would (no network)."""
    monkeypatch.delenv("KANBENCH_OFFLINE")
    staged = tmp_path / "staged"
    write_idx(staged)

    def fake_fetch(url, download_root, filename, md5):
        Path(download_root).mkdir(parents=True, exist_ok=True)
        gz = Path(download_root) / filename
        gz.write_bytes((staged / filename).read_bytes())
        with gzip.open(gz) as f:
            (Path(download_root) / filename.removesuffix(".gz")).write_bytes(f.read())

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fake_fetch)
    data = tmp_path / "data"
    ds = load("mnist", RAW, data_dir=data)
    assert ds.info["downloaded"] is True
    assert (data / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    assert load("mnist", RAW, data_dir=data).info["downloaded"] is False

    # a read-only data folder: the download goes to the cache and is found there next time
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    monkeypatch.delenv("KANBENCH_OFFLINE")
    try:
        ds = load("mnist", RAW, data_dir=readonly)
        monkeypatch.setenv("KANBENCH_OFFLINE", "1")
        again = load("mnist", RAW, data_dir=readonly)
    finally:
        readonly.chmod(0o755)
    assert not any(readonly.iterdir())
    assert (tmp_path / "cache") in Path(again.info["files"]).parents
    assert again.info["downloaded"] is False


# --------------------------------------------------------------------------------------------
# missing data: one clear message, fast, never a torchvision traceback


def _no_chained_traceback(exc: BaseException) -> bool:
    """Python prints no inner traceback (torchvision's) above this exception."""
    return exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


@pytest.mark.parametrize("name, expect", [
    ("mnist", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "mnist/MNIST/raw"]),
    ("fashion_mnist", ["train-images-idx3-ubyte.gz", "fashion-mnist/FashionMNIST/raw"]),
    ("cifar10", ["data_batch_1", "test_batch", "cifar10/cifar-10-batches-py",
                 "cifar-10-python.tar.gz"]),
])
def test_offline_missing_data(tmp_path, name, expect):
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as err:
        load_dataset(name, data_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 2
    message = str(err.value)
    assert f"dataset '{name}'" in message and "KANBENCH_OFFLINE" in message
    for part in expect:
        assert part in message
    assert str(tmp_path / "empty") in message
    assert _no_chained_traceback(err.value)
    assert not (tmp_path / "empty").exists()  # offline: nothing created


def test_failed_download_is_one_message(tmp_path, monkeypatch):
    monkeypatch.delenv("KANBENCH_OFFLINE")
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", no_network)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", no_network)
    with pytest.raises(DataUnavailableError, match="downloading them failed") as err:
        load_dataset("mnist", data_dir=tmp_path / "d")
    assert calls and "Name or service not known" in str(err.value)
    assert "Copy the four files" in str(err.value) and _no_chained_traceback(err.value)
    with pytest.raises(DataUnavailableError, match="downloading them failed"):
        load_dataset("cifar10", data_dir=tmp_path / "d")


def test_socket_timeout_is_restored():
    import socket

    before = socket.getdefaulttimeout()
    with paths.socket_timeout(3):
        assert socket.getdefaulttimeout() == 3
    assert socket.getdefaulttimeout() == before
