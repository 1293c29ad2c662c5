#!/usr/bin/env bash
# The main job: build and run a hello-world Occlum instance in SIM mode.
#   bash scripts/setup.sh && bash scripts/hello-sim.sh [WORKDIR]
# Creates WORKDIR (default: a new temporary directory), compiles hello.c with occlum-gcc,
# builds the instance (occlum build --sgx-mode SIM) and runs /bin/hello in it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/.venv/bin/activate"
work=${1:-$(mktemp -d /tmp/occlum-hello.XXXXXX)}
mkdir -p "$work"
cd "$work"
cat > hello.c <<'C'
#include <stdio.h>
int main(void) { printf("Hello World\n"); return 0; }
C
echo "==> occlum new $work/hello_instance"
rm -rf hello_instance
occlum new hello_instance
cd hello_instance
occlum-gcc -o image/bin/hello ../hello.c
echo "==> occlum build --sgx-mode SIM"
occlum build --sgx-mode SIM
echo "==> occlum run /bin/hello"
occlum run /bin/hello
echo "==> MRENCLAVE $(occlum print mrenclave)"
