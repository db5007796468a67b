#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# log-hygiene.sh — scan logs for secrets that must never be written: the passwords the tests
# use, bearer tokens and cart tokens, card numbers (PANs) and CVCs.
#   scripts/log-hygiene.sh DIR|FILE…   exit 0 when clean, 1 (listing each finding) otherwise
#   scripts/log-hygiene.sh --self-test plants each kind of secret in a scratch log and checks
#                                      that it is caught, and that ordinary log lines pass
# `make test` keeps every server log of the run (EMPORIUM_TEST_LOG_DIR, see
# tests/support/harness.c) and runs this over them at the end.
#
# What counts as a secret:
#   - the tests' passwords: every literal the test sources pass as a password (JSON
#     "password" members, th_register() arguments, PASSWORD defines), 8 characters or more;
#   - tokens: "Bearer <anything>", and any stand-alone 43-character base64url word (a session
#     token and a cart token are both 32 bytes, base64url without padding);
#   - PANs: a stand-alone digit run (not part of a hex or base64 word) shaped like a card number of a major brand (Visa 4…,
#     13/16/19 digits; Mastercard 51–55/22–27, 16; Amex 34/37, 15; Discover 6011/65, 16).
#     Ids (18 digits, time-ordered) and millisecond timestamps (13 digits starting with 1)
#     do not have those shapes;
#   - CVCs: "cvc"/"cvv"/"csc" followed within a few characters by 3 or 4 digits.
set -euo pipefail
cd "$(dirname "$0")/.."

passwords() {
  {
    grep -rhoP '\\"password\\"\s*:\s*\\"\K[^"\\%]+' tests || true
    grep -rhoP '"password",\s*"\K[^"%]+' tests || true
    grep -rhoP 'th_register\([^,]+,[^,]+,\s*"\K[^"%]+' tests || true
    grep -rhoP '#define\s+\w*PASSWORD\w*\s+"\K[^"%]+' tests || true
    grep -rhoP 'password\[\]\s*=\s*"\K[^"%]+' tests || true
  } | awk 'length($0) >= 8' | sort -u
}

pwfile=$(mktemp)
trap 'rm -f "$pwfile"' EXIT
passwords > "$pwfile"

