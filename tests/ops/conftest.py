import pytest

from aver_fast.ops import _ext

from ._parity import require_cpp


@pytest.fixture
def restore_isa():
    require_cpp()
    current = _ext.cpu_isa()
    yield
    _ext.set_cpu_isa(current)
