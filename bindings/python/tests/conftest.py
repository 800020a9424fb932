"""Shared fixtures: every test must leave no tensorbuf handle alive."""

import gc

import pytest

import tensorbuf


@pytest.fixture(autouse=True)
def no_leaked_handles():
    """Live buffer/tensor/map handles are back to their start value once the
    test's objects are collected (SWIG's live-object check, with the
    library's own count)."""
    gc.collect()
    start = tensorbuf.live_objects()
    yield
    gc.collect()
    assert tensorbuf.live_objects() == start, "the test leaked tensorbuf handles"


@pytest.fixture
def shm():
    """The memory kind for tests that want shareable memory."""
    if not tensorbuf.memory_available("shm"):
        pytest.skip("memfd shared memory is not available in this process")
    return "shm"
