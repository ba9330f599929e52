"""Print the requirements pyproject.toml lists (the dependencies, then each extra named on the command line), one
per line, so the Makefile installs from the one list: ``python tools/deps.py test dev``."""
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
unknown = [name for name in sys.argv[1:] if name not in extras]
if unknown:
    sys.exit(f"tools/deps.py: no extra {unknown[0]!r} in pyproject.toml (extras: {', '.join(extras)})")
for requirement in project["dependencies"] + [r for name in sys.argv[1:] for r in extras[name]]:
    print(requirement)
