#!/usr/bin/env bash
# Time the README's test steps (nbdev-test, then pytest) at two commits, alternating, on this machine:
#   bash bench/suite_time.sh BASE_REV [ROUNDS]      (from the repository root, with .venv installed)
# Each commit is checked out in its own temporary worktree and imported from there (PYTHONPATH).
# Prints one line per run: commit, exit status, wall seconds, CPU seconds, pytest's summary. Run it alone.
set -euo pipefail
base=${1:?give the commit to compare against, e.g. HEAD~10}; rounds=${2:-2}
root=$(git rev-parse --show-toplevel); venv=$root/.venv/bin
tmp=$(mktemp -d); trap 'git -C "$root" worktree remove --force "$tmp/base" 2>/dev/null; git -C "$root" worktree remove --force "$tmp/head" 2>/dev/null; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/base" "$base"
git -C "$root" worktree add -q --detach "$tmp/head" HEAD
one() {  # one timed run in worktree $1, labelled $2
  local s e
  s=$(date +%s.%N)
  ( cd "$1" && export PYTHONPATH="$1" && /usr/bin/time -f "%U %S" -o "$tmp/cpu" bash -c \
      "$venv/nbdev-test > $tmp/nb.log 2>&1 && $venv/pytest -q tests > $tmp/py.log 2>&1" ) && rc=0 || rc=$?
  e=$(date +%s.%N)
  echo "$2 rc=$rc wall=$(echo "$e - $s" | bc | xargs printf '%.0f')s cpu=$(awk '{printf "%.0f", $1+$2}' "$tmp/cpu")s $(tail -1 "$tmp/py.log")"
}
for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then one "$tmp/base" "base $base"; one "$tmp/head" "HEAD"; else one "$tmp/head" "HEAD"; one "$tmp/base" "base $base"; fi
done
