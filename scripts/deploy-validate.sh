#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deploy-validate.sh EMPORIUM_BIN — validates every file under deploy/ offline (no cluster,
# no registry), as `make test` runs it:
#   - yamllint on deploy/ (deploy/.yamllint);
#   - `kubectl kustomize` renders every overlay (dev, prod, prod-eu, canary);
#   - tests/deploy/validate.mjs: each rendered object against its schema (npm
#     kubernetes-models, Istio and Prometheus Operator models, pinned in
#     tests/deploy/package-lock.json), the references between objects, the seed's numbers,
#     and that the dashboard's and alerts' metrics are served by a live `emporium serve`;
#   - tests/deploy/fields.mjs + tsc: no field the models do not define (a misspelt optional
#     field passes the schemas, which allow extra properties);
#   - `promtool check rules` on the PrometheusRule; `nginx -t` on deploy/nginx/gateway.conf;
#   - the deliberately broken inputs under tests/deploy/broken/ each fail the check that
#     should catch them (a validation that cannot fail is no validation).
# The image itself (deploy/Dockerfile) is checked by scripts/deploy-image.sh.
# Exit 0 passed, 1 failed, 3 a tool is missing (scripts/bootstrap.sh test installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: deploy-validate.sh EMPORIUM_BIN}
out=${DEPLOY_VALIDATE_DIR:-build/deploy}
say() { echo "deploy-validate: $*" >&2; }
for tool in kubectl yamllint promtool nginx node npm curl; do
  command -v "$tool" >/dev/null || { say "$tool is not installed (scripts/bootstrap.sh test)"; exit 3; }
