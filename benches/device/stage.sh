#!/usr/bin/env bash
# Stages what the H100 run needs into the lead checkout's git-ignored .dev/hip (the device tool ships
# that checkout): stripped binaries, the goldens and stories260K, the peer kit, llama.cpp sources, a
# tokenizer and the run script. (Runs 1-2 also carried the SmolLM2 GGUF, in two parts: a call carries at
# most 64 MiB; run1.sh and run2.sh read them.)
set -euo pipefail
WT=$(cd "$(dirname "$0")/../.." && pwd)
D=${DEST:-/work/main/.dev/hip}

rm -rf "$D"; mkdir -p "$D" /tmp/hipstage/bin
TEST_BIN=$(ls -t "$WT"/target/release/deps/hip_ops-* | grep -v '\.d$' | head -1)
strip -o /tmp/hipstage/bin/prism "$WT/target/release/prism"
strip -o /tmp/hipstage/bin/hip_ops "$TEST_BIN"
tar -cJf "$D/bin.tar.xz" -C /tmp/hipstage bin
tar -cJf "$D/shared.tar.xz" -C /work/shared golden models/stories260K
cp -r /work/shared/peers "$D/peers"
mkdir -p "$D/gpu-pack" /tmp/hipstage/tok/tokenizer
cp /work/main/.peers/llama.cpp-src.tar.xz "$D/gpu-pack/"
cp /work/main/.dev/syn-smollm2-135m-f16/{tokenizer.json,tokenizer_config.json} /tmp/hipstage/tok/tokenizer/
tar -cJf "$D/gpu-pack/tokenizer.tar.xz" -C /tmp/hipstage/tok tokenizer
G=""


cp "$WT"/benches/device/run4.sh "$D/"
du -sh "$D"
