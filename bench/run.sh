#!/usr/bin/env bash
# dfpatch benchmark: what an allowed hooked call, a reported call and patching cost.
#
# Usage:  bench/run.sh            (from anywhere; takes a few minutes)
#
# Environment (all optional):
#   BENCH_OUT=DIR     where everything is built and written (default: <repo>/target/bench)
#   DFPATCH=PATH      use this dfpatch binary instead of building <repo>/target/release/dfpatch
#   ROUNDS=7          runs per configuration for the ns/call medians
#   PATCH_RUNS=5      runs per tool for the patch time / peak RSS medians
#   CG_N1=100000 CG_N2=200000   the two loop counts callgrind is run with
#   NS_N_EINVAL=10000000 NS_N_MMAP=200000 NS_N_MPROTECT=1000000 NS_N_OPEN=200000
#                     loop counts for ns/call
#   BIG_GROUPS=2100   size of the generated executable (12 KiB of code per group,
#                     plus its call frame information: ~40 MB)
#   BIG_NOCFI_GROUPS=3400  size of the worst case: the same code without call frame
#                     information, so no function start is known (~40 MB)
#   EXTRA_INPUTS="/usr/bin/node ..."  large real executables also patched in d. (if present)
#
# Needs: cargo, gcc, valgrind (callgrind, callgrind_annotate), hyperfine, patchelf,
# GNU time (/usr/bin/time), binutils (readelf, nm); strace is optional. On Debian:
#   apt-get update && apt-get install -y valgrind hyperfine patchelf time binutils gcc strace
# The run takes about 2 minutes on 2 CPUs; it needs ~300 MB in $BENCH_OUT.
#
# What it does (see bench/README.md for what each figure means):
#   0. builds dfpatch (cargo build --release), bench/calls.c (unpatched and
#      patched), bench/preload.c (the LD_PRELOAD forwarding wrappers: preload.so
#      looks the real function up on first call, preload-ctor.so in a constructor) and the
#      ~40 MB executable from bench/big_main.c + bench/big.S;
#   a. instructions per call under callgrind, from two loop counts, so
#      start-up cancels: (Ir(N2) - Ir(N1)) / (N2 - N1), for the calls
#      mmap-einval, mmap, mprotect (non-exec: the hook's allowed path) and
#      open (reported: one event per call), unpatched / patched / LD_PRELOAD;
#   b. ns per call, median of ROUNDS runs, the configurations interleaved
#      round by round (each run times its own loop with clock_gettime);
#      and process start-up to exit, unpatched vs patched (hyperfine);
#   c. the cost of a reported call: open() of a missing path under an
#      `alert` rule with a file sink (one event per call): instructions, ns,
#      user/system split, instructions per runtime function (callgrind) and
#      the system calls per event (strace -c);
#   d. patch time and peak RSS of dfpatch vs `patchelf --add-needed libm.so.6`
#      on a copy of /usr/bin/python3.11, on the generated ~40 MB executable (with
#      call frame information, like compiled code, and without: the worst case)
#      and on large real executables where present (EXTRA_INPUTS),
#      where dfpatch's instructions go on the big file (callgrind, inclusive),
#      and a check that the patched programs still run and report;
#   e. the bytes the runtime adds to a file, and its new PT_LOAD.
# Everything is printed, and the whole report is also saved to $BENCH_OUT/results.txt.
# Nothing outside $BENCH_OUT is written, except by `cargo build` in <repo>/target/release
# (system files are only read and copied).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${BENCH_OUT:-$ROOT/target/bench}
ROUNDS=${ROUNDS:-7}
PATCH_RUNS=${PATCH_RUNS:-5}
CG_N1=${CG_N1:-100000}
CG_N2=${CG_N2:-200000}
NS_N_EINVAL=${NS_N_EINVAL:-10000000}
NS_N_MMAP=${NS_N_MMAP:-200000}
NS_N_MPROTECT=${NS_N_MPROTECT:-1000000}
NS_N_OPEN=${NS_N_OPEN:-200000}
BIG_GROUPS=${BIG_GROUPS:-2100}
BIG_NOCFI_GROUPS=${BIG_NOCFI_GROUPS:-3400}
# Large real programs to patch too, where present (only read).
EXTRA_INPUTS=${EXTRA_INPUTS:-/usr/bin/node /usr/bin/x86_64-linux-gnu-lto-dump-12}
PYTHON=${PYTHON:-/usr/bin/python3.11}
CC=${CC:-gcc}
CFLAGS="-O2 -U_FORTIFY_SOURCE -Wall -Wextra"

