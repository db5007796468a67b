#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-docs.sh — keeps the documentation true to the repository. Fails (exit 1, naming each
# problem) when:
#   1. README.md or docs/**/*.md link to a file that is not in the repository, or to a
#      #section that the target document does not have, or leave the repository;
#   2. they name a repository path in backticks (`src/http/server.c`) that does not exist;
#   3. any tracked file mentions the shared folder beside the repository (two dots, "shared") —
#      the repository must stand on its own;
#   4. a setting the code reads (a "EMPORIUM_…" string in src/) is missing from the
#      settings table of README.md or docs/operations.md, or a table row names a setting the
#      code does not read;
#   5. an error code the server can answer (src/core/err.c, http_fail_code(…, "code")) is
#      not in docs/api.md;
#   6. README.md mentions a `make X` target the Makefile does not have, or LICENSE is
#      missing;
#   7. with --run BIN: a curl example of docs/api.md, run against a real server started from
#      BIN, no longer answers what the page shows (scripts/check-api-examples.sh).
# Needs only bash, perl and git (git only to list tracked files; without it, find); --run
# also curl and jq.
# Usage: scripts/check-docs.sh [--run BIN] [REPO_DIR]
set -euo pipefail
run_bin=""
if [ "${1:-}" = "--run" ]; then
  run_bin=$(realpath "${2:?--run needs the emporium binary}")
  shift 2
fi
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
cd "$root"
fail=0
problem() { echo "check-docs: $*" >&2; fail=1; }

docs=(README.md)
while IFS= read -r f; do docs+=("$f"); done < <(find docs -name '*.md' -type f 2>/dev/null | sort)

# --- 1 + 2: links and backticked paths --------------------------------------------------
# The perl part prints one line per problem; it knows GitHub's heading anchors: lower case,
# punctuation dropped, spaces to hyphens, "-1", "-2" … for repeated headings; fenced code
# blocks are skipped (their "# comments" are not headings, their brackets not links).
link_problems=$(perl -e '
use strict; use warnings;
my $root = shift @ARGV;
my %anchors;
sub anchors_of {
    my ($file) = @_;
    return $anchors{$file} if $anchors{$file};
    my %seen; my %set;
    open(my $fh, "<", $file) or return {};
    my $fence = 0;
    while (my $l = <$fh>) {
        if ($l =~ /^\s*(```|~~~)/) { $fence = !$fence; next; }
        next if $fence;
        next unless $l =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
        my $s = lc $1;
        $s =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;      # a link in a heading keeps its text
        $s =~ s/[^\w\- ]//g;                      # drop punctuation (backticks, colons …)
        $s =~ s/ /-/g;
        my $a = $seen{$s}++ ? "$s-" . ($seen{$s} - 1) : $s;
        $set{$a} = 1;
    }
    close $fh;
    return $anchors{$file} = \%set;
}
sub norm {                                        # resolves . and .. ; undef when it leaves root
    my @out;
    for my $p (split m{/}, shift) {
        next if $p eq "" || $p eq ".";
        if ($p eq "..") { return undef unless @out; pop @out; next; }
        push @out, $p;
    }
    return join "/", @out;
}
for my $file (@ARGV) {
    open(my $fh, "<", $file) or do { print "$file: cannot read\n"; next; };
    (my $dir = $file) =~ s{[^/]*$}{};
    my $fence = 0; my $n = 0;
    while (my $l = <$fh>) {
        $n++;
        if ($l =~ /^\s*(```|~~~)/) { $fence = !$fence; next; }
        next if $fence;
        # 1. [text](target) and ![alt](target)
        while ($l =~ /\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g) {
            my $t = $1;
            next if $t =~ m{^[a-z][a-z0-9+.-]*:}i;  # http:, https:, mailto: …
            my ($path, $frag) = split /#/, $t, 2;
            my $target;
            if ($path eq "") {
                $target = $file;
            } else {
                if ($path =~ m{^/}) { print "$file:$n: absolute link $t (use a relative path)\n"; next; }
                $target = norm($dir . $path);
                if (!defined $target) { print "$file:$n: link $t leaves the repository\n"; next; }
                if (!-e $target) { print "$file:$n: link $t: no such file in the repository\n"; next; }
            }
            if (defined $frag && $frag ne "" && $target =~ /\.md$/ && -f $target) {
                print "$file:$n: link $t: $target has no section #$frag\n"
                    unless anchors_of($target)->{$frag};
            }
        }
        # 2. `some/path/file.ext` that looks like a repository path
        while ($l =~ /`([A-Za-z0-9_.][A-Za-z0-9_.\/-]*\/[A-Za-z0-9_.-]+\.(?:md|c|h|sh|json|lua|mjs|txt|cmake))`/g) {
            my $p = $1;
            # Only paths that start at the repository root or beside the document: a path
            # relative to an include directory (`emporium/http.h`) is not checked.
            (my $first = $p) =~ s{/.*}{};
            next unless -e $first || -e "$dir$first";
            my $rel = norm($dir . $p);
            next if -e $p || (defined $rel && -e $rel);
            print "$file:$n: `$p` does not exist in the repository\n";
        }
    }
    close $fh;
}
' "$root" "${docs[@]}")
if [ -n "$link_problems" ]; then
  while IFS= read -r l; do problem "$l"; done <<<"$link_problems"
fi

# --- 3: nothing points outside the repository ---------------------------------------------
# The pattern is assembled so that this script does not match itself.
outside="\.\./shar""ed|/work/shar""ed"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git -C "$root" ls-files)
else
  files=$(find . -path ./build -prune -o -path ./build-asan -prune -o -path ./.git -prune \
            -o -path ./data -prune -o -type f -print | sed 's|^\./||')
