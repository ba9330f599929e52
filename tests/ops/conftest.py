import pytest

from aver_fast.ops import _ext

from ._parity import cpu_isas, require_cpp


@pytest.fixture
def restore_isa():
    require_cpp()
    current = _ext.cpu_isa()
    yield
    _ext.set_cpu_isa(current)


@pytest.fixture(params=["default", "avx2", "avx512"])
def every_isa(request, restore_isa):  # noqa: ARG001 (restore_isa: its teardown switches back)
    """The test once per ISA build of the C++ kernels, switched to it (and back after, by restore_isa); skipped where
    this CPU cannot run that build (its other builds still run)."""
    if request.param not in cpu_isas():
        pytest.skip(f"this CPU cannot run {request.param}")
    _ext.set_cpu_isa(request.param)
    return request.param