mkdir -p "$OUT"
exec > >(tee "$OUT/results.txt") 2>&1

die() { echo "run.sh: $*" >&2; exit 1; }
for tool in "$CC" valgrind hyperfine patchelf readelf /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y valgrind hyperfine patchelf time binutils gcc)"
done

# median of the numbers on stdin (one per line)
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) exit 1; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# min and max of the numbers on stdin, as "min..max"
range() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s..%s", lo, hi}'; }
hr() { printf '%s\n' "------------------------------------------------------------------------------"; }

echo "dfpatch benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo "tools: $($CC --version | head -1); $(valgrind --version); $(hyperfine --version); patchelf $(patchelf --version | awk '{print $2}')"
echo "glibc: $(ldd --version | head -1)"
echo "output folder: $OUT"

# ---------------------------------------------------------------- 0. build
hr; echo "0. build"
if [[ -z "${DFPATCH:-}" ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
    DFPATCH=$ROOT/target/release/dfpatch
fi
[[ -x "$DFPATCH" ]] || die "no dfpatch binary at $DFPATCH"
echo "dfpatch: $DFPATCH ($("$DFPATCH" --version)), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"

$CC $CFLAGS -o "$OUT/calls" "$HERE/calls.c"
$CC $CFLAGS -fPIC -shared -o "$OUT/preload.so" "$HERE/preload.c" -ldl
$CC $CFLAGS -fPIC -shared -DRESOLVE_IN_CONSTRUCTOR -o "$OUT/preload-ctor.so" "$HERE/preload.c" -ldl

# The bench policy: monitor mode, allow by default, alert on exec, file and
# memory calls (memory calls enter the runtime only with PROT_EXEC), events to a file.
EVENTS=$OUT/events.jsonl
cat > "$OUT/bench.toml" <<EOF
mode = "monitor"
default = "allow"

[report]
sink = "file:$EVENTS"

[[rule]]
id = "mem"
apis = ["memory"]
action = "alert"

[[rule]]
id = "exec"
apis = ["exec"]
action = "alert"

[[rule]]
id = "file"
apis = ["file"]
action = "alert"
EOF
POLICY=$OUT/bench.toml

"$DFPATCH" -q -o "$OUT/calls.patched" --policy "$POLICY" "$OUT/calls"
"$DFPATCH" inspect --policy "$POLICY" "$OUT/calls" > "$OUT/calls.inspect"
for f in mmap mprotect open; do
    grep -qE "^  $f +GOT" "$OUT/calls.inspect" || die "$f is not hooked in calls.patched (see $OUT/calls.inspect)"
done
echo "calls.patched hooks: $(awk '/^hooks/ {on=1; next} /^[a-z]/ {on=0} on {printf "%s ", $1}' "$OUT/calls.inspect")"

# The ~40 MB executable (rebuilt only when its sources or size change).
BIG=$OUT/big
if [[ ! -x $BIG || $HERE/big.S -nt $BIG || $HERE/big_main.c -nt $BIG || "$(cat "$BIG.groups" 2>/dev/null)" != "$BIG_GROUPS" ]]; then
    echo "assembling the big executable ($BIG_GROUPS groups)..."
    $CC -O2 -U_FORTIFY_SOURCE -DBIG_GROUPS="$BIG_GROUPS" -o "$BIG" "$HERE/big_main.c" "$HERE/big.S"
    echo "$BIG_GROUPS" > "$BIG.groups"
fi
BIG_NOCFI=$OUT/big-nocfi
if [[ ! -x $BIG_NOCFI || $HERE/big.S -nt $BIG_NOCFI || $HERE/big_main.c -nt $BIG_NOCFI || "$(cat "$BIG_NOCFI.groups" 2>/dev/null)" != "$BIG_NOCFI_GROUPS" ]]; then
    echo "assembling the big executable without call frame information ($BIG_NOCFI_GROUPS groups)..."
    $CC -O2 -U_FORTIFY_SOURCE -DBIG_NO_CFI -DBIG_GROUPS="$BIG_NOCFI_GROUPS" -o "$BIG_NOCFI" "$HERE/big_main.c" "$HERE/big.S"
    echo "$BIG_NOCFI_GROUPS" > "$BIG_NOCFI.groups"
fi
cp "$PYTHON" "$OUT/python3.11"
PY=$OUT/python3.11
echo "inputs: calls $(stat -c %s "$OUT/calls") B, python3.11 $(stat -c %s "$PY") B, big $(stat -c %s "$BIG") B"

# Runs configuration $1 (unpatched | patched | preload | preload-ctor) of calls with CALL N.
run_cfg() {
    local cfg=$1; shift
    case $cfg in
        unpatched) "$OUT/calls" "$@" ;;
        patched) "$OUT/calls.patched" "$@" ;;
        preload) LD_PRELOAD=$OUT/preload.so "$OUT/calls" "$@" ;;
        preload-ctor) LD_PRELOAD=$OUT/preload-ctor.so "$OUT/calls" "$@" ;;
        *) die "unknown configuration $cfg" ;;
    esac
}
CFGS=(unpatched patched preload preload-ctor)