done
kubectl kustomize --help >/dev/null 2>&1 || { say "this kubectl has no kustomize"; exit 3; }
rc=0
scripts/npm-tools.sh build/tools deploy || rc=$?
[ $rc -eq 0 ] || { say "cannot install the npm validators"; exit $rc; }
# The validator runs beside its node_modules (ES modules ignore NODE_PATH).
tools=build/tools/deploy
cp tests/deploy/validate.mjs tests/deploy/fields.mjs "$tools/"
# fields FILE... — TypeScript's excess-property check of the rendered objects; prints
# "kind/name: message" per problem, fails on any.
fields() {
  node "$tools/fields.mjs" "$tools/checks.ts" "$@" >/dev/null || return 1
  printf '{"compilerOptions":{"strict":true,"noEmit":true,"module":"nodenext","moduleResolution":"nodenext","target":"es2022","skipLibCheck":true,"types":[]},"files":["checks.ts"]}\n' >"$tools/tsconfig.json"
  local errs rc=0
  errs=$(node "$tools/node_modules/typescript/bin/tsc" -p "$tools" 2>&1) || rc=$?
  [ $rc -eq 0 ] && return 0
  # checks.ts(LINE,COL): error … -> the object named by the nearest "// OBJECT" line above.
  awk -v errs="$errs" 'BEGIN { n = split(errs, e, "\n") }
    /^\/\/ OBJECT / { name[NR] = substr($0, 11) }
    END { for (i = 1; i <= n; i++) if (match(e[i], /^checks\.ts\(([0-9]+),/)) {
            l = substr(e[i], 11, RLENGTH - 11) + 0; obj = "?";
            for (k = l; k > 0; k--) if (k in name) { obj = name[k]; break }
            msg = e[i]; sub(/^[^:]*: error TS[0-9]+: /, "", msg); print "FAIL " obj ": " msg
          } else if (e[i] != "") print e[i] }' "$tools/checks.ts"
  return 1
}
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/deploy-validate.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
step() { echo "-- $*" >&2; }

step "yamllint deploy/"
yamllint -s -c deploy/.yamllint deploy/ || fail=1

overlays=(dev prod prod-eu canary)
step "kubectl kustomize: ${overlays[*]}"
args=()
for o in "${overlays[@]}"; do
  if kubectl kustomize "deploy/k8s/overlays/$o" >"$out/$o.yaml"; then
    args+=("$o=$out/$o.yaml")
    say "ok: $o renders $(grep -c '^kind:' "$out/$o.yaml") objects"
  else
    say "FAILED: $o does not render"; fail=1
  fi
done

# A live scrape of /metrics: the dashboard and the alerts may only use what is served.
step "scraping /metrics of a live emporium serve"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --no-demo 2>"$work/serve.log" &
server_pid=$!
port=
deadline=$(( $(date +%s) + 60 ))
while [ -z "$port" ] && [ "$(date +%s)" -lt $deadline ] && kill -0 "$server_pid" 2>/dev/null; do
  port=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$work/serve.log" | head -1 | grep -o '[0-9]*"$' | tr -d '"' || true)
  [ -n "$port" ] || sleep 0.2
done
if [ -n "$port" ]; then
  # One request of each kind fills the per-route series.
  curl -s -o /dev/null "http://127.0.0.1:$port/api/v1/products"
  curl -s -o /dev/null "http://127.0.0.1:$port/api/v1/nope"
  curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics.txt" || { say "FAILED: GET /metrics"; fail=1; }
else
  say "FAILED: emporium serve did not start"; cat "$work/serve.log" >&2; fail=1
fi
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=

step "schemas, references, the seed's numbers, metrics (tests/deploy/validate.mjs)"
node "$tools/validate.mjs" "${args[@]}" \
  --rules-out "$work/rules.json" --metrics "$work/metrics.txt" >"$out/validate.txt" 2>&1 || fail=1
grep -v '^note:' "$out/validate.txt" | grep -v 'passed, ' | head -40 >&2 || true
grep '^note:' "$out/validate.txt" >&2 || true
tail -1 "$out/validate.txt" >&2

step "unknown fields and types (TypeScript's excess-property check against the models)"
files=()
for a in "${args[@]}"; do files+=("${a#*=}"); done
if fields "${files[@]}" >"$out/fields.txt" 2>&1; then
  say "ok: every field of every modelled object is one its type defines"
else
  head -20 "$out/fields.txt" >&2; fail=1
fi

step "promtool check rules (the PrometheusRule)"
promtool check rules "$work/rules.json" >&2 || fail=1

step "nginx -t (deploy/nginx/gateway.conf)"
mkdir -p "$work/gw/logs" "$work/gw/temp"
nginx -t -q -p "$work/gw" -c "$PWD/deploy/nginx/gateway.conf" -e "$work/gw/logs/error.log" || fail=1

# Each broken input must be refused, for the reason its `expect` file names.
step "broken inputs are refused"
for dir in tests/deploy/broken/*/; do
  case=$(basename "$dir")
  [ -f "$dir/kustomization.yaml" ] || continue
  want=$(cat "$dir/expect")
  kubectl kustomize "$dir" >"$work/broken-$case.yaml" || { say "FAILED: broken/$case does not render"; fail=1; continue; }
  # validate.mjs first; the slower field check only when that one passed.
  got=0
  node "$tools/validate.mjs" "prod=$work/broken-$case.yaml" >"$work/broken-$case.txt" 2>&1 || got=1
  if [ $got -eq 0 ]; then fields "$work/broken-$case.yaml" >>"$work/broken-$case.txt" 2>&1 || got=1; fi
  if [ $got -eq 0 ]; then
    say "FAILED: broken/$case passed the validation"; fail=1
  elif grep -qF -- "$want" "$work/broken-$case.txt"; then
    say "ok: broken/$case refused ($want)"
  else
    say "FAILED: broken/$case refused, but not for '$want':"; grep FAIL "$work/broken-$case.txt" | head -5 >&2; fail=1
  fi
done
if yamllint -c deploy/.yamllint tests/deploy/broken/files/duplicate-key.yaml >/dev/null 2>&1; then
  say "FAILED: yamllint accepted a duplicate key"; fail=1
else say "ok: yamllint refuses a duplicate key"; fi
if promtool check rules tests/deploy/broken/files/bad-rule.yaml >/dev/null 2>&1; then
  say "FAILED: promtool accepted a broken rule"; fail=1
else say "ok: promtool refuses a broken rule"; fi
if nginx -t -q -p "$work/gw" -c "$PWD/tests/deploy/broken/files/bad-gateway.conf" -e "$work/gw/logs/error.log" 2>/dev/null; then
  say "FAILED: nginx -t accepted a broken gateway config"; fail=1
else say "ok: nginx -t refuses a broken gateway config"; fi

say "status $fail (renderings and the validator's report in $out)"
exit $fail
