#!/bin/bash
# Experiment 1 (modularization): original vs composed accuracy and KRR per
# model and dataset. Usage: experiments/1-modularization.sh [DATASET…]
. "$(dirname "$0")/common.sh"
DATASETS=${*:-fashion-mnist mnist}
ARCHES=${ARCHES:-$ARCH}
printf '| model | dataset | original acc | composed acc | loss (points) | mean KRR |\n|---|---|---|---|---|---|\n' > "$OUT/1-table.md"
for ds in $DATASETS; do
  for arch in $ARCHES; do
    tag=$(echo "$arch-$ds" | tr ':=' '__')
    [ -f "$OUT/$tag.safetensors" ] || run $CLI train -a "$arch" -d "$ds" -e "$EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$OUT/$tag.safetensors" >&2
    [ -f "$OUT/$tag-modules.safetensors" ] || run $CLI split "$OUT/$tag.safetensors" "$ds" -m grad $SPLIT_OPTS --device "$DEVICE" -o "$OUT/$tag-modules.safetensors" >&2
    run $CLI compose -o "$OUT/$tag-composed.safetensors" "$OUT/$tag-modules.safetensors" > "$OUT/$tag-compose.txt"
    a=$(run $CLI eval "$OUT/$tag.safetensors" "$ds" --json --device "$DEVICE" | acc)
    c=$(run $CLI eval "$OUT/$tag-composed.safetensors" "$ds" --json --device "$DEVICE" | acc)
    krr=$($CLI modules "$OUT/$tag-modules.safetensors" | awk '/^mean KRR/ {print $3}')
    awk -v m="$arch" -v d="$ds" -v a="$a" -v c="$c" -v k="$krr" \
      'BEGIN { printf "| %s | %s | %.2f%% | %.2f%% | %.2f | %s |\n", m, d, 100*a, 100*c, 100*(a-c), k }' >> "$OUT/1-table.md"
  done
done
cat "$OUT/1-table.md"
