#!/usr/bin/env bash
# Side venv with stringlifier (the BiLSTM vArmor's classifier service uses), for the
# comparison in bench/classifier.py (`--stringlifier`). Optional and large (torch): kept
# out of `make setup` and out of the project venv. Idempotent: a second run only checks.
# Usage: scripts/stringlifier-venv.sh [VENV_DIR]      (default .venv-stringlifier)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${1:-"$ROOT/.venv-stringlifier"}
TORCH_VERSION=2.13.0
STRINGLIFIER_VERSION=0.1.1.5

log() { printf '\033[1m[stringlifier]\033[0m %s\n' "$*"; }

# The project venv's base interpreter, so the side venv runs the same Python. Every python
# here runs with -I: the repository root holds a package named `operator`, which would
# shadow the standard library's for anything run with the root as the working directory.
if [ -x "$ROOT/.venv/bin/python" ]; then
  PY=$("$ROOT/.venv/bin/python" -I -c 'import os, sys; print(os.path.realpath(sys.executable))')
else
  PY=$(command -v python3.11 || command -v python3)
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PY"
  "$PY" -I -m venv "$VENV"
fi
VPY="$VENV/bin/python"
pipi() { "$VPY" -I -m pip install -q --disable-pip-version-check "$@"; }

check() {
  "$VPY" -I - <<'EOF'
import time, warnings
warnings.filterwarnings("ignore")  # pkg_resources' deprecation notice
t0 = time.process_time()
import torch
from stringlifier.api import Stringlifier
lifier = Stringlifier()
print(f"torch {torch.__version__}, stringlifier loaded in {time.process_time() - t0:.1f} s CPU;"
      f" {lifier(['/tmp/tmpa8Zk1_qx'])[0]!r}")
EOF
}

if check 2>/dev/null; then
  log "already set up: $VENV"
  exit 0
fi

# torch from the index (a local CPU wheel on the project's machines); its own small deps
# (sympy, networkx, jinja2, fsspec, filelock, typing-extensions) come with it.
log "installing torch==$TORCH_VERSION (CPU)"
pipi "torch==$TORCH_VERSION"

# stringlifier's metadata also asks for ipdb and PyJWT (debugging and training only) and
# for nptyping>=2.5 with numpy>=2.2.6, a pair that cannot import its api.py: nptyping 2.x
# rejects the `NDArray[Int64]` annotations there, and nptyping 2.5 itself needs numpy<2.
# vArmor's classifier image pins nptyping==1.3.0 (with numpy 1.22); nptyping 1.3 needs
# numpy.unicode (gone in numpy 1.24) and numpy 1.22 has no wheel for Python 3.11, so take
# numpy 1.23.5. pkg_resources (api.py uses it) is gone from setuptools 81 on.
log "installing stringlifier==$STRINGLIFIER_VERSION (no deps) and what its API imports"
log "(pip then reports stringlifier's declared ipdb/PyJWT/nptyping/numpy as unmet: expected)"
pipi --no-deps "stringlifier==$STRINGLIFIER_VERSION"
pipi "numpy==1.23.5" "nptyping==1.3.0" tqdm "setuptools>=70,<81"

check
log "ready: bench/classifier.py --stringlifier $VPY (the default when VENV_DIR is not given)"
