"""The user-facing error family: every message says what went wrong and what to do."""

from __future__ import annotations


class KanbenchError(Exception):
    """Base of every error the command line reports as one message, without a traceback."""


class SuiteError(KanbenchError):
    """A suite file that cannot be used: names the file, the key and what was expected."""

    def __init__(self, path: str, key: str | None, message: str):
        self.path = path
        self.key = key
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {message}")


class DatasetError(KanbenchError):
    """Unknown dataset, bad dataset option, or data that cannot be loaded."""


class DataUnavailableError(DatasetError):
    """Data files are missing and cannot be downloaded (offline): says where to put them."""


class BudgetError(KanbenchError):
    """A parameter budget that cannot be met within its tolerance."""

    def __init__(self, message: str, model: str | None = None):
        super().__init__(message)
        self.model = model


class StoreError(KanbenchError):
    """A results store that cannot be opened or read."""
