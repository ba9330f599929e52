import os
import tempfile

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's CPU interpreter; it must be on before they are first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# Runs capped with ATEN_CPU_CAPABILITY (the AVX2 emulation) compile into a cache of their own (aver_fast.cpu).
from aver_fast.cpu import separate_compile_cache  # noqa: E402 (after TRITON_INTERPRET: it imports aver_fast)

separate_compile_cache()

# Measured backend choices go to a folder of this run, never to the user's ~/.cache.
os.environ.setdefault("AVER_FAST_CACHE_DIR", tempfile.mkdtemp(prefix="aver_fast_test_cache_"))

SEED_ENV = "AVER_FAST_TEST_SEED"  # unset: seed 0 (reproducible); N: seed N; "random": a fresh seed per test


@pytest.fixture(autouse=True)
def _seed(request):
    """Every test starts from a fixed torch seed (0, or ``$AVER_FAST_TEST_SEED``), so runs are reproducible;
    ``AVER_FAST_TEST_SEED=random`` draws fresh inputs each run to explore. The seed is printed on failure so any
    failure can be replayed with ``AVER_FAST_TEST_SEED=<seed>``."""
    choice = os.environ.get(SEED_ENV, "0")
    seed = torch.seed() % (2**31) if choice == "random" else int(choice)
    torch.manual_seed(seed)
    request.node.user_properties.append(("seed", seed))
    yield


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        for k, v in item.user_properties:
            if k == "seed":
                item.add_report_section(call.when, "seed", f"torch seed for this test: {v} (replay: {SEED_ENV}={v})")
