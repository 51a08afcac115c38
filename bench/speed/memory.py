"""Peak tensor memory of one call (a train step, in the speed benchmarks).

CUDA: ``torch.cuda.max_memory_allocated`` during the call, above what was allocated before it.

CPU has no allocator statistics, so the call runs under ``torch.profiler`` with
``profile_memory=True``, which records PyTorch's allocations and frees with their addresses
(read from the profiler's event tree, ``experimental_event_tree``).
The figure is the peak, in time order, of the bytes allocated *during* the call and not yet
freed. Frees of blocks allocated before the call (a train step's ``zero_grad`` freeing the last
step's gradients) are ignored: the profiler reports them only for blocks it saw allocated in an
earlier profiled window, so counting them made the figure depend on what was profiled before
(measured: the same MLP step read 33.2 MB, 22.2 MB or 0). Tensors only: not Python objects or
allocator caches, which is what differs between implementations.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch


def peak_of(allocations: Iterable[tuple[int, object, int]]) -> int:
    """Peak of the live bytes over ``(time, block, signed size)`` events; a free (size < 0)
    of a block not allocated among these events is ignored."""
    live: dict = {}
    running = peak = 0
    for _, block, size in sorted(allocations, key=lambda e: e[0]):
        if size > 0:
            live[block] = size
            running += size
            peak = max(peak, running)
        elif block in live:
            running -= live.pop(block)
    return peak


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _profiled_allocations(fn: Callable[[], object]) -> list[tuple[int, object, int]]:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    for node in _walk(prof.profiler.kineto_results.experimental_event_tree()):
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            events.append((node.start_time_ns, (str(fields.device), fields.ptr), fields.alloc_size))
    return events


def peak_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Transient peak of tensor memory while ``fn()`` runs on ``device`` (module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    return peak_of(_profiled_allocations(fn))
