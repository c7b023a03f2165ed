#!/bin/bash
# Experiment 3 (new tasks): modules of a Fashion-MNIST model and an MNIST
# model composed into clothing-vs-digit tasks, evaluated on the mixed test
# data, against the same architecture trained from scratch on each task
# (`train --mix`, SCRATCH_EPOCHS epochs on at most MAX_TRAIN images).
# PAIRS="0:0 3:7" limits the pairs (default: all 100); MIX4 is the 4-class mix.
. "$(dirname "$0")/common.sh"
for ds in fashion-mnist mnist; do
  m="$OUT/strong-$ds.safetensors"; mods="$OUT/strong-$ds-modules.safetensors"
  [ -f "$m" ] || run $CLI train -a "$ARCH" -d "$ds" -e "$EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$m" >&2
  [ -f "$mods" ] || run $CLI split "$m" "$ds" -m grad $SPLIT_OPTS --device "$DEVICE" -o "$mods" >&2
done
F="$OUT/strong-fashion-mnist-modules.safetensors"; D="$OUT/strong-mnist-modules.safetensors"
PAIRS=${PAIRS:-$(for a in 0 1 2 3 4 5 6 7 8 9; do for b in 0 1 2 3 4 5 6 7 8 9; do echo -n "$a:$b "; done; done)}
SCRATCH_EPOCHS=${SCRATCH_EPOCHS:-$EPOCHS}
# Same architecture from scratch on a mixed task: prints its test accuracy.
scratch () {
  local out=$1; shift
  local mixargs=()
  for m in "$@"; do mixargs+=(--mix "$m"); done
  [ -f "$out" ] || run $CLI train -a "$ARCH" "${mixargs[@]}" -e "$SCRATCH_EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$out" >&2
  run $CLI eval "$out" --mix "$@" --json --device "$DEVICE" | acc
}
pct () { awk -v x="$1" 'BEGIN{printf "%.2f%%", 100*x}'; }
printf '| task | composed acc | scratch acc | loss vs scratch (points) |\n|---|---|---|---|\n' > "$OUT/3-table.md"
sum=0; n=0; lsum=0
for p in $PAIRS; do
  a=${p%:*}; b=${p#*:}
  run $CLI compose -o "$OUT/pair-$a-$b.safetensors" "$F:$a" "$D:$b" > /dev/null
  acc=$(run $CLI eval "$OUT/pair-$a-$b.safetensors" --mix "fashion-mnist:$a" "mnist:$b" --json --device "$DEVICE" | acc)
  sacc=$(scratch "$OUT/scratch-$a-$b.safetensors" "fashion-mnist:$a" "mnist:$b")
  loss=$(awk -v s="$sacc" -v x="$acc" 'BEGIN{print 100*(s-x)}')
  echo "| fashion $a vs digit $b | $(pct "$acc") | $(pct "$sacc") | $(awk -v l="$loss" 'BEGIN{printf "%.2f", l}') |" >> "$OUT/3-table.md"
  sum=$(awk -v s="$sum" -v x="$acc" 'BEGIN{print s+x}'); lsum=$(awk -v s="$lsum" -v l="$loss" 'BEGIN{print s+l}'); n=$((n+1))
done
echo "| mean over $n pairs | $(awk -v s="$sum" -v n="$n" 'BEGIN{printf "%.2f%%", 100*s/n}') | | $(awk -v s="$lsum" -v n="$n" 'BEGIN{printf "%.2f", s/n}') |" >> "$OUT/3-table.md"
MIX4=${MIX4:-"fashion-mnist:0,7 mnist:1,8"}
run $CLI compose -o "$OUT/mix4.safetensors" "$F:0,7" "$D:1,8" > /dev/null
acc=$(run $CLI eval "$OUT/mix4.safetensors" --mix $MIX4 --json --device "$DEVICE" | acc)
sacc=$(scratch "$OUT/scratch-mix4.safetensors" $MIX4)
echo "| 4-class mix ($MIX4) | $(pct "$acc") | $(pct "$sacc") | $(awk -v s="$sacc" -v x="$acc" 'BEGIN{printf "%.2f", 100*(s-x)}') |" >> "$OUT/3-table.md"
cat "$OUT/3-table.md"
