#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then format, lint and tests.
# Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/models/stories260K ]; then
    echo "error: ../shared (models, goldens, tokenizer vectors) must sit beside this checkout" >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "error: cargo is needed (https://rustup.rs)" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The GPU kernel compilers, which need no GPU: hiprtc (inside Debian's libamdhip64) for AMD targets and
# NVRTC (PyPI wheel, into target/, found there through LD_LIBRARY_PATH) for NVIDIA targets.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
if ! ldconfig -p | grep -q libamdhip64; then
    $SUDO apt-get update
    $SUDO apt-get install -y libamdhip64-dev
fi
NVRTC_DIR=$PWD/target/nvrtc-wheel
if ! ls "$NVRTC_DIR"/nvidia/cuda_nvrtc/lib/libnvrtc.so* >/dev/null 2>&1; then
    python3 -m pip --version >/dev/null 2>&1 || { $SUDO apt-get update && $SUDO apt-get install -y python3-pip; }
    python3 -m pip install --quiet --target "$NVRTC_DIR" nvidia-cuda-nvrtc-cu12
fi
export LD_LIBRARY_PATH="$NVRTC_DIR/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo build --release
# Every HIP kernel compiles for AMD (gfx90a, gfx1030) and NVIDIA (sm_80, sm_90).
./target/release/prism kernels build --arch gfx90a,gfx1030,sm_80,sm_90
cargo test --release --all-targets
