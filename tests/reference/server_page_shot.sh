#!/bin/sh
# server_page_shot.sh - docs/img/server-page.png: the server's page (GET /) in
# headless Chromium (Debian's `chromium`, as tests/test_server.c drives it),
# drawing with the demo model: `sdrt serve` on a free loopback port, the page
# opened with its form filled from the query string and autorun=1, the window
# captured once the job is done (virtual time budget), the server stopped.
#
#   tests/reference/server_page_shot.sh [SDRT] [OUT]    (from the repository root)
set -eu
SDRT=${1:-build/sdrt}
OUT=${2:-docs/img/server-page.png}
log=$(mktemp)
"$SDRT" serve --model tests/models/demo --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
url=
for _ in $(seq 1 100); do
    url=$(sed -n 's/.*serving on \(http:[^ ]*\).*/\1/p' "$log")
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$log" >&2; echo "server_page_shot: the server did not start" >&2; exit 1; }
q='autorun=1&prompt=a%20blue%20triangle%20on%20a%20gray%20background&width=32&height=32&steps=20&seed=7'
timeout 120 chromium --headless=new --no-sandbox --disable-gpu --virtual-time-budget=30000 \
    --window-size=900,760 --screenshot="$OUT" "$url/?$q" >/dev/null 2>&1
echo "wrote $OUT"
