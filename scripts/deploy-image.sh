#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# deploy-image.sh — builds deploy/Dockerfile with buildah and runs the image, offline.
#
# No registry is reachable, so the Debian 12 base image is made here with debootstrap from
# Debian's packages and stored, with buildah's layer cache, under $EMPORIUM_IMAGE_CACHE
# (default /var/cache/emporium/image): the first run on a machine takes a few minutes, the
# next ones reuse the base and every layer before `COPY . .`. Storage: vfs; isolation:
# chroot (no daemon, no user namespaces needed).
#
# Checks: the image's configuration (non-root user, entrypoint, HEALTHCHECK, no build tools
# in the runtime stage), `emporium --version` inside it (the repository's version), and a
# shop started inside it answering /health through the image's own HEALTHCHECK command, and
# /ready. Exit 0 passed, 1 failed, 3 cannot run here (not root, or buildah/debootstrap
# missing: `scripts/bootstrap.sh test` installs them).
#   scripts/deploy-image.sh            build + check
#   EMPORIUM_IMAGE_PORT=28480          port of the shop started inside (loopback)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${EMPORIUM_IMAGE_CACHE:-/var/cache/emporium/image}
port=${EMPORIUM_IMAGE_PORT:-28480}
tag=localhost/emporium:test
start=$(date +%s)

say() { echo "deploy-image: $*" >&2; }
if [ "$(id -u)" -ne 0 ]; then
  say "skipped: needs root (buildah with vfs storage and chroot isolation)"; exit 3
fi
for tool in buildah debootstrap curl; do
  command -v "$tool" >/dev/null || { say "skipped: $tool is not installed (scripts/bootstrap.sh test)"; exit 3; }
done

mkdir -p "$cache"
B=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot

# One build at a time per cache (a second `make test` on the machine waits).
exec 9>"$cache/lock"
flock 9

# 1. Base image: debian:12 and debian:12-slim, as the Dockerfile names them.
if ! "${B[@]}" inspect --type image docker.io/library/debian:12 >/dev/null 2>&1; then
  t0=$(date +%s)
  say "making the Debian 12 base image with debootstrap (once per machine)"
  rootfs="$cache/rootfs.tmp"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 ||
    { say "debootstrap failed, see $cache/debootstrap.log"; exit 1; }
  # As Debian's own images: the same sources (with updates and security), no package
  # lists or downloaded packages left behind, no documentation installed later.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  tar -C "$rootfs" -cf "$cache/rootfs.tar" .
  rm -rf "$rootfs"
  ctr=$("${B[@]}" from scratch)
  "${B[@]}" add "$ctr" "$cache/rootfs.tar" / >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash "$ctr"
  "${B[@]}" commit --rm -q "$ctr" docker.io/library/debian:12 >/dev/null
  "${B[@]}" tag docker.io/library/debian:12 docker.io/library/debian:12-slim
  rm -f "$cache/rootfs.tar"
  say "base image made in $(( $(date +%s) - t0 )) s"
fi

# 2. The image. --layers keeps the package-install layers for the next run.
t0=$(date +%s)
say "building deploy/Dockerfile"
"${B[@]}" bud --pull=never --layers --format docker -q -f deploy/Dockerfile -t "$tag" . \
  >"$cache/build.log" 2>&1 || { tail -40 "$cache/build.log" >&2; say "FAILED: the build"; exit 1; }
say "image built in $(( $(date +%s) - t0 )) s"
# The layers of earlier runs are the cache (untagged images): kept, until the store passes
# 8 GB (vfs stores every layer as a full copy); then the untagged ones go and the next run
# installs the build packages again.
if [ "$(du -sm "$cache/storage" 2>/dev/null | cut -f1)" -gt 8192 ]; then
  say "the image store passed 8 GB: removing the cached layers"
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
fi

