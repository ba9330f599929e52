#!/usr/bin/env bash
# The newest torch and triton users install (make check-newest-torch; CI runs it): builds the extension against them
# in a copy of the working tree (build/newest-torch, so .venv's in-place build is untouched), then runs the test
# suite and the quick GPU build gate there.
# NEWEST_TORCH / NEWEST_TRITON name the releases (the newest on PyPI when this was written). pip runs without the
# machine's pip configuration (PIP_CONFIG_FILE=/dev/null): some machines cap torch at wheels stored on disk.
# torchvision has no release for the newest torch yet: the one test file that needs it (tests/nn/test_backbones.py,
# torchvision's key names) runs in make test only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${NEWEST_TORCH:-torch==2.15.0}
TRITON=${NEWEST_TRITON:-triton==3.9.0}
VENV=$(pwd)/${NEWEST_VENV:-.venv-newest}
TREE=build/newest-torch
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "a venv with $TORCH and $TRITON"
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
export PIP_CONFIG_FILE=/dev/null
"$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=77" wheel
$PY tools/deps.py test export int8 dev | grep -v '^torchvision' > "$VENV/requirements.txt"
"$VENV/bin/python" -m pip install -q "$TORCH" "$TRITON" -r "$VENV/requirements.txt"

step "the working tree, built against it"
rm -rf "$TREE" && mkdir -p "$TREE"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$TREE"
cd "$TREE"
"$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | { grep -v -i "warning\|^ *!!\|^ *\*\|^ *$\|folders in your\|name as your\|with strategy" || true; }
"$VENV/bin/aver-fast" --version

step "the test suite"
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --ignore=tests/nn/test_backbones.py

step "the quick GPU build gate"
"$VENV/bin/aver-fast" check-gpu-build --quick
step "done"
