# Source this to build HART by hand: puts the project's venv (with torch) first
# on PATH so torch-sys links against its libtorch.
HART_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$HART_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# The Python extension (crates/hart-py) leaves libpython to the interpreter
# that loads it, as maturin builds it; set here too so a plain `cargo build`
# of the workspace builds it the same way (and does not rebuild it each time).
export PYO3_BUILD_EXTENSION_MODULE=1
export PYO3_PYTHON="$VIRTUAL_ENV/bin/python"
