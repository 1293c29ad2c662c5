#!/usr/bin/env bash
# Run every test: setup (idempotent), the native tests under ASan/UBSan, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -f libos/Makefile ]; then
    echo "==> native tests (make -C libos test asan)"
    make -s -C libos test asan
    echo "==> fuzz harnesses build (make -C libos fuzz)"
    make -s -C libos fuzz
fi
echo "==> python tests"
exec python -m pytest -q -p no:cacheprovider "$@"