# ---------------------------------------------------------------- a. instructions per call
hr; echo "a. instructions per call (callgrind Ir; (Ir(N=$CG_N2) - Ir(N=$CG_N1)) / $((CG_N2 - CG_N1)); user-space only)"
# Ir count of one run of configuration $1 with CALL $2 N $3.
ir() {
    local cfg=$1 call=$2 n=$3 log=$OUT/cg.log
    : > "$EVENTS"
    case $cfg in
        unpatched) valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$OUT/calls" "$call" "$n" ;;
        patched) valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$OUT/calls.patched" "$call" "$n" ;;
        preload) LD_PRELOAD=$OUT/preload.so valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$OUT/calls" "$call" "$n" ;;
        preload-ctor) LD_PRELOAD=$OUT/preload-ctor.so valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$OUT/calls" "$call" "$n" ;;
    esac > /dev/null 2> "$log" || { cat "$log" >&2; die "valgrind failed on $cfg $call $n"; }
    grep -q 'Collected' "$log" || { cat "$log" >&2; die "no callgrind total for $cfg $call $n"; }
    awk '/Collected/ {gsub(",", "", $4); print $4}' "$log"
}
declare -A IRPC IRSTART
CALLS=(mmap-einval mmap mprotect open)
for call in "${CALLS[@]}"; do
    for cfg in "${CFGS[@]}"; do
        a=$(ir "$cfg" "$call" "$CG_N1")
        b=$(ir "$cfg" "$call" "$CG_N2")
        if [[ $cfg == patched && $call == open ]]; then
            # every call (and the warm-up call) must have produced one event
            got=$(wc -l < "$EVENTS")
            [[ $got -eq $((CG_N2 + 1)) ]] || echo "WARNING: $got events for $((CG_N2 + 1)) open calls under valgrind"
            # kept for the per-function breakdown in c.
            cp "$OUT/cg.out" "$OUT/cg-open-patched.out"
            head -n 1 "$EVENTS" > "$OUT/event-under-valgrind.json"
        fi
        IRPC[$call.$cfg]=$(awk -v a="$a" -v b="$b" -v d=$((CG_N2 - CG_N1)) 'BEGIN {printf "%.2f", (b - a) / d}')
        # the intercept: what the run costs besides the loop (start-up, exit)
        IRSTART[$call.$cfg]=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%d", 2 * a - b}')
    done
