import os
import subprocess
import sys

import pytest
import torch

import aver_fast
from aver_fast.ops import _ext, _registry

from ._parity import require_cpp


def test_extension_is_built_and_reports_its_isa():
    require_cpp()
    assert _ext.cpu_isa() in ("default", "avx2", "avx512")


def test_backends_report_names_the_choice_and_reasons():
    require_cpp()
    report = aver_fast.backends()
    assert set(report) == {"tlab_attention", "jca_correlation", "log_mel"}
    on_request = {"jca_correlation": {"cpp"}, "tlab_attention": {"sdpa"}, "log_mel": set()}
    for op, per_device in report.items():  # JCA is GEMM-bound: its C++ op runs only when asked for
        assert per_device["cpu"]["selected"] == ("reference" if op == "jca_correlation" else "cpp")
        assert set(per_device["cpu"]["requested_only"]) == on_request[op]  # TLAB's SDPA pair: automatic on CUDA
        assert not per_device["cuda"]["requested_only"]
        assert per_device["cpu"]["reasons"]["reference"] is None
        assert "CPU tensors only" in per_device["cuda"]["reasons"]["cpp"]
        assert set(per_device["cpu"]["reasons"]) == {"triton", "cpp", "sdpa", "reference"}  # nothing that never runs
        assert (per_device["cpu"]["reasons"]["sdpa"] is None) == (op == "tlab_attention")
        if not torch.cuda.is_available():  # no GPU: Triton is not offered for CUDA tensors
            assert per_device["cuda"]["reasons"]["triton"] in ("no CUDA device is visible",
                                                              _ext.triton_available())
            # the fixed rule's first choice on CUDA without Triton: TLAB's SDPA pair (for calls without gradient)
            assert per_device["cuda"]["selected"] == ("sdpa" if op == "tlab_attention" else "reference")
    half = aver_fast.backends(dtype=torch.float16)  # was: the reference (a silent drop under CPU autocast)
    assert all(half[op]["cpu"]["selected"] == "cpp" for op in half if op != "jca_correlation")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_keyword_and_environment_force_a_backend(backend, monkeypatch):
    require_cpp()
    q = torch.randn(2, 5, 8)
    assert _registry.select("tlab_attention", q.device, q.dtype, backend).name == backend
    monkeypatch.setenv("AVER_FAST_BACKEND", backend)
    assert _registry.select("tlab_attention", q.device, q.dtype).name == backend
    expected = aver_fast.tlab_attention(q, q, q, backend="reference")
    torch.testing.assert_close(aver_fast.tlab_attention(q, q, q), expected)


def test_unavailable_explicit_backend_raises(monkeypatch):
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="'cuda' is not a backend"):
        aver_fast.tlab_attention(q, q, q, backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'cpp' was requested.*n_fft to be a power of two"):
        aver_fast.log_mel(torch.randn(2, 4000), sample_rate=16000, n_fft=400, win_length=400, hop_length=160,
                          n_mels=40, backend="cpp")
    monkeypatch.setenv("AVER_FAST_BACKEND", "nope")
    with pytest.raises(ValueError, match="AVER_FAST_BACKEND='nope'"):
        aver_fast.tlab_attention(q, q, q)


def test_missing_extension_warns_once_and_falls_back_to_reference():
    code = (
        "import sys, warnings\n"
        "sys.modules['aver_fast._C'] = None  # as if the extension was never built\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import aver_fast, torch\n"
        "msgs = [str(x.message) for x in w if 'aver_fast._C' in str(x.message)]\n"
        "assert len(msgs) == 1 and 'pip install --no-build-isolation -e .' in msgs[0], msgs\n"
        "q = torch.randn(2, 4, 8)\n"
        "assert aver_fast.backends()['tlab_attention']['cpu']['selected'] == 'reference'\n"
        "aver_fast.tlab_attention(q, q, q)\n"
        "try:\n"
        "    aver_fast.tlab_attention(q, q, q, backend='cpp')\n"
        "except RuntimeError as e:\n"
        "    assert 'could not be loaded' in str(e)\n"
        "else:\n"
        "    raise AssertionError('explicit cpp backend without the extension must raise')\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AVER_FAST_BACKEND"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_extension_built_for_another_torch_is_not_loaded():
    """setup.py records the torch the extension was built against; another torch at run time means no loading (an
    ABI mismatch can crash) and one warning naming both versions and the rebuild command."""
    assert _ext.build_info() is not None and _ext.build_info()["torch"] == torch.__version__
    code = (
        "import warnings, torch\n"
        "torch.__version__ = '0.0.1'  # as if another torch were installed after the build\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import aver_fast\n"
        "from aver_fast.ops import _ext\n"
        "msgs = [str(x.message) for x in w if 'aver_fast._C' in str(x.message)]\n"
        "assert len(msgs) == 1 and 'built against torch' in msgs[0] and 'torch 0.0.1 is in use' in msgs[0], msgs\n"
        "assert 'pip install --no-build-isolation' in msgs[0] and not _ext.LOADED\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def test_observe_reports_each_op_call_and_wraps_nothing_outside():
    q = torch.randn(2, 5, 8)
    assert _registry.select("tlab_attention", q.device, q.dtype, "reference") is \
        _registry._OPS["tlab_attention"].backends["reference"]  # no wrapper outside observe()
    calls = []
    with _registry.observe(lambda op, backend, seconds: calls.append((op, backend, seconds))):
        out = aver_fast.tlab_attention(q, q, q, backend="reference")
        aver_fast.jca_correlation(q, torch.randn(8, 4), torch.randn(2, 5, 4), backend="reference")
    torch.testing.assert_close(out, aver_fast.tlab_attention(q, q, q, backend="reference"))
    assert [(op, b) for op, b, _ in calls] == [("tlab_attention", "reference"), ("jca_correlation", "reference")]
    assert all(s > 0 for _, _, s in calls)
    aver_fast.tlab_attention(q, q, q)
    assert len(calls) == 2 and not _registry._OBSERVERS
