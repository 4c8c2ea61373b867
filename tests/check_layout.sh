#!/usr/bin/env bash
# check_layout.sh - the source layout rules (docs/architecture.md, "Layout"),
# one "ok"/"FAIL" line per rule, as tests/run.sh expects:
#   - host/core/ includes nothing but host/core/ headers (and system headers);
#   - the backends (cpu/, cl/) include nothing from host/model, text, gen, cli;
#   - host/queue/ (Redis) includes only itself and host/core/;
#   - includes name a header alone, never a relative path ("../x/y.h").
set -u
cd "$(dirname "$0")/.."

# Prints "file: header" for every quoted include of the files given whose
# header is not one of the allowed folders' files.
disallowed() {
  local allowed=$1; shift
  for f in "$@"; do
    grep -o '^#include "[^"]*"' "$f" | sed 's/#include "\(.*\)"/\1/' | while read -r h; do
      ok=0
      for d in $allowed; do [ -e "$d/$h" ] && ok=1; done
      [ $ok -eq 1 ] || echo "$f: $h"
    done
  done
}

check() { # name, offending lines
  if [ -z "$2" ]; then echo "ok $1"; else echo "FAIL $1:"; echo "$2" | sed 's/^/    /'; fi
}

core=$(ls host/core/*.c host/core/*.h)
check "layout: host/core includes only host/core" "$(disallowed "host/core" $core)"
backends=$(ls cpu/*.c cpu/*.h cl/*.c cl/*.h)
check "layout: backends include only themselves, host/core and host/io" \
  "$(disallowed "cpu cl host/core host/io build/gen" $backends)"
queue=$(ls host/queue/*.c host/queue/*.h)
check "layout: host/queue (the Redis client) includes only itself and host/core" "$(disallowed "host/queue host/core" $queue)"
check "layout: includes name headers, not relative paths" \
  "$(grep -rn '^#include "\.\./' host cpu cl tests bench --include='*.c' --include='*.h')"
check "layout: every C file sits in a folder (host/ has no loose sources)" "$(ls host/*.c host/*.h 2>/dev/null)"
