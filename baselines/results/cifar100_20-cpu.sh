#!/usr/bin/env bash
# The CIFAR-100 (re-split) CPU table: the nine strategies of baselines/results/cifar100_20-cpu.md
# with the `cpu` recipe, in two lanes of one thread each (the machine has 2 cores).
#
#   nohup bash baselines/results/cifar100_20-cpu.sh DATA_ROOT WORK_DIR [SEED] > WORK_DIR.log 2>&1 &
#
# DATA_ROOT holds cifar100/{train,test}/<superclass>/<class>/*.png (../shared/data's archives,
# extracted). WORK_DIR gets one run directory per strategy plus runs/goals (the accuracy goals the
# individual run writes and CPG reads). Run the same command again after any stop: finished runs
# are skipped and unfinished ones continue with `clbench run --resume`. Each attempt's start, end,
# wall seconds and exit status go to WORK_DIR/times.csv.
set -euo pipefail

usage="usage: $0 DATA_ROOT WORK_DIR [SEED]  (DATA_ROOT holds cifar100/train/<superclass>/...)"
fail() { echo "$0: $1" >&2; exit 2; }
(($# >= 2 && $# <= 3)) || fail "$usage"
[[ -d "$1/cifar100/train" || -d "$1/train" ]] ||
    fail "no CIFAR-100 tree under $1: expected $1/cifar100/{train,test}/<superclass>/<class>/*.png ($usage)"
seed=${3:-0}
[[ "$seed" =~ ^[0-9]+$ ]] || fail "SEED must be a non-negative integer, got '$seed'"
clbench=${CLBENCH:-clbench}
command -v "$clbench" > /dev/null || fail "no '$clbench' command: activate the venv or set CLBENCH=/path/to/clbench"
data_root=$(realpath "$1")
work=$(realpath -m "$2")
mkdir -p "$work"
cd "$work"  # runs/goals is relative to the working directory
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

run_one() {  # strategy -> a finished run directory $work/<strategy>-s<seed>; its exit status
    local strategy=$1 dir="$work/$1-s$seed" start end rc=0
    if [[ -f "$dir/summary.json" ]]; then
        echo "$(date -Is) $strategy: finished already ($dir)"
        return 0
    fi
    start=$(date +%s)
    echo "$(date -Is) $strategy: start"
    # `set -e` does not hold inside a function called from a condition: check the status here.
    if [[ -f "$dir/config.toml" ]]; then
        "$clbench" run --resume "$dir" --quiet || rc=$?
    else
        "$clbench" run --strategy "$strategy" --benchmark cifar100_20 --recipe cpu --seed "$seed" \
            --device cpu --data-root "$data_root" --out "$dir" --quiet || rc=$?
    fi
    end=$(date +%s)
    echo "$strategy,$seed,$start,$end,$((end - start)),$rc" >> "$work/times.csv"
    if ((rc == 0)); then
        echo "$(date -Is) $strategy: done in $((end - start)) s"
    else
        echo "$(date -Is) $strategy: FAILED (exit $rc) after $((end - start)) s (its error is above); rerun this script to resume"
    fi
    return "$rc"
}

claims="$work/.claims"  # one folder per strategy a lane has taken in this attempt (mkdir is atomic)
rm -rf "$claims"
mkdir -p "$claims"

lane() {  # run the strategies in order, skipping those the other lane took; stop on a failure
    for strategy in "$@"; do
        mkdir "$claims/$strategy" 2> /dev/null || continue
        run_one "$strategy" || return 1  # CPG must not go on to train its own goals
    done
}

# Stopping the script stops its lanes and the runs in them (a lane's run is its child: killing the
# lane alone would leave it running, and a rerun would then resume the same directory beside it).
trap 'for lane_pid in $(jobs -p); do pkill -TERM -P "$lane_pid"; kill "$lane_pid"; done 2> /dev/null' INT TERM

# Individual writes the goals CPG reads, so lane a runs them first; lane b starts with PAE, which
# trains its own (finetune_previous) goals. The rest is a shared queue, longest first: whichever
# lane is free takes the next, so neither idles while the other has a backlog. Planned work, in one-thread passes
# over the 20 tasks (recipe comment in benchmarks/cifar100_20.py): ~48 with growth and evaluation,
# ~24 per lane, ~2.3 h at the ~18 s a pass that individual measured with both lanes busy.
shared=(lwf packnet ewc si finetune joint_mixed)
lane individual cpg "${shared[@]}" >> "$work/lane-a.log" 2>&1 &
lane_a=$!
lane pae "${shared[@]}" >> "$work/lane-b.log" 2>&1 &
lane_b=$!
status=0
for lane_log in a b; do
    pid=$lane_a; [[ $lane_log == b ]] && pid=$lane_b
    if ! wait "$pid"; then
        status=1
        echo "$0: lane $lane_log stopped: $(tail -n 1 "$work/lane-$lane_log.log")" >&2
    fi
done
echo "$(date -Is) lanes done (status $status)"
exit "$status"
