#!/bin/bash
# Experiment 2 (patching): a weak model (simple architecture, or a
# Dirichlet-skewed subset) patched on its weakest classes with modules of a
# strong model; target-class P/R/F1 before/after and other-class accuracy.
# Usage: experiments/2-patching.sh [DATASET]   (TARGETS="3 6" to choose)
. "$(dirname "$0")/common.sh"
ds=${1:-fashion-mnist}
STRONG_EPOCHS=${STRONG_EPOCHS:-$EPOCHS}
strong="$OUT/strong-$ds.safetensors"; modules="$OUT/strong-$ds-modules.safetensors"
[ -f "$strong" ] || run $CLI train -a "$ARCH" -d "$ds" -e "$STRONG_EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$strong" >&2
[ -f "$modules" ] || run $CLI split "$strong" "$ds" -m grad $SPLIT_OPTS --device "$DEVICE" -o "$modules" >&2
printf '| weak model | target | P before | P after | R before | R after | F1 before | F1 after | other-class acc before → after |\n|---|---|---|---|---|---|---|---|---|\n' > "$OUT/2-table.md"
for kind in simple dirichlet; do
  weak="$OUT/weak-$kind-$ds.safetensors"
  if [ ! -f "$weak" ]; then
    if [ $kind = simple ]; then
      run $CLI train -a weak -d "$ds" -e 1 --max-train "$MAX_TRAIN" --no-augment --device "$DEVICE" -o "$weak" >&2
    else
      run $CLI train -a "$ARCH" -d "$ds" -e "$EPOCHS" --dirichlet 1 --min-per-class 100 --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$weak" >&2
    fi
  fi
  # Targets: the weak model's TARGETS or its two lowest-F1 classes on the test split.
  tcs=${TARGETS:-$($CLI eval "$weak" "$ds" --json --device "$DEVICE" | jq -r '[.classes[] ] | to_entries | sort_by(.value.f1) | .[0:2] | map(.key) | join(" ")')}
  for tc in $tcs; do
    patched="$OUT/patched-$kind-$ds-$tc.safetensors"
    run $CLI patch "$weak" "$modules:$tc" -o "$patched" >&2
    run $CLI eval "$weak" "$ds" --compare "$patched" --json --device "$DEVICE" > "$OUT/2-$kind-$tc.json"
    jq -r --arg k "$kind" '.targets[0] as $t | "| \($k) | \($t.class) | \($t.precision[0]*100|.*100|round/100)% | \($t.precision[1]*100|.*100|round/100)% | \($t.recall[0]*100|.*100|round/100)% | \($t.recall[1]*100|.*100|round/100)% | \($t.f1[0]*100|.*100|round/100)% | \($t.f1[1]*100|.*100|round/100)% | \(.other_accuracy[0]*100|.*100|round/100)% → \(.other_accuracy[1]*100|.*100|round/100)% |"' "$OUT/2-$kind-$tc.json" >> "$OUT/2-table.md"
  done
done
cat "$OUT/2-table.md"
