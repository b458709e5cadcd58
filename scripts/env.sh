# Source this to build HART by hand: puts the project's venv (with torch) first
# on PATH so torch-sys links against its libtorch.
HART_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$HART_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
