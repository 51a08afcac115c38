"""Several stores read as one, for a report that merges them.

A run stored in more than one store (the same configuration run twice, e.g. a suite rerun in a
fresh store) is shown once: the copy that finished last, with its own curves and series. Only
reads: the stores are opened read-only by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.store import Store


class MergedStores:
    """The read interface the reports use (``runs``, ``values``, ``value_names``, ``curves``,
    ``series``, ``path``) over several stores."""

    def __init__(self, stores: list[Store]):
        if not stores:
            raise ValueError("no store to read")
        self.stores = stores
        self.path = Path(stores[0].path) if len(stores) == 1 else \
            " + ".join(str(s.path) for s in stores)
        runs = [s.runs().assign(_source=i) for i, s in enumerate(stores)]
        merged = pd.concat(runs, ignore_index=True) if len(runs) > 1 else runs[0]
        # the copy that finished last wins; ties keep the later store's (listed later)
        merged = merged.sort_values(["finished_at", "_source"], kind="stable")
        merged = merged.drop_duplicates("run_key", keep="last")
        self._source = dict(zip(merged.run_key, merged._source))
        order = {key: i for i, key in enumerate(
            pd.concat([r.run_key for r in runs], ignore_index=True).drop_duplicates())}
        merged = merged.assign(_order=merged.run_key.map(order)).sort_values("_order")
        self._runs = merged.drop(columns=["_source", "_order"]).reset_index(drop=True)

    def _own(self, frames: list[pd.DataFrame]) -> pd.DataFrame:
        """Rows of the stores' tables (one frame per store, in order) that belong to the copy
        of each run shown."""
        kept = [f[f.run_key.map(self._source) == i] for i, f in enumerate(frames) if not f.empty]
        if not kept:
            return frames[0]
        return pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]

    def runs(self) -> pd.DataFrame:
        return self._runs.copy()

    def values(self) -> pd.DataFrame:
        return self._own([s.values() for s in self.stores])

    def value_names(self) -> list[str]:
        return sorted({n for s in self.stores for n in s.value_names()})

    def curves(self) -> pd.DataFrame:
        return self._own([s.curves() for s in self.stores])

    def series(self, *, wide: bool = False, names: Iterable[str] | None = None) -> pd.DataFrame:
        if wide:
            raise NotImplementedError("merged stores give the long series")
        names = None if names is None else tuple(names)
        return self._own([s.series(names=names) for s in self.stores])
