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
def every_isa(request):
    """The test once per ISA build of the C++ kernels, switched to it and back after; skipped where this CPU cannot
    run that build (its other builds still run)."""
    if request.param not in cpu_isas():
        pytest.skip(f"this CPU cannot run {request.param}")
    current = _ext.cpu_isa()
    _ext.set_cpu_isa(request.param)
    yield request.param
    _ext.set_cpu_isa(current)
