#!/usr/bin/env bash
# Instructions per call (callgrind) of one API of each class issue 12 added,
# in a dynamic glibc program (bench/doors.c): unpatched; patched with the
# class allowed (not hooked at all); patched with the class alerted (every
# call reported: an event written to a file); and, for the calls that are
# never of interest (`send` with no address, `prctl(PR_GET_DUMPABLE)`),
# patched with their API watched. Each figure is (Ir(N2) - Ir(N1)) / (N2 - N1),
# which cancels start-up. Usage: bench/doors.sh [N1 N2] (default 2000 4000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$repo/target/bench-doors}
n1=${1:-2000}
n2=${2:-4000}
dfpatch=${DFPATCH:-$repo/target/release/dfpatch}
[ -n "${DFPATCH:-}" ] || (cd "$repo" && cargo build --release -q -p dfpatch)
mkdir -p "$out"
gcc -O2 -o "$out/doors" "$repo/bench/doors.c"
policy() { # NAME MODE RULE-APIS ACTION
  printf 'mode = "monitor"\ndefault = "allow"\n[report]\nsink = "file:%s/events-%s.jsonl"\n[[rule]]\nid = "r"\napis = [%s]\naction = "%s"\n' \
    "$out" "$1" "$2" "$3" >"$out/$1.toml"
  "$dfpatch" -q -p "$out/$1.toml" -o "$out/doors-$1" "$out/doors"
}
ir() { # EXE CALL N
  local f="$out/cg.$$"
  valgrind --tool=callgrind --callgrind-out-file="$f" "$1" "$2" "$3" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$f"
  rm -f "$f"
}
per_call() { # EXE CALL
  local a b
  a=$(ir "$1" "$2" "$n1")
  b=$(ir "$1" "$2" "$n2")
  echo $(((b - a) / (n2 - n1)))
}
printf '%-11s %-10s %10s %10s %10s\n' call class unpatched allowed reported
for row in "sendto network" "unlink file" "setresuid privilege" "unshare admin" "pvm-read debug" \
  "memfd exec" "uring io_uring"; do
  set -- $row
  policy "$2-allow" "\"$2\"" allow
  policy "$2-alert" "\"$2\"" alert
  printf '%-11s %-10s %10s %10s %10s\n' "$1" "$2" "$(per_call "$out/doors" "$1")" \
    "$(per_call "$out/doors-$2-allow" "$1")" "$(per_call "$out/doors-$2-alert" "$1")"
done
printf '\n%-11s %-10s %10s %10s\n' call watched unpatched "watched, not of interest"
for row in "send sendto" "prctl-name prctl"; do
  set -- $row
  policy "$2-watch" "\"$2\"" alert
  printf '%-11s %-10s %10s %10s\n' "$1" "$2" "$(per_call "$out/doors" "$1")" "$(per_call "$out/doors-$2-watch" "$1")"
done
