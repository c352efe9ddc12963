#!/usr/bin/env bash
# Checks that the sweep notices what it must, in a few seconds:
# 1. with a stand-in for dfpatch that misbehaves on purpose for some files, the sweep must
#    fail and name each fault: a program that behaves differently, one that crashes, and
#    a file dfpatch neither patched nor refused with a reason;
# 2. with the real dfpatch on a few files, the sweep must pass and see events.
# Usage: bash tests/sweep/selftest.sh [DFPATCH]   (as root, like the sweep)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dfpatch=$(realpath "${1:-$here/../../target/release/dfpatch}")
work=$(mktemp -d /var/tmp/dfpatch-sweep-selftest.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The stand-in: "patches" /usr/bin/true into a script that prints something else,
# /usr/bin/false into one that dies of SIGSEGV, fails on /usr/bin/echo without a reason,
# and hands everything else to the real dfpatch.
cat >"$work/dfpatch" <<EOF
#!/bin/sh
case "\$1" in policy) exec "$dfpatch" "\$@" ;; esac
out=\$5 file=\$6   # called as: dfpatch -q -p POLICY -o OUT FILE
case "\${file##*/}" in
  true)  printf '#!/bin/sh\necho surprise\n' >"\$out" ;;
  false) printf '#!/bin/sh\nkill -SEGV \$\$\n' >"\$out" ;;
  echo)  exit 3 ;;
  *)     exec "$dfpatch" "\$@" ;;
esac
chmod 755 "\$out"
EOF
chmod 755 "$work/dfpatch"

verdicts() { # JSON summary -> "path outcome" lines, and the number of events
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for f in d["files"]: print(f["path"], f["outcome"])
print("events", d["totals"]["events"])' "$1"
}

status=0
python3 "$here/sweep.py" --dfpatch "$work/dfpatch" --json "$work/bad.json" \
  /usr/bin/true /usr/bin/false /usr/bin/echo /usr/bin/dpkg >"$work/bad.txt" 2>&1 || status=$?
got=$(verdicts "$work/bad.json")
expected="/usr/bin/dpkg same
/usr/bin/echo patch-failed
/usr/bin/false crash
/usr/bin/true differ"
if [[ $status != 1 || $(grep -v '^events' <<<"$got") != "$expected" ]] ||
  ! grep -q '^RESULT: FAIL' "$work/bad.txt" || ! grep -q '^ *+surprise' "$work/bad.txt"; then
  echo "selftest: the sweep did not catch the faults (exit $status); verdicts:"; echo "$got"
  cat "$work/bad.txt"
  exit 1
fi

status=0
python3 "$here/sweep.py" --dfpatch "$dfpatch" --json "$work/good.json" \
  /usr/bin/true /usr/bin/dpkg /usr/bin/bash >"$work/good.txt" 2>&1 || status=$?
if [[ $status != 0 ]] || verdicts "$work/good.json" | grep -q '^events 0$'; then
  echo "selftest: the sweep failed with the real dfpatch on true, dpkg and bash (exit $status):"
  cat "$work/good.txt"
  exit 1
fi
echo "selftest: ok (faults caught; real dfpatch passes on true, dpkg, bash)"
