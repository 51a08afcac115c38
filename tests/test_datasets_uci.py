"""UCI loaders on tiny files written in the original formats (and a file:// 'download')."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.datasets import DatasetOptionError, SplitSpec, load_dataset, tabular
from bench.errors import DatasetError, DataUnavailableError



def load(name: str, *args, **options):
    """Generated files cannot match the published checksums: load them with the check off."""
    return load_dataset(name, *args, verify_checksum=False, **options)

WORK = ["Private", "State-gov", "Self-emp-not-inc"]
EDU = ["Bachelors", "HS-grad", "Masters"]
COUNTRY = ["United-States", "Mexico"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("KANBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")
    monkeypatch.delenv("KANBENCH_DATA", raising=False)


def _adult_line(i: int, rng: np.random.Generator, test: bool, missing: bool = False) -> str:
    label = ">50K" if i % 3 == 0 else "<=50K"
    work = "?" if missing else WORK[i % 3]
    country = "Holand-Netherlands" if test and i == 1 else COUNTRY[i % 2]
    fields = [int(rng.integers(17, 90)), work, int(rng.integers(10000, 500000)), EDU[i % 3],
              int(rng.integers(1, 16)), "Never-married", "Adm-clerical", "Not-in-family",
              "White", "Male" if i % 2 else "Female", int(rng.integers(0, 5000)), 0,
              int(rng.integers(10, 60)), country, label + ("." if test else "")]
    return ", ".join(str(f) for f in fields)


def write_adult(folder: Path, n_train: int = 60, n_test: int = 30) -> None:
    """adult.data: no header, ', ' separators, '?' for missing, trailing blank line;
    adult.test: first line '|1x3 Cross validator', labels end with '.'."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    train = [_adult_line(i, rng, False, missing=i in (5, 7)) for i in range(n_train)]
    test = [_adult_line(i, rng, True, missing=i == 4) for i in range(n_test)]
    (folder / "adult.data").write_text("\n".join(train) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test) + "\n\n")


def write_magic(folder: Path, n: int = 50) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [",".join(f"{v:.4f}" for v in rng.normal(size=10) * 10) + ("," + ("g" if i % 3 else "h"))
            for i in range(n)]
    (folder / "magic04.data").write_text("\n".join(rows) + "\n")


BEANS = ["SEKER", "BARBUNYA", "BOMBAY", "CALI", "HOROZ", "SIRA", "DERMASON"]


