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

# A Vulkan driver for the wgpu tests: Mesa's lavapipe (a CPU Vulkan device) and the loader. With it the
# wgpu tests must run: PRISM_REQUIRE_WGPU=1 turns "no adapter" into a failure.
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO apt-get install -y mesa-vulkan-drivers libvulkan1
fi
export PRISM_REQUIRE_WGPU=1
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# The official OpenAI Python client, for tests/openai_client.rs (which fails rather than skips here).
if ! target/pyenv/bin/python -c "import openai" >/dev/null 2>&1; then
    if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
        $SUDO apt-get update && $SUDO apt-get install -y python3 python3-venv
    fi
    mkdir -p target
    python3 -m venv target/pyenv
    # `python -m pip`: some interpreters (pyenv builds) make venvs whose bin/ lacks the pip script.
    target/pyenv/bin/python -m pip install --quiet "openai>=1.40,<4"
fi
export PRISM_REQUIRE_OPENAI_CLIENT=1

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo build --release
# Every HIP kernel compiles for AMD (gfx90a, gfx1030) and NVIDIA (sm_80, sm_90).
./target/release/prism kernels build --arch gfx90a,gfx1030,sm_80,sm_90
cargo test --release --all-targets
