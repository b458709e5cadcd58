#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh --test) and runs the whole test suite,
# plus the formatting and lint gates. `.ci/run` calls exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --test
# shellcheck source=env.sh
source scripts/env.sh
cargo fmt --all -- --check
# Release profile throughout: reuses the set-up build instead of compiling libtorch's bindings twice.
cargo clippy --release --locked --workspace --all-targets -q -- -D warnings
# No new panicking tch call in the library without a reason (and the check itself can fail).
.venv/bin/python scripts/check_tch_calls.py --self-test
# Layers import only downward and no two files import each other (docs/architecture.md).
.venv/bin/python scripts/check_layers.py --self-test
cargo test --release --locked --workspace
# The Python package (`import hart`, installed by setup.sh) against PyTorch and the CLI.
.venv/bin/python -m pytest -q tests/python
# The GPU check (docs/gpu.md) without a GPU: stage the bundle a GPU machine carries, then run
# every step of it on the CPU with tiny sizes, so the script a lent GPU runs once is proven here.
bash scripts/gpu-check.sh --stage
bash scripts/gpu-check.sh --dry-run target/gpu-check-dry
# A short fuzz pass over every parser (docs/robustness.md has the long runs).
cargo run --release --locked -q -p hart-fuzz -- all --iterations 2000 --seed 1
