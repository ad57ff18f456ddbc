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

# The official OpenAI Python client, for tests/openai_client.rs (which fails rather than skips here).
if ! target/pyenv/bin/python -c "import openai" >/dev/null 2>&1; then
    if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
        apt-get update && apt-get install -y python3 python3-venv
    fi
    mkdir -p target
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install --quiet "openai>=1.40,<4"
fi
export PRISM_REQUIRE_OPENAI_CLIENT=1

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release --all-targets