def write_drybean(folder: Path, per_class: int = 8) -> Path:
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    names = ["Area", "Perimeter", "MajorAxisLength", "MinorAxisLength", "AspectRation",
             "Eccentricity", "ConvexArea", "EquivDiameter", "Extent", "Solidity", "roundness",
             "Compactness", "ShapeFactor1", "ShapeFactor2", "ShapeFactor3", "ShapeFactor4"]
    lines = ["% Citation Request", "", "@RELATION Dry_Beans_Dataset"]
    for n in names:
        lines.append(f"@ATTRIBUTE {n}\t{'INTEGER' if n in ('Area', 'ConvexArea') else 'REAL'}")
    lines += ["@ATTRIBUTE Class\t{" + ", ".join(BEANS) + "}", "", "@DATA"]
    for i in range(per_class * len(BEANS)):
        values = [str(int(rng.integers(20000, 90000))) if n in ("Area", "ConvexArea")
                  else repr(float(rng.random())) for n in names]
        lines.append(",".join(values) + "," + BEANS[i % len(BEANS)])
    path = folder / "Dry_Bean_Dataset.arff"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_poker(path: Path, per_class: int = 10, seed: int = 3) -> None:
    """CRLF lines: suit (1-4) and rank (1-13) of five cards, then the hand class 0-9; every
    suit and rank appears, so one-hot encoding has all 85 columns."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_class * 10):
        cards = []
        for c in range(5):
            cards += [(i + c) % 4 + 1, (i + 3 * c) % 13 + 1]
        rows.append(",".join(map(str, cards + [i % 10])))
    rng.shuffle(rows)
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())


def test_adult_official_split_and_encoding(tmp_path):
    data = tmp_path / "data"
    write_adult(data / "uci" / "adult")
    ds = load("adult", data_dir=data)
    info = ds.info
    assert info["split"] == "official"
    assert info["rows"] == {"train file": 60, "test file": 30}
    assert info["rows_dropped"] == {"train file": 2, "test file": 1}
    assert len(ds.x_train) + len(ds.x_val) == 58 and len(ds.x_test) == 29
    # 6 numeric + one-hot: workclass 3, education 3, marital 1, occupation 1, relationship 1,
    # race 1, sex 2, country 2 (from the training file only)
    assert info["categorical_features"]["native-country"] == 2
    assert ds.in_dim == 6 + 3 + 3 + 1 + 1 + 1 + 1 + 2 + 2
    assert info["classes"] == ["<=50K", ">50K"] and ds.n_classes == 2  # '.' stripped
    onehot = torch.cat([ds.x_train, ds.x_val, ds.x_test])[:, 6:]
    assert set(onehot.unique().tolist()) <= {0.0, 1.0}  # not standardised
    assert torch.allclose(ds.x_train[:, :6].mean(dim=0), torch.zeros(6), atol=1e-5)
    assert "6 numeric columns" in info["scaling"]
    # a country only in the test file encodes as all zeros
    assert (ds.x_test[:, -2:].sum(dim=1) == 0).sum() == 1
    expected_pos = sum(1 for i in range(30) if i % 3 == 0 and i != 4)
    assert int(ds.y_test.sum()) == expected_pos


def test_magic_drybean_poker(tmp_path):
    data = tmp_path / "data"
    write_magic(data / "uci" / "magic")
    write_drybean(data / "uci" / "drybean" / "DryBeanDataset")
    write_poker(data / "uci" / "poker" / "poker-hand-training-true.data")

    magic = load("magic", data_dir=data)
    assert magic.in_dim == 10 and magic.info["classes"] == ["g", "h"]
    assert magic.info["split"] == "stratified 0.2 test" and len(magic.x_test) == 10
    counts = torch.bincount(magic.y_test, minlength=2).tolist()
    assert counts == [7, 3]  # 33 g / 17 h, stratified

    bean = load("drybean", data_dir=data)
    assert bean.in_dim == 16 and bean.n_classes == 7 and sorted(BEANS) == bean.info["classes"]
    assert len(bean.x_train) + len(bean.x_val) + len(bean.x_test) == 56

    poker = load("poker", data_dir=data)
    assert poker.in_dim == 10 and poker.n_classes == 10 and poker.info["encoding"] == "numeric"
    onehot = load("poker", data_dir=data, encoding="onehot")
    assert onehot.in_dim == 85 and "one-hot" in onehot.info["scaling"]
    assert set(onehot.x_train.unique().tolist()) == {0.0, 1.0}


def test_poker_testing_file(tmp_path):
    data = tmp_path / "data"
    write_poker(data / "uci" / "poker" / "poker-hand-training-true.data")
    with pytest.raises(DataUnavailableError, match="poker-hand-testing.data"):
        load("poker", data_dir=data, test_file=True)
    write_poker(data / "uci" / "poker" / "poker-hand-testing.data", per_class=3, seed=4)
    ds = load("poker", data_dir=data, test_file=True)
    assert ds.info["split"] == "official" and len(ds.x_test) == 30
    assert len(ds.x_train) + len(ds.x_val) == 100


def test_checksum_mismatch_is_an_error_unless_opted_out(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_magic(data / "uci" / "magic")
    path = data / "uci" / "magic" / "magic04.data"
    with pytest.raises(DatasetError) as err:
        load_dataset("magic", data_dir=data)
    message = str(err.value)
    for part in (str(path), "published sha256 checksum", "Delete it so it is downloaded again",
                 "dataset/159/", "verify_checksum: false"):
        assert part in message, message
    assert load("magic", data_dir=data).info["checksum"] == "mismatch"
    with pytest.raises(DatasetOptionError, match="must be true or false") as err:
        load_dataset("magic", data_dir=data, verify_checksum="no")
    assert err.value.option == "verify_checksum"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = tabular.UCI_FILES["magic04.data"]
    monkeypatch.setitem(tabular.UCI_FILES, "magic04.data",
                        tabular.UciFile(entry.rel, entry.sources, {"sha256": digest}))
    assert load_dataset("magic", data_dir=data).info["checksum"] == "verified"


def _magic_rows(n: int = 50) -> list[str]:
    return [",".join(f"{i + j}.5" for j in range(10)) + ("," + "gh"[i % 2]) for i in range(n)]


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"),
    ("\n".join(_magic_rows()).replace("3.5,", "3.5x,", 1), "could not convert string to float"),
    ("\n".join(_magic_rows()[:-1] + [_magic_rows()[-1][:-1] + "q"]),  # a flipped class letter
     "least populated class"),
])
def test_damaged_file_is_one_message(tmp_path, content, problem):
    """With the check on, the checksum catches a damaged file; with it off, reading does."""
    path = tmp_path / "data" / "uci" / "magic" / "magic04.data"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(DatasetError, match="published sha256 checksum"):
        load_dataset("magic", data_dir=tmp_path / "data")
    with pytest.raises(DatasetError) as err:
        load("magic", data_dir=tmp_path / "data")
    message = str(err.value)
    for part in ("dataset 'magic'", str(path), problem, "Delete it so it is downloaded again",
                 "https://archive.ics.uci.edu/dataset/159/"):
        assert part in message, message
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("name, files, page", [
    ("adult", ["adult.data", "adult.test"], "dataset/2/adult"),
    ("magic", ["magic04.data"], "dataset/159/"),
    ("drybean", ["Dry_Bean_Dataset.arff"], "dataset/602/"),
    ("poker", ["poker-hand-training-true.data"], "dataset/158/"),
])
def test_offline_missing_files(tmp_path, name, files, page):
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as err:
        load_dataset(name, data_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 1
    message = str(err.value)
    assert f"dataset '{name}'" in message and page in message and "KANBENCH_OFFLINE" in message
    assert str(tmp_path / "empty" / "uci") in message
    for f in files:
        assert f in message


def _serve(monkeypatch, key: str, source: Path, member: str | None = None,
           checksum_of: Path | None = None) -> None:
    """Point a UCI file's download at a local file:// URL (urllib handles it like http)."""
    entry = tabular.UCI_FILES[key]
    digest = hashlib.sha256((checksum_of or source).read_bytes()).hexdigest()
    monkeypatch.setitem(tabular.UCI_FILES, key, tabular.UciFile(
        entry.rel, ((source.as_uri(), member),), {"sha256": digest}))


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """Online, with a 'remote' folder holding magic04.data (not yet served)."""
    monkeypatch.delenv("KANBENCH_OFFLINE")
    folder = tmp_path / "remote"
    write_magic(folder)
    return folder


