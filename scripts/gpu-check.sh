#!/usr/bin/env bash
# The GPU check (docs/gpu.md): every CUDA path verified against the CPU and
# every GPU figure measured, in one short run.
#
#   bash scripts/gpu-check.sh --stage [BUNDLE]      on the build machine: build and copy what the
#                                                   check runs into BUNDLE (default gpu-bundle/)
#   bash scripts/gpu-check.sh OUT_DIR               on a GPU machine with PyTorch (no Rust needed)
#   bash scripts/gpu-check.sh --dry-run OUT_DIR     the same steps on the CPU, tiny sizes (CI)
#
# The binaries link libtorch dynamically; their RUNPATH names the build
# machine's .venv, which a GPU machine does not have, so the libtorch of this
# machine's own `torch` goes first on the library path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=python3
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
fi
if [[ "${1:-}" != "--stage" ]]; then
    TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || {
        echo "error: $PY cannot import torch; the check needs PyTorch (its libtorch runs hart)" >&2
        exit 1
    }
    export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export HART_TORCH_LIB="$TORCH_LIB"
fi
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
