#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-api-examples.sh — runs the curl examples of docs/api.md against a real server and
# fails when an answer no longer matches the output printed under it.
#
# Every ```sh block of docs/api.md runs, in document order, in one shell (so TOKEN, PRODUCT,
# ORDER … carry over), against a fresh `emporium serve` on SQLite with default settings and
# the demo catalog. When a fenced block follows a ```sh block directly, it is that command's
# expected output. Both are compared after normalising what differs from run to run (ids,
# tokens, timestamps, cursors, request ids, trace ids, Content-Length, Date) and removing all
# whitespace; "…" in the expected output skips anything. Needs curl, jq and perl.
# Usage: scripts/check-api-examples.sh BIN [DOC]      (BIN: the emporium binary)
#        CHECK_API_KEEP=1 …   keeps the work directory: each block's real output is in
#        blocks/NNN.out, ready to paste into the page after a change of the API.
set -euo pipefail
bin=$(realpath "${1:?usage: check-api-examples.sh BIN [DOC]}")
doc=$(realpath "${2:-$(dirname "$0")/../docs/api.md}")
for tool in curl jq perl; do
  command -v "$tool" >/dev/null || { echo "check-api-examples: $tool is required" >&2; exit 1; }
done
work=$(mktemp -d /tmp/emporium-api-examples.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "${CHECK_API_KEEP:-}" ]; then
    echo "check-api-examples: kept $work (blocks/NNN.sh, .expected, .out)" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- the blocks -------------------------------------------------------------------------
mkdir -p "$work/blocks" "$work/run"
n=$(perl -e '
my ($doc, $dir) = @ARGV;
open(my $fh, "<", $doc) or die "cannot read $doc\n";
my @lines = <$fh>;
my ($i, $k) = (0, 0);
while ($i < @lines) {
    if ($lines[$i] =~ /^```sh\s*$/) {
        my $body = ""; $i++;
        while ($i < @lines && $lines[$i] !~ /^```\s*$/) { $body .= $lines[$i++]; }
        $i++;
        $k++;
        open(my $c, ">", sprintf("%s/%03d.sh", $dir, $k)) or die; print $c $body; close $c;
        my $j = $i;
        $j++ while $j < @lines && $lines[$j] =~ /^\s*$/;
        if ($j < @lines && $lines[$j] =~ /^```[a-z]*\s*$/ && $lines[$j] !~ /^```sh/) {
            my $out = ""; $j++;
            while ($j < @lines && $lines[$j] !~ /^```\s*$/) { $out .= $lines[$j++]; }
            open(my $e, ">", sprintf("%s/%03d.expected", $dir, $k)) or die; print $e $out; close $e;
            $i = $j + 1;
        }
        next;
    }
    $i++;
}
print "$k\n";
' "$doc" "$work/blocks")
[ "$n" -gt 0 ] || { echo "check-api-examples: no \`\`\`sh blocks in $doc" >&2; exit 1; }

# --- the server ---------------------------------------------------------------------------
# Default settings: the examples show default rate limits, the demo catalog and SQLite.
clean_env=()
while IFS= read -r v; do clean_env+=(-u "$v"); done < <(env | grep -oE '^EMPORIUM_[A-Z0-9_]+' || true)
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 30000))
  rm -rf "$work/data"
  env "${clean_env[@]}" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
      >"$work/server.log" 2>&1 &
  pid=$!
  deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null && curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then
    break
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
if [ -z "$pid" ]; then
  echo "check-api-examples: the server did not start; its log:" >&2
  tail -n 30 "$work/server.log" >&2
  exit 1
fi
base="http://127.0.0.1:$port"

# --- run every block in one shell, each block's output to its own file ---------------------
{
  echo "cd '$work/run'"
  for ((k = 1; k <= n; k++)); do
    f=$(printf '%03d' "$k")
    echo "BASE='$base'"
    echo "{ . '$work/blocks/$f.sh'; } >'$work/blocks/$f.out' 2>&1 || echo \"(exit status \$?)\" >>'$work/blocks/$f.out'"
  done
} >"$work/driver.sh"
bash "$work/driver.sh"

# --- compare ------------------------------------------------------------------------------
status=0
for ((k = 1; k <= n; k++)); do
  f=$(printf '%03d' "$k")
  if grep -q '^(exit status ' "$work/blocks/$f.out"; then
    echo "check-api-examples: block $k of $(basename "$doc") failed:" >&2
    sed 's/^/    /' "$work/blocks/$f.sh" "$work/blocks/$f.out" >&2
    status=1
    continue
  fi
  [ -f "$work/blocks/$f.expected" ] || continue
  if ! perl -e '
    sub norm {
        my $t = shift;
        $t =~ s/^Date:.*$//mgi;
        $t =~ s/("next_cursor"\s*:\s*)"[^"]*"/$1"CURSOR"/g;
        $t =~ s/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/TIME/g;
        $t =~ s/\b00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\b/TRACEPARENT/g;
        $t =~ s/^(X-Request-Id:\s*)\S+/$1ID/mgi;
        $t =~ s/^(Content-Length:\s*)\d+/$1N/mgi;
        $t =~ s/\d{15,}/ID/g;
        $t =~ s/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/TOKEN/g;
        $t =~ s/\s+//g;
        return $t;
    }
    local $/;
    open(my $e, "<", $ARGV[0]) or die; my $exp = <$e>;
    open(my $a, "<", $ARGV[1]) or die; my $act = norm(<$a>);
    my $pos = 0;
    for my $frag (split /…/, $exp) {
        my $n = norm($frag);
        next if $n eq "";
        my $at = index($act, $n, $pos);
        if ($at < 0) { print STDERR "    expected (normalised): $n\n"; exit 1; }
        $pos = $at + length $n;
    }
  ' "$work/blocks/$f.expected" "$work/blocks/$f.out" 2>"$work/blocks/$f.why"; then
    echo "check-api-examples: the output of block $k of $(basename "$doc") no longer matches:" >&2
    sed 's/^/    /' "$work/blocks/$f.sh" >&2
    echo "  documented:" >&2
    sed 's/^/    /' "$work/blocks/$f.expected" >&2
    echo "  the server answered:" >&2
    sed 's/^/    /' "$work/blocks/$f.out" >&2
    cat "$work/blocks/$f.why" >&2
    status=1
  fi
done
if [ $status -ne 0 ]; then
  echo "check-api-examples: FAILED" >&2
  exit 1
fi
echo "check-api-examples: ok ($n examples of $(basename "$doc") against a real server)"
