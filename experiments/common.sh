# experiments/common.sh: shared settings for the reuse experiments. Sizes are
# small so each script runs in minutes on 2 CPU cores; raise them with the
# environment variables for a fuller run.
set -euo pipefail
CLI=${CLI:-build/src/cli/cleave-cli}
OUT=${OUT:-experiments/out}
ARCH=${ARCH:-simcnn:w=0.125}
EPOCHS=${EPOCHS:-3}
MAX_TRAIN=${MAX_TRAIN:-6000}
DEVICE=${DEVICE:-cpu}
# GradSplitter schedule, shortened: a warm-up, then rounds of mask and head-only epochs, far fewer of them
SPLIT_OPTS=${SPLIT_OPTS:---head-epochs 1 --rounds 2 --mask-epochs 1 --head-only-epochs 1 --train-images 3000 --val-images 2000 --lr-mask 0.05 --theta-init 0.5}
mkdir -p "$OUT"
run () { echo "+ $*" >&2; nice -n 15 "$@"; }
# JSON accuracy of `eval --json`
acc () { jq -r '.accuracy' ; }