def test_download_verifies_and_places_files(tmp_path, monkeypatch, remote):
    _serve(monkeypatch, "magic04.data", remote / "magic04.data")
    data = tmp_path / "data"
    ds = load_dataset("magic", data_dir=data)
    assert ds.info["checksum"] == "verified"
    assert (data / "uci" / "magic" / "magic04.data").read_bytes() == \
        (remote / "magic04.data").read_bytes()

    # a zip archive (Dry Bean is published as one): the member is extracted and verified
    arff = write_drybean(remote / "DryBeanDataset")
    archive = remote / "dry+bean+dataset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(arff, "DryBeanDataset/Dry_Bean_Dataset.arff")
    _serve(monkeypatch, "Dry_Bean_Dataset.arff", archive, member="Dry_Bean_Dataset.arff",
           checksum_of=arff)
    bean = load_dataset("drybean", data_dir=data)
    assert bean.info["checksum"] == "verified" and bean.n_classes == 7
    assert (data / "uci" / "drybean" / "DryBeanDataset" / "Dry_Bean_Dataset.arff").is_file()


def test_download_with_wrong_checksum_is_rejected(tmp_path, monkeypatch, remote):
    entry = tabular.UCI_FILES["magic04.data"]
    monkeypatch.setitem(tabular.UCI_FILES, "magic04.data", tabular.UciFile(
        entry.rel, (((remote / "magic04.data").as_uri(), None),), entry.checksums))
    with pytest.raises(DataUnavailableError, match="checksum mismatch"):
        load_dataset("magic", data_dir=tmp_path / "data")
    folder = tmp_path / "data" / "uci" / "magic"
    assert not folder.exists() or not any(folder.iterdir())  # no partial file left


def test_download_into_cache_when_data_folder_is_read_only(tmp_path, monkeypatch, remote):
    _serve(monkeypatch, "magic04.data", remote / "magic04.data")
    data = tmp_path / "readonly"
    data.mkdir()
    data.chmod(0o555)
    try:
        ds = load_dataset("magic", data_dir=data)
    finally:
        data.chmod(0o755)
    assert not any(data.iterdir())
    cached = tmp_path / "cache" / "uci" / "magic" / "magic04.data"
    assert ds.info["files"] == [str(cached)]
    monkeypatch.setenv("KANBENCH_OFFLINE", "1")  # found in the cache from now on
    assert load_dataset("magic", data_dir=data).info["files"] == [str(cached)]


def test_unparsable_file_and_bad_options(tmp_path):
    data = tmp_path / "data"
    folder = data / "uci" / "drybean" / "DryBeanDataset"
    folder.mkdir(parents=True)
    (folder / "Dry_Bean_Dataset.arff").write_text("not an arff file\n")
    with pytest.raises(DatasetError, match="Dry_Bean_Dataset.arff is damaged"):
        load("drybean", data_dir=data)
    write_poker(data / "uci" / "poker" / "poker-hand-training-true.data")
    with pytest.raises(DatasetError, match="encoding"):
        load_dataset("poker", data_dir=data, encoding="ordinal")
    with pytest.raises(DatasetError, match="does not accept"):
        load_dataset("magic", data_dir=data, encoding="onehot")


def test_bundled_sets_unchanged():
    ds = load_dataset("iris", SplitSpec())
    assert ds.in_dim == 4 and ds.n_classes == 3 and ds.info["source"].startswith("scikit-learn")