done
# difference $1 - $2
minus() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.2f", a - b}'; }
printf '%-12s %10s %10s %10s %12s | %-24s\n' call unpatched patched preload preload-ctor "extra vs unpatched: patched / preload / preload-ctor"
for call in "${CALLS[@]}"; do
    u=${IRPC[$call.unpatched]}
    printf '%-12s %10s %10s %10s %12s | %s / %s / %s\n' "$call" "$u" "${IRPC[$call.patched]}" "${IRPC[$call.preload]}" \
        "${IRPC[$call.preload-ctor]}" "$(minus "${IRPC[$call.patched]}" "$u")" "$(minus "${IRPC[$call.preload]}" "$u")" \
        "$(minus "${IRPC[$call.preload-ctor]}" "$u")"
done
echo "(mmap-einval = mmap with a misaligned offset, refused by glibc before any system call;"
echo " mmap = mmap+munmap of one RW page; mprotect = RW->RW; all three non-exec: the patched figure"
echo " is the stub's allowed path. open = ENOENT; patched, every call writes one event: see c.)"
echo "start-up + exit instructions (intercept 2*Ir(N1)-Ir(N2)), mprotect runs:" \
     "unpatched ${IRSTART[mprotect.unpatched]}, patched ${IRSTART[mprotect.patched]}," \
     "preload ${IRSTART[mprotect.preload]}, preload-ctor ${IRSTART[mprotect.preload-ctor]}"

# ---------------------------------------------------------------- b. ns per call
hr; echo "b. ns per call: median (and min..max) of $ROUNDS runs, configurations interleaved"
declare -A NS
ns_table() {
    local call=$1 n=$2 cfg r
    declare -A samples=()
    for ((r = 0; r < ROUNDS; r++)); do
        for cfg in "${CFGS[@]}"; do
            : > "$EVENTS"
            samples[$cfg]+="$(run_cfg "$cfg" "$call" "$n" | awk '{print $4}') "
        done
    done
    for cfg in "${CFGS[@]}"; do
        NS[$call.$cfg]=$(tr ' ' '\n' <<<"${samples[$cfg]}" | grep . | median)
        NS[$call.$cfg.range]=$(tr ' ' '\n' <<<"${samples[$cfg]}" | grep . | range)
    done
}
ns_table mmap-einval "$NS_N_EINVAL"
ns_table mmap "$NS_N_MMAP"
ns_table mprotect "$NS_N_MPROTECT"
ns_table open "$NS_N_OPEN"
: > "$EVENTS"
getpid_ns=$(for ((r = 0; r < ROUNDS; r++)); do "$OUT/calls" getpid 1000000 | awk '{print $4}'; done | median)
printf '%-12s %8s %-26s %-26s %-26s %-26s | %s\n' call N unpatched patched preload preload-ctor \
    "extra vs unpatched (medians): patched / preload / preload-ctor"
for call in "${CALLS[@]}"; do
    case $call in mmap-einval) n=$NS_N_EINVAL ;; mmap) n=$NS_N_MMAP ;; mprotect) n=$NS_N_MPROTECT ;; open) n=$NS_N_OPEN ;; esac
    u=${NS[$call.unpatched]}
    printf '%-12s %8s' "$call" "$n"
    for cfg in "${CFGS[@]}"; do printf ' %-26s' "${NS[$call.$cfg]} (${NS[$call.$cfg.range]})"; done
    printf ' | %s / %s / %s\n' "$(minus "${NS[$call.patched]}" "$u")" "$(minus "${NS[$call.preload]}" "$u")" \
        "$(minus "${NS[$call.preload-ctor]}" "$u")"
done
echo "reference: getpid() (never hooked) ${getpid_ns} ns/call, unpatched"
startup=$(hyperfine -N --runs 100 --warmup 5 --export-csv "$OUT/startup.csv" \
    "$OUT/calls none 1" "$OUT/calls.patched none 1" > /dev/null 2>&1 &&
    awk -F, 'NR > 1 {printf "%s%.0f us", (NR > 2 ? ", patched " : "unpatched "), $4 * 1e6}' "$OUT/startup.csv")
