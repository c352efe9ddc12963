#!/usr/bin/env bash
# Builds the seed inputs of the fuzz targets into fuzz/seeds-generated/<target>/
# (not committed: they are made from the samples and the toolchain on this
# machine). Run from anywhere; needs gcc, musl-gcc (musl-tools), strip, cargo.
#
#   elf           samples/benign.c and samples/behaviours.c built the ways the
#                 e2e tests build them (PIE, -no-pie, -fno-plt + now/relro, CET,
#                 stripped, musl-gcc), smaller link variants, static builds
#                 (musl and glibc: refused by dfpatch today, but they exercise
#                 the reader), two tiny -nostdlib programs, /bin/true, and
#                 dfpatch's own output for a few of them (for the
#                 is_patched / restore / --force paths)
#   policy        the bundled presets (`dfpatch policy show NAME`) and the
#                 hand-written fuzz/seeds/policy/*.toml (some invalid on purpose)
#   policy_table  every valid policy above, compiled (examples/make_table_seeds.rs)
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$fuzz")"
out="$fuzz/seeds-generated"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

rm -rf "$out"
mkdir -p "$out/elf" "$out/policy" "$out/policy_table"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- elf ---------------------------------------------------------------------
build() { # name compiler source flags...
  local name=$1 cc=$2 src=$3
  shift 3
  "$cc" "$@" -o "$out/elf/$name" "$src"
}
for sample in benign behaviours; do
  src="$root/samples/$sample.c"
  build "$sample-pie" cc "$src" -O2
  build "$sample-nopie" cc "$src" -O2 -no-pie
  build "$sample-noplt-now" cc "$src" -O2 -fno-plt -Wl,-z,now,-z,relro
  build "$sample-cet" cc "$src" -O2 -fcf-protection=full
  build "$sample-musl" musl-gcc "$src" -O2
  strip -o "$out/elf/$sample-pie-stripped" "$out/elf/$sample-pie"
  # Smaller files (no separate code pages), so the fuzzer mutates less padding.
  build "$sample-small" cc "$src" -O2 -Wl,-z,noseparate-code
  build "$sample-small-nopie-stripped" cc "$src" -O2 -no-pie -s -Wl,-z,noseparate-code
done
build benign-musl-static musl-gcc "$root/samples/benign.c" -O2 -static
build benign-static-stripped cc "$root/samples/benign.c" -O2 -static -s

# Two tiny programs without the C run-time start files: one dynamic (calls
# system and _exit through the PLT), one static with no libc at all.
cat >"$tmp/tiny.c" <<'EOF'
#include <stdlib.h>
#include <unistd.h>
void _start(void) { _exit(system("true")); }
EOF
cat >"$tmp/bare.c" <<'EOF'
void _start(void) { __asm__ volatile("mov $60, %eax\n xor %edi, %edi\n syscall"); }
EOF
cc -O2 -nostartfiles -no-pie -Wl,-z,noseparate-code -s -o "$out/elf/tiny-dynamic" "$tmp/tiny.c"
cc -O2 -nostdlib -static -Wl,-z,noseparate-code -s -o "$out/elf/tiny-static" "$tmp/bare.c"
cp /bin/true "$out/elf/bin-true"

cargo build --quiet --manifest-path "$root/Cargo.toml" -p dfpatch
dfpatch="$CARGO_TARGET_DIR/debug/dfpatch"
for name in benign-small behaviours-nopie behaviours-musl tiny-dynamic; do
  "$dfpatch" -q --preset monitor-all -o "$out/elf/$name-patched" "$out/elf/$name"
done

# --- policy ------------------------------------------------------------------
for name in default monitor-all block-exec strict; do
  "$dfpatch" policy show "$name" >"$out/policy/preset-$name.toml"
done
cp "$fuzz"/seeds/policy/*.toml "$out/policy/"

# --- policy_table ------------------------------------------------------------
cargo run --quiet --manifest-path "$fuzz/Cargo.toml" --example make_table_seeds -- \
  "$out/policy_table" "$out"/policy/*.toml >/dev/null

for t in elf policy policy_table; do
  printf '%-13s %3d files, %8d bytes\n' "$t" "$(ls "$out/$t" | wc -l)" "$(cat "$out/$t"/* | wc -c)"
done
