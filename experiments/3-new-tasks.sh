#!/bin/bash
# Experiment 3 (new tasks): modules of a Fashion-MNIST model and an MNIST
# model composed into clothing-vs-digit tasks, evaluated on the mixed test
# data, against the same architecture trained from scratch on each task
# (`train --mix`, SCRATCH_EPOCHS epochs on at most MAX_TRAIN images).
# PAIRS="0:0 3:7" limits the pairs (default: all 100); MIX4 is the 4-class mix.
#
# Resumable: each task's two accuracies are cached in $OUT/3-results/ once
# both are known, and a task with a cached result is not recomputed (model
# files that exist are reused too), so an interrupted run picks up where it
# stopped. A task that fails is reported and skipped; the script goes on and
# exits 1 at the end. Writes $OUT/3-table.md (summary) and $PAIRS_MD (every
# pair, plus 10×10 grids of the composed accuracy and the loss against scratch).
# ONLY=composed composes and evaluates without the (costly) scratch training,
# caching the composed accuracy alone; ONLY=report only writes the tables.
. "$(dirname "$0")/common.sh"
for ds in fashion-mnist mnist; do
  m="$OUT/strong-$ds.safetensors"; mods="$OUT/strong-$ds-modules.safetensors"
  [ -f "$m" ] || run $CLI train -a "$ARCH" -d "$ds" -e "$EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$m" >&2
  [ -f "$mods" ] || run $CLI split "$m" "$ds" -m grad $SPLIT_OPTS --device "$DEVICE" -o "$mods" >&2
done
F="$OUT/strong-fashion-mnist-modules.safetensors"; D="$OUT/strong-mnist-modules.safetensors"
# All 100 pairs by diagonals (b = a + k mod 10), so that each block of 10
# has every class of both datasets once: a partial run is not skewed.
PAIRS=${PAIRS:-$(for k in 0 1 2 3 4 5 6 7 8 9; do for a in 0 1 2 3 4 5 6 7 8 9; do echo -n "$a:$(( (a + k) % 10 )) "; done; done)}
SCRATCH_EPOCHS=${SCRATCH_EPOCHS:-$EPOCHS}
MIX4=${MIX4:-"fashion-mnist:0,7 mnist:1,8"}
PAIRS_MD=${PAIRS_MD:-$OUT/3-pairs.md}
RES="$OUT/3-results"; mkdir -p "$RES"
ONLY=${ONLY:-}

# One task: NAME, then the compose arguments, then the --mix specs, split by
# "--". Caches "composed-acc scratch-acc" in $RES/NAME once both are known,
# and the composed accuracy alone in $RES/NAME.composed.
task () {
  local name=$1; shift
  local comp=() mix=() mixargs=()
  while [ "$1" != -- ]; do comp+=("$1"); shift; done; shift
  mix=("$@")
  for m in "${mix[@]}"; do mixargs+=(--mix "$m"); done
  [ -s "$RES/$name" ] && return 0
  local c="$OUT/$name.safetensors" s="$OUT/scratch-${name#pair-}.safetensors" acc sacc
  if [ -s "$RES/$name.composed" ]; then
    acc=$(cat "$RES/$name.composed")
  else
    if [ ! -f "$c" ]; then
      run $CLI compose -o "$OUT/tmp-$name.safetensors" "${comp[@]}" > /dev/null && mv "$OUT/tmp-$name.safetensors" "$c" || return 1
    fi
    acc=$(run $CLI eval "$c" --mix "${mix[@]}" --json --device "$DEVICE" | acc) || return 1
    [[ $acc =~ ^[0-9.]+$ ]] || return 1
    echo "$acc" > "$RES/$name.composed.tmp" && mv "$RES/$name.composed.tmp" "$RES/$name.composed"
  fi
  [ "$ONLY" = composed ] && return 0
  if [ ! -f "$s" ]; then
    # train writes its output at the end; a killed run leaves no file behind
    run $CLI train -a "$ARCH" "${mixargs[@]}" -e "$SCRATCH_EPOCHS" --max-train "$MAX_TRAIN" --device "$DEVICE" -o "$s" >&2 || return 1
  fi
  sacc=$(run $CLI eval "$s" --mix "${mix[@]}" --json --device "$DEVICE" | acc) || return 1
  [[ $acc =~ ^[0-9.]+$ && $sacc =~ ^[0-9.]+$ ]] || return 1
  echo "$acc $sacc" > "$RES/$name.tmp" && mv "$RES/$name.tmp" "$RES/$name"
}

failed=0; t0=$(date +%s); i=0; npairs=$(echo $PAIRS | wc -w)
for p in $PAIRS; do
  a=${p%:*}; b=${p#*:}; i=$((i+1))
  [ "$ONLY" = report ] && break
  if task "pair-$a-$b" "$F:$a" "$D:$b" -- "fashion-mnist:$a" "mnist:$b"; then
    echo "[exp3] $i/$npairs fashion $a vs digit $b: $(cat "$RES/pair-$a-$b" 2>/dev/null || cat "$RES/pair-$a-$b.composed") ($(( $(date +%s) - t0 )) s)" >&2
  else
    echo "[exp3] $i/$npairs fashion $a vs digit $b FAILED" >&2; failed=$((failed+1))
  fi
done
# The 4-class mix; its compose arguments follow the --mix specs
m4comp=(); for m in $MIX4; do
  case ${m%%:*} in fashion-mnist) m4comp+=("$F:${m#*:}");; mnist) m4comp+=("$D:${m#*:}");; esac