echo "process start-up to exit (hyperfine median, \`calls none 1\`): $startup"

# ---------------------------------------------------------------- c. reported call
hr; echo "c. a reported call: open(ENOENT) under an alert rule, one JSON event appended to a file per call"
: > "$EVENTS"
"$OUT/calls.patched" open 1000 > /dev/null
events=$(wc -l < "$EVENTS")
bytes=$(stat -c %s "$EVENTS")
echo "event check: 1001 open calls -> $events events, $((bytes / events)) bytes each; last one:"
tail -n 1 "$EVENTS"
printf 'instructions per reported call: %s (unpatched open: %s; +%s)\n' "${IRPC[open.patched]}" "${IRPC[open.unpatched]}" \
    "$(awk -v a="${IRPC[open.patched]}" -v b="${IRPC[open.unpatched]}" 'BEGIN {print a - b}')"
printf 'ns per reported call: %s (unpatched open: %s; +%s)\n' "${NS[open.patched]}" "${NS[open.unpatched]}" \
    "$(awk -v a="${NS[open.patched]}" -v b="${NS[open.unpatched]}" 'BEGIN {print a - b}')"
# user vs system time of the event path
for cfg in unpatched patched; do
    : > "$EVENTS"
    case $cfg in unpatched) bin=$OUT/calls ;; patched) bin=$OUT/calls.patched ;; esac
    /usr/bin/time -f "%U %S" -o "$OUT/time.txt" "$bin" open "$NS_N_OPEN" > /dev/null
    read -r u s < "$OUT/time.txt"
    awk -v c="$cfg" -v u="$u" -v s="$s" -v n="$NS_N_OPEN" \
        'BEGIN {printf "  %-9s open x %d: user %.0f ns/call, system %.0f ns/call\n", c, n, u * 1e9 / n, s * 1e9 / n}'
