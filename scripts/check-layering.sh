#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-layering.sh — the include rules of the service layering, checked on the sources.
#
#   1. Only the HTTP layer sees HTTP: a file under src/ that includes "emporium/http.h" or
#      "emporium/server.h" must be a *_http.c file, a file of src/http/, or src/main.c.
#      emporium/service.h counts as including emporium/http.h unless EMPORIUM_SERVICE_NO_HTTP
#      is defined before it (service.h keeps the include while services are being layered).
#   2. A service never reaches into another service: a file under src/services/<svc>/ may not
#      include a header that lives under src/services/<other>/ (by relative path, by a path
#      from src/, or by the bare name of another service's header). Other services are used
#      through their client interface, include/emporium/svc/<other>.h.
#
# Usage: scripts/check-layering.sh [ROOT]   (ROOT defaults to the repository)
# Prints one line per violation (file:line: rule) and exits 1 when there is any, else 0.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
[ -d src ] || { echo "check-layering: no src/ under $root" >&2; exit 2; }

violations=0
report() { echo "$1"; violations=$((violations + 1)); }
# Few processes: one grep or awk per rule, bash builtins for the rest (the check runs in
# make test on a loaded machine).
allowed() { [[ $1 == src/http/* || $1 == src/main.c || $1 == *_http.c ]]; }

# Rule 1.
while IFS=: read -r file line text; do
  allowed "$file" && continue
  [[ $text =~ \"(emporium/[a-z_]+\.h)\" ]] && hdr=${BASH_REMATCH[1]}
  report "$file:$line: includes $hdr, which only *_http.c files, src/http/ and src/main.c may"
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"emporium/(http|server)\.h"' src \
           --include='*.c' --include='*.h' || true)

# Rule 1, transitively: emporium/service.h still includes emporium/http.h unless the file
# defines EMPORIUM_SERVICE_NO_HTTP first (a transition aid; see service.h).
mapfile -t sources < <(find src -name '*.c' -o -name '*.h' | sort)
while IFS=: read -r file line; do
  allowed "$file" && continue
  report "$file:$line: includes emporium/service.h without defining EMPORIUM_SERVICE_NO_HTTP first, so it gets emporium/http.h"
done < <(awk 'FNR == 1 { def = 0 }
              /^[ \t]*#[ \t]*define[ \t]+EMPORIUM_SERVICE_NO_HTTP/ { def = 1 }
              /^[ \t]*#[ \t]*include[ \t]+"emporium\/service\.h"/ && !def { print FILENAME ":" FNR }' \
           "${sources[@]}")

# Rule 2. Headers of each service, by bare name.
declare -A owner=()
if [ -d src/services ]; then
  for h in src/services/*/*.h; do
    [ -e "$h" ] || continue
    rest=${h#src/services/}
    owner[${h##*/}]=${rest%%/*}
  done
  while IFS=: read -r file line text; do
    rest=${file#src/services/}
    svc=${rest%%/*}
    [[ $text =~ \"([^\"]+)\" ]] || continue
    inc=${BASH_REMATCH[1]}
    other=""
    if [[ $inc =~ ^\.\./([^/]+)/ || $inc =~ ^services/([^/]+)/ || $inc =~ ^src/services/([^/]+)/ ]]; then
      other=${BASH_REMATCH[1]}
    elif [[ $inc != */* && ! -e src/services/$svc/$inc && -n ${owner[$inc]:-} ]]; then
      other=${owner[$inc]}
    fi
    if [ -n "$other" ] && [ "$other" != "$svc" ]; then
      report "$file:$line: includes $inc, an internal header of the $other service (use include/emporium/svc/$other.h)"
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^"]+"' src/services \
             --include='*.c' --include='*.h' || true)
fi

if [ "$violations" -gt 0 ]; then
  echo "check-layering: $violations violation(s)" >&2
  exit 1
fi
echo "check-layering: ok" >&2
