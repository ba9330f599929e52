"""The Triton kernel tests run on a GPU when there is one, else on CPU tensors in Triton's interpreter."""
import os

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = DEVICE == "cpu"
if INTERPRETED:
    assert os.environ.get("TRITON_INTERPRET") == "1", "tests/conftest.py sets TRITON_INTERPRET=1 without a GPU"
TRITON_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
