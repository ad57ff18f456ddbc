#!/bin/bash
# CUDA twin decode attention: how many blocks (splits) to aim at, PRISM_ATTN_BLOCKS sweep.
S=$PWD/.dev/s4; P=/tmp/p; mkdir -p $P
tar xJf $S/attn.tar.xz -C $P; tar xJf $S/tok.tar.xz -C $P
[ -d $P/syn-135m ] || python3 $S/make-synthetic-llama.py --shape smollm2-135m --tokenizer $P/tok --out $P/syn-135m > /dev/null
[ -d $P/syn-1b ] || python3 $S/make-synthetic-llama.py --shape llama-1b --tokenizer $P/tok --out $P/syn-1b > /dev/null
date -u
for round in 1 2; do for m in syn-135m syn-1b; do for a in 264 96 48 24 8; do
  printf -- "-- %s blocks %s round %s: " $m $a $round
  PRISM_ATTN_BLOCKS=$a $P/new bench -m $P/$m --backend cuda -p 0 -n 128,512 -r 3 2>&1 | grep -E "cuda \|" | awk -F'|' '{printf "%s %s  ", $4, $6}'; echo
done; done; done
date -u
