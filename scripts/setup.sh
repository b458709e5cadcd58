#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (as root): Debian packages, the
# project-local venv with PyTorch 2.11 (whose libtorch HART links), and the
# release build of `hart`. Fast when everything is already in place.
#   scripts/setup.sh          what `hart` and `import hart` need
#   scripts/setup.sh --test   plus the Python packages the tests compare against
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TORCH_VERSION=2.11.0
TEST_PY_PACKAGES=(torchvision==0.26.0 timm onnx onnxscript safetensors numpy pytest matplotlib)
# Builds and installs the Python package (crates/hart-py); its runtime
# dependencies (pandas, pyarrow, tqdm, onnx, ...) come from its pyproject.toml.
MATURIN="maturin>=1.9.4,<2"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
need=()
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v g++ >/dev/null || need+=(g++)
# Plots render text with this TTF (no fontconfig lookup).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v pkg-config >/dev/null || need+=(pkg-config)
# The sharded-sweep test runs a throw-away single-node Slurm cluster (scripts/slurm-test-cluster.sh).
if [ "${1:-}" = "--test" ]; then
    command -v munged >/dev/null || need+=(munge)
    command -v slurmctld >/dev/null || need+=(slurmctld)
    command -v slurmd >/dev/null || need+=(slurmd)
    command -v sbatch >/dev/null || need+=(slurm-client)
fi
# The one font plots are drawn with (read directly; no fontconfig).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    say "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { say "cargo (Rust toolchain) is required"; exit 1; }

# --- Python venv with torch --------------------------------------------------
[ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    say "installing torch==$TORCH_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
if [ "${1:-}" = "--test" ]; then
    if ! .venv/bin/python -c 'import torchvision, timm, onnx, onnxscript, safetensors, numpy, pytest, matplotlib' 2>/dev/null; then
        say "installing test packages: ${TEST_PY_PACKAGES[*]}"
        .venv/bin/pip install -q --disable-pip-version-check "${TEST_PY_PACKAGES[@]}"
    fi
fi

# --- Release build -------------------------------------------------------------
# shellcheck source=env.sh
source scripts/env.sh
say "building target/release/hart"
cargo build --release --locked -q || { say "build failed"; exit 1; }

# --- Python package: `import hart` in .venv ------------------------------------
# An editable install: .venv imports crates/hart-py/python/hart, into which
# maturin puts the compiled extension (hart/_hart.*.so, linked to .venv's torch).
[ -x .venv/bin/maturin ] || .venv/bin/pip install -q --disable-pip-version-check "$MATURIN"
say "building and installing the Python package hart into .venv"
log="$(mktemp)"
if ! (cd crates/hart-py && ../../.venv/bin/maturin develop --release --locked -q) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "Python package build failed"
    exit 1
fi
rm -f "$log"
.venv/bin/python -c 'import hart' || { say "import hart failed"; exit 1; }
