#!/usr/bin/env bash
# Installs aver_fast the ways users do and checks each from outside the checkout (make check-install; CI runs it).
# Both are built from what is committed (git archive HEAD, as a clone gets it), never from the working tree:
#   1. an sdist built in a bare venv (setuptools only, no torch), then installed (compiled) into a fresh venv;
#   2. a wheel built against .venv's torch, installed into a fresh venv.
# In each venv, from another directory: aver-fast --version and --help, every subpackage imports, make-synthetic
# writes one short video, tlab_attention(backend="cpp") equals the reference, OpenCV's face cascade is there.
# Then a clean source tree must not shadow the installed package silently: importing it from there names the
# problem and the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.14.1}
WORK=$(mktemp -d /tmp/aver-install-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

export_source() { mkdir "$1" && git archive HEAD | tar -x -C "$1"; }
export_source "$WORK/src"

step "sdist in a venv without torch"
$PY -m venv "$WORK/sdist-env"
"$WORK/sdist-env/bin/pip" install -q "setuptools>=77" wheel build
"$WORK/sdist-env/bin/python" -m build --sdist --no-isolation --outdir "$WORK/dist" "$WORK/src" >/dev/null
"$WORK/sdist-env/bin/python" - "$WORK"/dist/*.tar.gz <<'EOF'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
for need in ("csrc/cpu/isa.h", "csrc/ops.cpp", "kernels/tlab_attention.py", "aver_fast/data/dataset.py", "LICENSE",
             "README.md", "docs/commands.md", "tools/aver_build.py", "tools/deps.py"):
    assert any(n.endswith("/" + need) for n in names), f"sdist lacks {need}"
print(f"sdist has {len(names)} files")
EOF

step "wheel"
MAX_JOBS=${MAX_JOBS:-2} .venv/bin/python -m pip wheel -q --no-build-isolation --no-deps --wheel-dir "$WORK/dist" \
  "$WORK/src"

check() {  # $1: venv; runs from $WORK, outside the checkout
  local bin="$1/bin"
  (cd "$WORK" && "$bin/aver-fast" --version && "$bin/aver-fast" --help >/dev/null \
    && "$bin/aver-fast" make-synthetic "$WORK/synthetic" --videos 1 --seconds 2 --size 32 \
    && "$bin/python" - "$ROOT" <<'EOF'
import importlib, os, pkgutil, sys, warnings
warnings.simplefilter("error", RuntimeWarning)  # the extension must load: no fallback warning
import torch
import aver_fast
from aver_fast.ops import _ext
root = sys.argv[1]
assert not os.path.abspath(aver_fast.__file__).startswith(root + os.sep), aver_fast.__file__
assert _ext.LOADED, _ext.REASON
mods = [m.name for m in pkgutil.walk_packages(aver_fast.__path__, "aver_fast.")]
for name in mods:
    importlib.import_module(name)
q, k, v = (torch.randn(2, 3, 17, 24, dtype=torch.float64) for _ in range(3))
err = (aver_fast.tlab_attention(q, k, v, backend="cpp") - aver_fast.ops.tlab_attention_ref(q, k, v)).abs().max()
assert err < 1e-10, err
from aver_fast.data import faces
faces._cascade()  # the installed OpenCV ships the face detector's cascade
print(f"imported {len(mods)} modules from {os.path.dirname(aver_fast.__file__)}; cpp parity {err:.1e}; "
      "face cascade ok")
EOF
  )
}

for kind in wheel sdist; do
  step "install the $kind into a fresh venv"
  $PY -m venv "$WORK/$kind-venv"
  "$WORK/$kind-venv/bin/pip" install -q "$TORCH" "setuptools>=77" wheel ninja
  file=$(ls "$WORK"/dist/*.whl)
  [ "$kind" = sdist ] && file=$(ls "$WORK"/dist/*.tar.gz)
  MAX_JOBS=${MAX_JOBS:-2} "$WORK/$kind-venv/bin/pip" install -q --no-build-isolation "$file"
  check "$WORK/$kind-venv"
done

step "a clean source tree in the current directory names the shadowing"
export_source "$WORK/clean"
out=$(cd "$WORK/clean" && "$WORK/wheel-venv/bin/python" -c "import aver_fast" 2>&1)
echo "$out" | grep -q "imported from the source checkout" || { echo "no clear message: $out"; exit 1; }
echo "ok: $(echo "$out" | grep -o 'aver_fast was imported from the source checkout[^;]*')"
step "done"
