#!/usr/bin/env bash
# A sweep over a SLURM job array: N shards, each into its own store, then one job that merges them.
#
#   scripts/slurm_sweep.sh SPEC OUT.sqlite N [sbatch options ...]
#
# Run on the login node. It submits this script twice with sbatch:
#   1. an array of N tasks (--array=0-(N-1)); task I runs
#        collapse-mc sweep run SPEC --db OUT.parts/part-I.sqlite --shard auto
#      (--shard auto reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT: a fixed share of the sweep's blocks);
#   2. a merge job that starts when every task has succeeded (--dependency=afterok):
#        collapse-mc store merge OUT.sqlite OUT.parts/part-*.sqlite
# Extra arguments go to both sbatch calls (e.g. --partition=gpu --gres=gpu:1 --time=4:00:00). A failed or
# killed task: run the same command again; finished blocks are kept, the merge adds only what is new.
# Each task writes its own store: SQLite's WAL journal does not work when several hosts write one file over NFS.
# COLLAPSE_MC overrides the command (default: collapse-mc), e.g. COLLAPSE_MC="python -m collapse_mc".
set -euo pipefail

CMD=${COLLAPSE_MC:-collapse-mc}
usage() { echo "usage: $0 SPEC OUT.sqlite N [sbatch options ...]" >&2; exit 2; }

case "${1:-}" in
  --worker)  # one array task
    shift; spec=$1 out=$2
    exec $CMD sweep run "$spec" --db "$out.parts/part-${SLURM_ARRAY_TASK_ID}.sqlite" --shard auto --no-progress ;;
  --merge)   # after every task
    shift; spec=$1 out=$2 n=$3
    parts=()
    for ((i = 0; i < n; i++)); do parts+=("$out.parts/part-$i.sqlite"); done
    $CMD store merge "$out" "${parts[@]}"
    exec $CMD sweep status --db "$out" --spec "$spec" --shards "$n" ;;
esac

[[ $# -ge 3 ]] || usage
spec=$1 out=$2 n=$3
shift 3
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "$0: N must be a positive integer, got '$n'" >&2; exit 2; }
$CMD sweep check "$spec" > /dev/null  # a bad spec fails here, before anything is queued
mkdir -p "$out.parts"
self=$(realpath "$0")
array=$(sbatch --parsable --job-name=collapse-mc-shards --array="0-$((n - 1))" \
        --output="$out.parts/shard-%a.log" "$@" "$self" --worker "$spec" "$out")
array=${array%%;*}
merge=$(sbatch --parsable --job-name=collapse-mc-merge --dependency="afterok:$array" \
        --output="$out.parts/merge.log" "$@" "$self" --merge "$spec" "$out" "$n")
echo "submitted shards $array (array 0-$((n - 1))) and merge ${merge%%;*} -> $out"
