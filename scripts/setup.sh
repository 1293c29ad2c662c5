#!/usr/bin/env bash
# Install everything occlum-build needs on a Debian machine (run as root), then build it:
#   Debian packages (scripts/packages/*.txt), a virtualenv in .venv with the package installed
#   in editable mode, and the native runtime (make -C libos).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages; the runtime needs FUSE and namespaces)" >&2
    exit 1
fi

mapfile -t pkgs < <(cat scripts/packages/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup.sh: $py is older than Python 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    log "creating virtualenv .venv"
    "$py" -m venv .venv
fi
log "installing occlum-build into .venv (editable)"
# editable_mode=compat: a plain path entry in a .pth file.  The default editable mode installs an
# import finder that every Python start loads (~8 ms, pathlib included), which `occlum run`
# pays on every run (docs/benchmarks.md, "Run latency").
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$top[test]" \
    --config-settings editable_mode=compat

if [ -f libos/Makefile ]; then
    log "building the native runtime (make -C libos)"
    make -s -C libos -j"$(nproc)"
fi
log "ready: activate with '. .venv/bin/activate' (puts occlum, copy_bom, occlum-gcc on PATH)"
