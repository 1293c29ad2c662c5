#!/usr/bin/env bash
# Run every test: setup (idempotent), the lint and type checks (ruff, mypy strict on occlum_build),
# the native tests under ASan/UBSan, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "==> lint (ruff check occlum_build tests benchmarks)"
ruff check occlum_build tests benchmarks
echo "==> type check (mypy: strict on occlum_build, pyproject.toml [tool.mypy])"
mypy
if [ -f libos/Makefile ]; then
    echo "==> native tests (make -C libos test asan)"
    make -s -C libos test asan
    echo "==> fuzz harnesses build (make -C libos fuzz)"
    make -s -C libos fuzz
fi
echo "==> python tests"
exec python -m pytest -q -p no:cacheprovider "$@"