done
[ "$ONLY" = report ] || task mix4 "${m4comp[@]}" -- $MIX4 || { echo "[exp3] 4-class mix FAILED" >&2; failed=$((failed+1)); }

# Tables from the cache: "a b composed scratch" lines for the pairs asked for
fnames=(T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot")
rows=$(for p in $PAIRS; do a=${p%:*}; b=${p#*:}
         [ -s "$RES/pair-$a-$b" ] && echo "$a $b $(cat "$RES/pair-$a-$b")"; done | sort -n -k1,1 -k2,2 || true)
# "a b composed" for every pair with a composed accuracy
crows=$(for p in $PAIRS; do a=${p%:*}; b=${p#*:}
          if [ -s "$RES/pair-$a-$b" ]; then echo "$a $b $(cut -d' ' -f1 "$RES/pair-$a-$b")"
          elif [ -s "$RES/pair-$a-$b.composed" ]; then echo "$a $b $(cat "$RES/pair-$a-$b.composed")"; fi
        done | sort -n -k1,1 -k2,2 || true)
csummary=$(echo "$crows" | awk 'NF==3 { A[n++] = 100*$3; if ($3 < .99) u++; if ($3 < .95) v++ }
  END { if (!n) { print "| composed only | no pairs | | | |"; exit }
        for (i = 0; i < n; i++) for (j = i+1; j < n; j++) if (A[j] < A[i]) { x = A[i]; A[i] = A[j]; A[j] = x }
        med = n % 2 ? A[(n-1)/2] : (A[n/2-1] + A[n/2]) / 2; for (i = 0; i < n; i++) m += A[i]
        printf "| %d pairs, composed only | %.2f%% (median %.2f%%, min %.2f%%, max %.2f%%) | | | %d below 99%%, %d below 95%% |\n",
               n, m/n, med, A[0], A[n-1], u+0, v+0 }')
summary=$(echo "$rows" | awk 'NF==4 { l = 100*($4-$3); L[n++] = l; c += $3; s += $4; if (l < 0) w++; if (l == 0) t++ }
  END { if (!n) { print "no pairs"; exit }
        for (i = 0; i < n; i++) for (j = i+1; j < n; j++) if (L[j] < L[i]) { x = L[i]; L[i] = L[j]; L[j] = x }
        med = n % 2 ? L[(n-1)/2] : (L[n/2-1] + L[n/2]) / 2; for (i = 0; i < n; i++) m += L[i]
        printf "| %d pairs, composed and scratch | %.2f%% | %.2f%% | mean %.2f, median %.2f, min %.2f, max %.2f | %d better, %d equal |\n",
               n, 100*c/n, 100*s/n, m/n, med, L[0], L[n-1], w+0, t+0 }')
if [ -s "$RES/mix4" ]; then
  read acc sacc < "$RES/mix4"
  mix4row=$(awk -v x="$acc" -v s="$sacc" -v m="$MIX4" 'BEGIN{printf "| 4-class mix (%s) | %.2f%% | %.2f%% | %.2f | %s |\n", m, 100*x, 100*s, 100*(s-x), (x > s ? "better" : "")}')
else mix4row="| 4-class mix ($MIX4) | not run | | | |"; fi
{ printf '| tasks | composed acc (mean) | scratch acc (mean) | loss vs scratch (points) | composition vs scratch |\n|---|---|---|---|---|\n'
  echo "$summary"; echo "$csummary"; echo "$mix4row"; } > "$OUT/3-table.md"
# A 10×10 markdown grid: TITLE, rows "a b ..." and an awk expression of them.
grid () {
  echo; echo "## $1"; echo
  echo -n "| fashion \\ digit |"; for b in 0 1 2 3 4 5 6 7 8 9; do echo -n " $b |"; done; echo
  echo -n "|---|"; for b in 0 1 2 3 4 5 6 7 8 9; do echo -n "---|"; done; echo
  for a in 0 1 2 3 4 5 6 7 8 9; do
    echo -n "| $a ${fnames[$a]} |"
    for b in 0 1 2 3 4 5 6 7 8 9; do
      x=$(echo "$2" | awk -v a=$a -v b=$b '$1==a && $2==b { printf "%.2f", '"$3"' }')
      echo -n " ${x:-–} |"
    done; echo
  done
}
{ echo "# Experiment 3: every clothing-vs-digit pair"
  echo
  echo "Generated by \`experiments/3-new-tasks.sh\` (settings: ARCH=$ARCH, scratch"
  echo "$SCRATCH_EPOCHS epochs on at most $MAX_TRAIN images; test split). Loss vs scratch"
  echo "= scratch accuracy − composed accuracy, in points (negative: the"
  echo "composition is better). See docs/RESULTS.md, Experiment 3."
  echo; cat "$OUT/3-table.md"
  grid "Composed accuracy (%): rows Fashion-MNIST class, columns digit" "$crows" '100*$3'
  grid "Loss vs scratch (points): rows Fashion-MNIST class, columns digit" "$rows" '100*($4-$3)'
  echo; echo "## Every pair"; echo
  printf '| task | composed acc | scratch acc | loss vs scratch (points) |\n|---|---|---|---|\n'
  echo "$rows" | awk 'NF==4 { printf "| fashion %d vs digit %d | %.2f%% | %.2f%% | %.2f |\n", $1, $2, 100*$3, 100*$4, 100*($4-$3) }'
} > "$PAIRS_MD"
cat "$OUT/3-table.md"
[ "$failed" = 0 ] || { echo "[exp3] $failed task(s) failed; rerun to retry them" >&2; exit 1; }
