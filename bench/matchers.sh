#!/usr/bin/env bash
# Instructions per call (callgrind) of a call decided by a rule with
# matchers (issue 13), in a dynamic glibc program (bench/matchers.c):
# `open` of a file three folders deep, decided by a path glob, and `sendto`
# to 127.0.0.1:9, decided by a CIDR block and a port range. Columns:
# unpatched; patched with a rule without matchers allowing the API (not
# hooked at all); with a rule with matchers that matches and allows (the
# facts gathered, the rule matched, no event); with one that matches and
# alerts (an event written to a file, its `match` object included).
# Each figure is (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels start-up.
# Usage: bench/matchers.sh [N1 N2] (default 2000 4000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$repo/target/bench-matchers}
n1=${1:-2000}
n2=${2:-4000}
dfpatch=${DFPATCH:-$repo/target/release/dfpatch}
[ -n "${DFPATCH:-}" ] || (cd "$repo" && cargo build --release -q -p dfpatch)
mkdir -p "$out/a/b"
echo x >"$out/a/b/file"
gcc -O2 -o "$out/matchers" "$repo/bench/matchers.c"
policy() { # NAME API MATCHERS ACTION
  printf 'mode = "monitor"\ndefault = "allow"\n[report]\nsink = "file:%s/events-%s.jsonl"\n' "$out" "$1" >"$out/$1.toml"
  printf '[[rule]]\nid = "r"\napis = ["%s"]\n%s\naction = "%s"\n' "$2" "$3" "$4" >>"$out/$1.toml"
  printf '[[rule]]\nid = "rest"\napis = ["%s"]\naction = "deny"\n' "$2" >>"$out/$1.toml"
  "$dfpatch" -q -p "$out/$1.toml" -o "$out/matchers-$1" "$out/matchers"
}
ir() {
  local f="$out/cg.$$"
  valgrind --tool=callgrind --callgrind-out-file="$f" "$@" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$f"
  rm -f "$f"
}
per_call() { # EXE ARGS-BEFORE-N
  local exe=$1
  shift
  local a b
  a=$(ir "$exe" "$@" "$n1")
  b=$(ir "$exe" "$@" "$n2")
  echo $(((b - a) / (n2 - n1)))
}
printf '%-7s %-34s %10s %10s %10s %10s\n' call matcher unpatched allowed matched "matched+alert"
row() { # CALL API MATCHERS ARGS...
  local call=$1 api=$2 m=$3
  shift 3
  printf 'mode = "monitor"\ndefault = "allow"\n' >"$out/allow-$api.toml"
  "$dfpatch" -q -p "$out/allow-$api.toml" -o "$out/matchers-allow-$api" "$out/matchers"
  policy "$api-match" "$api" "$m" allow
  policy "$api-alert" "$api" "$m" alert
  printf '%-7s %-34s %10s %10s %10s %10s\n' "$call" "$(echo "$m" | tr '\n' ' ')" "$(per_call "$out/matchers" "$@")" \
    "$(per_call "$out/matchers-allow-$api" "$@")" "$(per_call "$out/matchers-$api-match" "$@")" \
    "$(per_call "$out/matchers-$api-alert" "$@")"
}
row open open "path = [\"$out/a/**\"]" open "$out/a/b/file"
row sendto sendto $'ip = ["127.0.0.0/8", "::1"]\nport = ["1-100"]' sendto
