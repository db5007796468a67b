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

# Rule 1.
while IFS=: read -r file line text; do
  case "$file" in
    src/http/*|src/main.c|*_http.c) continue ;;
  esac
  hdr=$(sed -E 's/.*"(emporium\/[a-z_]+\.h)".*/\1/' <<<"$text")
  report "$file:$line: includes $hdr, which only *_http.c files, src/http/ and src/main.c may"
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"emporium/(http|server)\.h"' src \
           --include='*.c' --include='*.h' || true)

# Rule 1, transitively: emporium/service.h still includes emporium/http.h unless the file
# defines EMPORIUM_SERVICE_NO_HTTP first (a transition aid; see service.h).
while IFS=: read -r file line text; do
  case "$file" in
    src/http/*|src/main.c|*_http.c) continue ;;
  esac
  if ! head -n "$line" "$file" | grep -qE '^[[:space:]]*#[[:space:]]*define[[:space:]]+EMPORIUM_SERVICE_NO_HTTP'; then
    report "$file:$line: includes emporium/service.h without defining EMPORIUM_SERVICE_NO_HTTP first, so it gets emporium/http.h"
  fi
done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"emporium/service\.h"' src \
           --include='*.c' --include='*.h' || true)

# Rule 2. Headers of each service, by bare name.
declare -A owner=()
if [ -d src/services ]; then
  for dir in src/services/*/; do
    svc=$(basename "$dir")
    for h in "$dir"*.h; do
      [ -e "$h" ] && owner[$(basename "$h")]=$svc
    done
  done
  while IFS=: read -r file line text; do
    svc=$(cut -d/ -f3 <<<"$file")
    inc=$(sed -E 's/.*"([^"]+)".*/\1/' <<<"$text")
    other=""
    case "$inc" in
      ../*/*) other=$(cut -d/ -f2 <<<"$inc") ;;
      services/*/*) other=$(cut -d/ -f2 <<<"$inc") ;;
      src/services/*/*) other=$(cut -d/ -f3 <<<"$inc") ;;
      */*) ;;
      *) if [ ! -e "src/services/$svc/$inc" ] && [ -n "${owner[$inc]:-}" ]; then other=${owner[$inc]}; fi ;;
    esac
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
