"""README's drop-in example runs as printed (masked TLAB, MelSpectrogram, CCC loss, one optimiser step)."""
import re
from pathlib import Path


def test_the_drop_in_example_runs():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## Drop-in modules.*?```python\n(.*?)```", readme, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    pred, mask = scope["pred"], scope["mask"]
    assert pred.shape == (4, 16, 2) and (scope["tlab"](scope["feats"], mask)[~mask] == 0).all()
    assert all(p.grad is not None for p in scope["tlab"].parameters())