# Prints "file:line: kind" for each finding (never the secret itself); returns 1 if any.
scan() {
  local found=0
  local files=()
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$@" -type f -print0)
  [ ${#files[@]} -eq 0 ] && return 0
  report() { # kind, grep output "file:line:…"
    local kind=$1 line rest
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      rest=${line#*:}
      echo "${line%%:*}:${rest%%:*}: $kind" >&2
      found=1
    done
  }
  if [ -s "$pwfile" ]; then
    report "a test password" < <(grep -nHF -f "$pwfile" "${files[@]}" || true)
  fi
  report "a bearer token" < <(grep -nHiP 'bearer\s+[A-Za-z0-9._~+/-]{8,}' "${files[@]}" || true)
  report "a 43-character token" < <(grep -nHP '(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])' "${files[@]}" || true)
  # Request and trace ids are random hex: one in ~2,000 is all digits and may look like a
  # card, so they are left out, and a digit run only counts when it passes the Luhn check
  # every real card number passes.
  report "a card number" < <(perl -ne '
    my $l = $_;
    $l =~ s/"(?:request_id|trace_id|span_id|traceparent)":"[^"]*"//g;
    $l =~ s/\b(?:request_id|trace_id|span_id|traceparent)=\S+//g;
    while ($l =~ /(?<![0-9A-Za-z])(4[0-9]{12}(?:[0-9]{3}){0,2}|5[1-5][0-9]{14}|2[2-7][0-9]{14}|3[47][0-9]{13}|6011[0-9]{12}|65[0-9]{14})(?![0-9A-Za-z])/g) {
      my ($sum, $alt) = (0, 0);
      for my $d (reverse split //, $1) {
        my $v = $d * ($alt ? 2 : 1);
        $sum += $v > 9 ? $v - 9 : $v;
        $alt = !$alt;
      }
      if ($sum % 10 == 0) { print "$ARGV:$.:\n"; last; }
    }
    close ARGV if eof;' "${files[@]}" || true)
  report "a CVC" < <(grep -nHiP '\b(cvc|cvv|csc)\b\W{1,4}[0-9]{3,4}(?![0-9])' "${files[@]}" || true)
  return $found
}

self_test() {
  local dir rc fails=0
  dir=$(mktemp -d /tmp/log-hygiene-test.XXXXXX)
  trap 'rm -rf "$dir"' RETURN
  # Ordinary lines of a server log: ids, hashes, trace ids, timestamps, money, last4.
  cat > "$dir/clean.log" <<'LOG'
{"ts":"2026-12-06T02:07:40.407Z","level":"info","msg":"access","method":"POST","path":"/api/v1/orders","route":"/api/v1/orders","status":201,"duration_ms":12.345,"bytes":812,"request_id":"9f86d081884c7d65","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","user_id":"387787138596386478","ip":"127.0.0.1"}
{"ts":"2026-12-06T02:07:40.408Z","level":"info","msg":"order 387787146267834103 paid: total 2498 USD, card visa last4 4242, at 1764986860408"}
{"ts":"2026-12-06T02:07:40.409Z","level":"info","msg":"session hash 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"}
{"ts":"2026-12-06T02:40:11.279Z","level":"info","msg":"access","request_id":"3fb4555331917371","trace_id":"b85538640febe54caa7bb486866eadd7"}
{"ts":"2026-12-06T04:25:28.614Z","level":"info","msg":"access","status":200,"request_id":"2293426971515270","trace_id":"e576364e0dd2db0deb7c6bc904016cd4"}
{"ts":"2026-12-06T04:15:06.619Z","level":"warn","msg":"user.login_throttled","retry_after_s":6.4450000000000305}
LOG
  local pw
  pw=$(head -1 "$pwfile")
  [ -n "$pw" ] || { echo "self-test: no test password found in tests/" >&2; fails=1; }
  local -a planted=(
    "a test password|{\"msg\":\"login failed for bob with ${pw}\"}"
    "a bearer token|{\"msg\":\"header Authorization: Bearer abc.def-ghi_jkl\"}"
    "a 43-character token|{\"msg\":\"session\",\"token\":\"q8wQm0x3tA5yO2Jb1V7cR9eL4hK6nP0sD2fG8iU5zXc\"}"
    "a 43-character token|{\"msg\":\"guest cart\",\"cart_token\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}"
    "a card number|{\"msg\":\"charging 4242424242424242\"}"
    "a card number|{\"msg\":\"declined 4000000000000002\"}"
    "a card number|{\"msg\":\"mc 5555555555554444 amex 378282246310005\"}"
    "a CVC|{\"payment\":{\"cvc\":\"123\"}}"
  )
  # One scan over every planted log (each a clean log plus one secret) and the clean one.
  local i=0 entry kind line
  for entry in "${planted[@]}"; do
    i=$((i + 1))
    cp "$dir/clean.log" "$dir/planted-$i.log"
    printf '%s\n' "${entry#*|}" >> "$dir/planted-$i.log"
  done
  rc=0
  scan "$dir" 2>"$dir/report" || rc=$?
  [ $rc -eq 1 ] || { echo "self-test: the scan did not fail" >&2; fails=1; }
  if grep -q "clean.log" "$dir/report"; then
    echo "self-test: false positive on ordinary log lines:" >&2; grep "clean.log" "$dir/report" >&2; fails=1
  fi
  local n=$(( $(wc -l < "$dir/clean.log") + 1 ))
  i=0
  for entry in "${planted[@]}"; do
    i=$((i + 1))
    kind=${entry%%|*}
    line=${entry#*|}
    if ! grep -qF "$dir/planted-$i.log:$n: $kind" "$dir/report"; then
      echo "self-test: planted $kind not caught: $line" >&2; fails=1
    fi
    if grep -qF -- "$line" "$dir/report"; then
      echo "self-test: the report repeats the secret" >&2; fails=1
    fi
  done
  if [ $fails -eq 0 ]; then
    echo "log-hygiene self-test: ok (${#planted[@]} planted secrets caught, clean log passes)"
  fi
  return $fails
}

if [ "${1:-}" = --self-test ]; then
  self_test
  exit $?
fi
[ $# -gt 0 ] || { echo "usage: scripts/log-hygiene.sh DIR|FILE… | --self-test" >&2; exit 2; }
if scan "$@"; then
  echo "log hygiene: no secrets in $(find "$@" -type f | wc -l) log files"
else
  echo "log hygiene: secrets found in the logs (listed above)" >&2
  exit 1
fi
