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

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release --all-targets
