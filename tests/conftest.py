import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's CPU interpreter; it must be on before they are first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    """Fresh random inputs each run, but the seed is printed on failure so a failure can be replayed."""
    seed = torch.seed() % (2**31)
    torch.manual_seed(seed)
    request.node.user_properties.append(("seed", seed))
    yield


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        for k, v in item.user_properties:
            if k == "seed":
                item.add_report_section(call.when, "seed", f"torch seed for this test: {v}")