fail=0
check() { # check WHAT GOT WANT
  if [ "$2" = "$3" ]; then say "ok: $1"; else say "FAILED: $1: got '$2', want '$3'"; fail=1; fi
}
cfg() { "${B[@]}" inspect --type image --format "$1" "$tag"; }
check "non-root user" "$(cfg '{{.Docker.Config.User}}')" "10001:10001"
check "entrypoint" "$(cfg '{{range .Docker.Config.Entrypoint}}[{{.}}]{{end}}')" "[/usr/local/bin/emporium]"
check "default command" "$(cfg '{{range .Docker.Config.Cmd}}[{{.}}]{{end}}')" "[serve]"
health=$(cfg '{{if .Docker.Config.Healthcheck}}{{index .Docker.Config.Healthcheck.Test 1}}{{end}}')
health_kind=$(cfg '{{if .Docker.Config.Healthcheck}}{{index .Docker.Config.Healthcheck.Test 0}}{{end}}')
check "HEALTHCHECK present (shell form)" "$health_kind" "CMD-SHELL"

ctr=$("${B[@]}" from --pull-never "$tag")
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM

run() { "${B[@]}" run --isolation chroot "$ctr" -- "$@"; }
want_version=$(sed -n 's/^project(emporium VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
check "emporium --version in the image" "$(run /usr/local/bin/emporium --version)" "emporium $want_version"
check "runs as uid 10001" "$(run id -u)" "10001"
for tool in gcc cc cmake make; do
  if run sh -c "command -v $tool" >/dev/null 2>&1; then say "FAILED: $tool in the runtime image"; fail=1; fi
done
[ $fail -eq 0 ] && say "ok: no build tools in the runtime image"

# A shop inside the image, on a loopback port; the image's HEALTHCHECK command asks it.
for try in 0 1 2 3 4 5 6 7 8 9; do
  [ -z "$(ss -ltnH "sport = :$port")" ] && break
  port=$((port + 1))
done
log="$cache/serve.log"
"${B[@]}" run --isolation chroot --env "EMPORIUM_LISTEN=127.0.0.1:$port" "$ctr" -- \
  /usr/local/bin/emporium serve --no-demo >"$log" 2>&1 &
server_pid=$!
deadline=$(( $(date +%s) + 90 ))
healthy=0
while [ "$(date +%s)" -lt $deadline ]; do
  if run env "EMPORIUM_LISTEN=127.0.0.1:$port" sh -c "$health" >/dev/null 2>&1; then healthy=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
if [ $healthy -eq 1 ]; then
  say "ok: HEALTHCHECK (GET /health) passes inside the image"
  ready=$(run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready" || true)
  check "GET /ready inside the image" "$ready" "200"
else
  say "FAILED: the shop in the image never answered /health (log: $log)"
  tail -20 "$log" >&2
  fail=1
fi
# buildah run does not forward signals; with chroot isolation the shop is a process of this
# machine (no PID namespace): SIGTERM goes to the one listening on the port, which drains and
# exits 0, and buildah run with it.
if kill -0 "$server_pid" 2>/dev/null; then
  shop=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  if [ -n "$shop" ] && [ "$(readlink "/proc/$shop/exe" 2>/dev/null | xargs -r basename)" = emporium ]; then
    kill -TERM "$shop"
    rc=0
    wait "$server_pid" || rc=$?
    server_pid=
    check "the shop in the image stops on SIGTERM with status 0" "$rc" "0"
    grep -q '"msg":"stopped"' "$log" && say "ok: it drained and logged 'stopped'" ||
      { say "FAILED: no 'stopped' line in $log"; fail=1; }
  else
    say "FAILED: no emporium process listens on port $port"; fail=1
  fi
fi
grep -q '^{"ts":.*"msg":"emporium.started"' "$log" && say "ok: JSON log lines (EMPORIUM_LOG_FORMAT=json)" ||
  { say "FAILED: no JSON emporium.started line in $log"; fail=1; }

say "finished in $(( $(date +%s) - start )) s, status $fail"
exit $fail
