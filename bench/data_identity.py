"""The identity of a loaded dataset: a hash of the tensors every model trains and is scored on.

Stored with every run and compared before a stored run is reused, so a result computed on other
data (a corrupted or replaced file, a changed loader) is redone instead of reused.
"""

from __future__ import annotations

import hashlib

_ATTRIBUTE = "_kanbench_content_hash"


def content_hash(data) -> str:
    """SHA-256 (first 20 hex digits) of every split's inputs and targets, with their names,
    dtypes and shapes; computed once per loaded dataset."""
    cached = getattr(data, _ATTRIBUTE, None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for split, tensors in data.splits().items():
        for tensor in tensors:
            t = tensor.detach().cpu().contiguous()
            h.update(f"{split}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(memoryview(t.numpy()).cast("B"))
    digest = h.hexdigest()[:20]
    object.__setattr__(data, _ATTRIBUTE, digest)
    return digest
