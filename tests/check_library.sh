#!/usr/bin/env bash
# check_library.sh - what the library may not do (docs/architecture.md,
# "Options and logging"), one "ok"/"FAIL" line per rule, as tests/run.sh
# expects. The library is every source but host/cli/, tests/ and bench/:
#   - it reads no environment variable (getenv, secure_getenv) and sets none
#     (setenv, unsetenv, putenv): options come in struct sd_runtime_opts;
#   - it never writes to stdout or stderr (printf, puts, putchar, perror,
#     vprintf, or naming stdout/stderr): messages go to the log callback.
#     Printing to a FILE* the caller passes in is fine;
#   - the sdrt command reads exactly the SDRT_* variables that
#     docs/running.md lists in its environment table.
set -u
cd "$(dirname "$0")/.."

check() { # name, offending lines
  if [ -z "$2" ]; then echo "ok $1"; else echo "FAIL $1:"; echo "$2" | sed 's/^/    /'; fi
}

lib=$(ls host/*/*.c host/*/*.h cpu/*.c cpu/*.h cl/*.c cl/*.h | grep -v '^host/cli/')
# "file:line: code" for every line of the files matching the pattern once
# comments are removed (so that a comment may name what the code may not do).
code_grep() {
  local pattern=$1; shift
  for f in "$@"; do
    perl -0777 -ne 's{/\*.*?\*/}{my $c = $&; $c =~ s/[^\n]//g; $c}gse; s{//[^\n]*}{}g;
      my $n = 0; for my $l (split /\n/, $_, -1) { $n++; print "'"$f"':$n: $l\n" if $l =~ /'"$pattern"'/ }' "$f"
  done
}

check "library: no getenv/setenv (options come in struct sd_runtime_opts)" \
  "$(code_grep '\b(secure_getenv|getenv|setenv|unsetenv|putenv)\s*\(' $lib)"
check "library: nothing written to stdout/stderr (messages go to the log callback)" \
  "$(code_grep '\b(printf|vprintf|puts|putchar|perror)\s*\(|\b(stderr|stdout)\b' $lib)"

code_vars=$(grep -oh '"SDRT_[A-Z0-9_]*"' host/cli/*.c | tr -d '"' | sort -u)
doc_vars=$(sed -n '/^## Environment variables/,/^## /p' docs/running.md | grep -o '^| `SDRT_[A-Z0-9_]*' | sed 's/^| `//' | sort -u)
check "docs/running.md lists every SDRT_ variable the sdrt command reads, and no other" \
  "$(diff <(echo "$code_vars") <(echo "$doc_vars") | grep '^[<>]' | sed 's/^</read by host\/cli but not in docs\/running.md:/; s/^>/in docs\/running.md but not read by host\/cli:/')"
