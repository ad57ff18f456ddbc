#!/usr/bin/env bash
# Stages what the H100 run needs into the lead checkout's git-ignored .dev/hip (the device tool ships
# that checkout): stripped binaries, the goldens and stories260K, the peer kit, llama.cpp sources, a
# tokenizer, and the SmolLM2 GGUF in two parts (one per call: a call carries at most 64 MiB).
set -euo pipefail
WT=$(cd "$(dirname "$0")/../.." && pwd)
D=${DEST:-/work/main/.dev/hip}
D2=${DEST2:-/work/main/.dev/hip2}
rm -rf "$D" "$D2"; mkdir -p "$D" "$D2" /tmp/hipstage/bin
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
G=$(ls ~/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf 2>/dev/null || ls /work/main/.dev/SmolLM2-135M-Instruct.Q4_1.gguf)
head -c 45000000 "$G" > "$D/smol.part1"
tail -c +45000001 "$G" > "$D2/smol.part2"
cp "$WT"/benches/device/run1.sh "$D/"; cp "$WT"/benches/device/run2.sh "$D2/"
du -sh "$D" "$D2"