fi
while IFS= read -r f; do
  [ -f "$f" ] || continue
  grep -Iq . "$f" 2>/dev/null || continue       # skip binary and empty files
  while IFS= read -r hit; do
    problem "$f:$hit: refers to a folder outside the repository"
  done < <(grep -nE "$outside" "$f" | cut -d: -f1)
done <<<"$files"

# --- 4: the settings tables match the settings the code reads ----------------------------
code_settings=$(grep -rhoE '"EMPORIUM_[A-Z0-9_]*[A-Z0-9]"' src 2>/dev/null | tr -d '"' | sort -u)
for doc in README.md docs/operations.md; do
  if [ ! -f "$doc" ]; then
    problem "$doc is missing"
    continue
  fi
  table=$(grep -oE '^\| `EMPORIUM_[A-Z0-9_]+`' "$doc" | grep -oE 'EMPORIUM_[A-Z0-9_]+' | sort -u)
  for s in $code_settings; do
    grep -qx "$s" <<<"$table" || problem "$doc: the settings table has no row for $s (read in src/)"
  done
  for s in $table; do
    grep -qx "$s" <<<"$code_settings" || problem "$doc: the settings table lists $s, which nothing in src/ reads"
  done
done

# --- 5: every error code is documented ----------------------------------------------------
if [ -f docs/api.md ]; then
  codes=$( { perl -ne 'print "$1\n" while /\{ERR_[A-Z_]+,\s*"([a-z_]+)"/g' src/core/err.c 2>/dev/null
             find src -name '*.c' -print0 | xargs -0 cat |
               perl -0ne 'print "$1\n" while /http_fail_code\(\s*[^,]+,\s*ERR_[A-Z_]+,\s*"([a-z_]+)"/g'
           } | sort -u | grep -vx -e ok -e not_modified || true)
  for c in $codes; do
    grep -q "\`$c\`" docs/api.md || problem "docs/api.md does not document the error code $c"
  done
fi

# --- 6: make targets, LICENSE ---------------------------------------------------------------
for t in $(grep -oE '`make [a-z][a-z-]*' README.md | awk '{print $2}' | sort -u); do
  grep -qE "^$t:" Makefile || problem "README.md mentions make $t, which the Makefile does not have"
done
[ -f LICENSE ] || problem "LICENSE is missing"

if [ -n "$run_bin" ]; then
  scripts/check-api-examples.sh "$run_bin" docs/api.md || fail=1
fi

if [ $fail -ne 0 ]; then
  echo "check-docs: FAILED" >&2
  exit 1
fi
echo "check-docs: ok (${#docs[@]} documents)"