done
# Where the instructions of an event go, by runtime function. The runtime has
# no symbols in the patched file (callgrind shows ???:0xADDR), so addresses are
# mapped back to the runtime image cargo built: run-time address = load base +
# runtime segment address (from `dfpatch inspect`) + (symbol - image's first
# executable address). The load base comes from the event itself:
# return_address - offset - 5 (calls.c calls open with a 5-byte call rel32).
rt_img=$( (ls -t "$ROOT"/target/release/build/dfpatch-*/out/runtime-target/x86_64-unknown-none/release/dfpatch-runtime 2>/dev/null || true) | head -n 1)
if [[ -n $rt_img && -s $OUT/cg-open-patched.out ]]; then
    ev=$(cat "$OUT/event-under-valgrind.json")
    # The caller's (the first of each: the stack's frames have offsets too).
    ret=$(grep -o '"return_address":"0x[0-9a-f]*"' <<<"$ev" | head -n 1 | cut -d'"' -f4)
    off=$(grep -o '"offset":"0x[0-9a-f]*"' <<<"$ev" | head -n 1 | cut -d'"' -f4)
    base=$((ret - off - 5))
    seg=$(grep -o 'runtime segment at 0x[0-9a-f]*' "$OUT/calls.inspect" | awk '{print $4}')
    rx_start=$(readelf -lW "$rt_img" | awk '$1 == "LOAD" && $7 == "R" && $8 == "E" {print $3; exit}')
    mapfile -t syms < <(nm -n -C "$rt_img" | awk '$2 ~ /^[tT]$/ {a = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print a, $0}')
    sym_at() { # symbol containing image address $1
        local best=? line
        for line in "${syms[@]}"; do
            (( 16#${line%% *} <= $1 )) || break
            best=${line#* }
        done
        echo "$best"
    }
    nev=$((CG_N2 + 1))
    echo "instructions per event by function (callgrind, $nev events; runtime image $rt_img):"
    callgrind_annotate "$OUT/cg-open-patched.out" 2> /dev/null | grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | head -n 12 |
    while read -r line; do
        n=${line%% *}; n=${n//,/}
        per=$((n / nev))
        (( per >= 20 )) || continue
        if [[ $line =~ \?\?\?:0x([0-9a-f]+) ]]; then
            img=$((16#${BASH_REMATCH[1]} - base - seg + rx_start))
            name="runtime: $(sym_at "$img")"
        else
            fn=$(awk '{print $(NF-1)}' <<<"$line") obj=$(awk '{print $NF}' <<<"$line")
            name="$(basename "${obj%]}"): ${fn##*:}"
        fi
        printf '  %7d  %s\n' "$per" "$name"
    done
fi
if command -v strace > /dev/null; then
    echo "system calls per open() call, patched (strace -c of 10000 calls; the real openat included):"
    : > "$EVENTS"
    strace -f -c -o "$OUT/strace.txt" "$OUT/calls.patched" open 10000 > /dev/null
    awk '$4 ~ /^[0-9]+$/ && $4 >= 10000 && $NF != "total" {printf "  %-16s %5.2f\n", $NF, $4 / 10001; t += $4 / 10001} END {printf "  %-16s %5.2f\n", "total", t}' "$OUT/strace.txt"
fi
: > "$EVENTS"

# ---------------------------------------------------------------- d. patch time and peak RSS
hr; echo "d. patch time and peak RSS: median of $PATCH_RUNS runs of /usr/bin/time -f '%e %M' (s, KiB),"
echo "   and hyperfine median of 10 runs (ms); both tools write a new file"
# median "seconds KiB" of PATCH_RUNS runs of the command
timed() {
    local r secs=() kib=()
    for ((r = 0; r < PATCH_RUNS; r++)); do
        /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" > /dev/null 2>&1 || die "failed: $*"
        read -r s k < "$OUT/time.txt"
        secs+=("$s"); kib+=("$k")
    done
    echo "$(printf '%s\n' "${secs[@]}" | median) $(printf '%s\n' "${kib[@]}" | median)"
}
printf '%-22s %12s %10s %12s %12s %12s\n' input "size (B)" tool "time (s)" "hyperfine ms" "peak RSS KiB"
extra=()
for x in $EXTRA_INPUTS; do [[ -f $x ]] && extra+=("$x"); done
for input in "$PY" "$BIG" "$BIG_NOCFI" "${extra[@]}"; do
    name=$(basename "$input")
    d_cmd=("$DFPATCH" -q -o "$OUT/$name.dfpatch" --policy "$POLICY" "$input")
    p_cmd=(patchelf --add-needed libm.so.6 --output "$OUT/$name.patchelf" "$input")
    read -r d_s d_k <<<"$(timed "${d_cmd[@]}")"
    read -r p_s p_k <<<"$(timed "${p_cmd[@]}")"
    hyperfine -N --runs 10 --warmup 2 --export-csv "$OUT/patch-$name.csv" "${d_cmd[*]}" "${p_cmd[*]}" > /dev/null 2>&1 \
        || die "hyperfine failed on $name"
    d_ms=$(awk -F, 'NR == 2 {printf "%.1f", $4 * 1000}' "$OUT/patch-$name.csv")
    p_ms=$(awk -F, 'NR == 3 {printf "%.1f", $4 * 1000}' "$OUT/patch-$name.csv")
    printf '%-22s %12s %10s %12s %12s %12s\n' "$name" "$(stat -c %s "$input")" dfpatch "$d_s" "$d_ms" "$d_k"
    printf '%-22s %12s %10s %12s %12s %12s\n' "" "" patchelf "$p_s" "$p_ms" "$p_k"
done
# Where dfpatch's time goes on the big file: callgrind, inclusive cost of its main steps.
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg-dfpatch-big.out" \
    "$DFPATCH" -q -o "$OUT/big.dfpatch.cg" --policy "$POLICY" "$BIG" > /dev/null 2> "$OUT/cg.log" \
    || { cat "$OUT/cg.log" >&2; die "callgrind on dfpatch failed"; }
rm -f "$OUT/big.dfpatch.cg"
total=$(awk '/Collected/ {gsub(",", "", $4); print $4}' "$OUT/cg.log")
code=0
for size in $(readelf -SW "$BIG" | awk '/^ *\[ *[0-9]+\]/ {sub(/^ *\[ *[0-9]+\] */, ""); if ($7 ~ /X/) print $5}'); do
    code=$((code + 16#$size))
done
echo "dfpatch on big under callgrind: $total instructions in all; inclusive:"
callgrind_annotate --inclusive=yes "$OUT/cg-dfpatch-big.out" 2> /dev/null |
    grep -E ':(dfpatch::plt::find_sites|iced_x86::decoder::Decoder::decode_out_ptr|dfpatch::fsio::write_atomic|dfpatch::elf::Elf::parse|dfpatch::inject::apply) \[' |
    sed 's/( */(/' | awk -v code="$code" '{n = $1; gsub(",", "", n); f = $3; sub(/^.*:/, "", f); printf "  %-45s %14s %8s  %6.1f per byte of code\n", f, $1, $2, n / code}'
echo "  (code = $code bytes in executable sections)"
echo "dfpatch summary on the big file:"
"$DFPATCH" -o "$OUT/big.dfpatch" --policy "$POLICY" "$BIG" 2>&1 | sed 's/^/  /'
: > "$EVENTS"
if out=$("$OUT/big.dfpatch" 2>&1); then
    echo "patched big runs: \"$out\"; events: $(wc -l < "$EVENTS") ($(grep -o '"api":"[a-z0-9_]*"' "$EVENTS" | cut -d'"' -f4 | paste -sd, -))"
else
    echo "PATCHED BIG FAILED: exit $?: $out"
fi
if out=$("$OUT/python3.11.dfpatch" -c 'import os, subprocess; subprocess.run(["true"]); print("ok", len(os.listdir("/")) > 0)' 2>&1); then
    echo "patched python3.11 runs: \"$out\"; events: $(wc -l < "$EVENTS") in total"
else
    echo "PATCHED PYTHON FAILED: $out"
fi
: > "$EVENTS"

# ---------------------------------------------------------------- e. size added
hr; echo "e. what the runtime adds to a file"
printf '%-14s %12s %12s %10s %14s %14s\n' file original patched added "new PT_LOAD" "RW tail grew"
for pair in "calls:calls.patched" "python3.11:python3.11.dfpatch" "big:big.dfpatch"; do
    o=$OUT/${pair%%:*} p=$OUT/${pair#*:}
    so=$(stat -c %s "$o") sp=$(stat -c %s "$p")
    new=$( (diff <(readelf -lW "$o" | grep ' LOAD ') <(readelf -lW "$p" | grep ' LOAD ') || true) | grep '^>' | grep 'R E' | head -1)
    # fields of a LOAD line: LOAD offset vaddr paddr filesz memsz flags... align
    filesz=$(($(awk '{print $6}' <<<"$new")))
    # growth of the memory size of the last RW PT_LOAD (the runtime's zero-filled state)
    rwo=$(($(readelf -lW "$o" | grep ' LOAD ' | grep 'RW ' | tail -1 | awk '{print $6}')))
    rwp=$(($(readelf -lW "$p" | grep ' LOAD ' | grep 'RW ' | tail -1 | awk '{print $6}')))
    printf '%-14s %12s %12s %10s %14s %14s\n' "${pair%%:*}" "$so" "$sp" "$((sp - so))" "$filesz" "$((rwp - rwo))"
done
echo "program headers of calls.patched (the R E PT_LOAD at the end is dfpatch's; it was a PT_NOTE):"
readelf -lW "$OUT/calls.patched" | sed -n '/Program Headers/,/^$/p' | grep -E 'Type|LOAD|NOTE|PHDR' | sed 's/^/  /'
echo "sections dfpatch added:"
readelf -SW "$OUT/calls.patched" | grep -E '\.dfpatch' | sed 's/^/  /'
hr
echo "report saved to $OUT/results.txt"
