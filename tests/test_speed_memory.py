"""bench.speed.memory: the peak-memory measurement of the speed benchmarks."""

from __future__ import annotations

import torch

from bench.speed.memory import peak_bytes, peak_of

MB = 1 << 20


def test_peak_of_counts_live_blocks_in_time_order():
    events = [(3, "b", -4), (1, "a", 4), (2, "b", 8), (4, "c", 2), (5, "a", -4)]
    assert peak_of(events) == 12  # a and b live together, before b is freed


def test_peak_of_ignores_frees_of_blocks_allocated_before():
    assert peak_of([(0, "old", -100), (1, "new", 8), (2, "new", -8)]) == 8
    assert peak_of([]) == 0


def test_cpu_peak_of_a_known_allocation_pattern():
    def pattern():
        a = torch.ones(MB)  # 4 MB
        b = torch.ones(2 * MB)  # 8 MB, both live: 12 MB
        del a
        c = torch.ones(MB // 2)  # 2 MB while b is live: 10 MB
        return b.sum() + c.sum()

    peak = peak_bytes(pattern)
    assert 12 * MB <= peak < 12 * MB + 64 * 1024


def test_cpu_peak_ignores_frees_of_tensors_from_an_earlier_profiled_call():
    """The profiler reports the free of a block it saw allocated in an earlier profiled window:
    counted, the big free would cancel the allocations after it and read 0."""
    kept = []
    peak_bytes(lambda: kept.append(torch.ones(4 * MB)))  # 16 MB, allocated while profiled

    def replace():
        kept.clear()  # frees the 16 MB block
        kept.append(torch.ones(MB))  # 4 MB

    peak = peak_bytes(replace)
    assert 4 * MB <= peak < 4 * MB + 64 * 1024


def test_train_step_peak_is_stable():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.SiLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    peaks = {peak_bytes(step) for _ in range(4)}
    grads = sum(p.numel() * p.element_size() for p in model.parameters())
    assert len(peaks) == 1 and peaks.pop() >= grads  # the new gradients at least
