#!/usr/bin/env bash
#
# test/fuzz/run.sh [SECONDS]
#
# Build the libFuzzer targets for src/globmatch.c and run each for SECONDS
# (default 20) from a small seed corpus created here:
#
#   fuzz_glob_escape  test/fuzz/fuzz_glob_escape.c: an escaped value matches
#                     itself and nothing else; literal patterns are literal
#   fuzz_tenant_glob  the same file with -DTC_FUZZ_TENANT: "tenant:" +
#                     escape(v) + ":client:*" never matches another tenant's
#                     keys when tenant values hold no ':'
#   fuzz_globset      test/fuzz/fuzz_globset.c: the worker's prefix-indexed
#                     set of globs (src/globset.c) selects exactly what a
#                     brute-force loop over the matcher selects
#
# Prints one summary line per target and exits non-zero when a target
# crashed or violated a property; the crashing input and the log are then
# kept in a directory that is printed (everything else lives in a temp dir
# that is removed).  Run from anywhere, as root or as an unprivileged user:
#     bash test/fuzz/run.sh 60
# See also test/fuzz/redis_diff.sh (differential test against redis-server).
#
set -euo pipefail

secs=${1:-20}
if ! [[ $secs =~ ^[0-9]+$ ]] || (( secs < 1 )); then
	echo "usage: $0 [SECONDS]" >&2
	exit 2
fi
CC=${CC:-clang}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc_fuzz.XXXXXX")
child=
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
	if [[ -n $child ]]; then
		kill "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2054  # the commas belong to -fsanitize=
cflags=(-std=c99 -g -O1 -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=all -Wall -Wextra -Werror -I "$repo/src")

# name and extra compiler flags of each target
targets=(fuzz_glob_escape fuzz_tenant_glob fuzz_globset)
declare -A target_flags=([fuzz_glob_escape]="" [fuzz_tenant_glob]="-DTC_FUZZ_TENANT"
	[fuzz_globset]="")
declare -A target_src=([fuzz_glob_escape]=fuzz_glob_escape.c
	[fuzz_tenant_glob]=fuzz_glob_escape.c [fuzz_globset]=fuzz_globset.c)

for t in "${targets[@]}"; do
	# shellcheck disable=SC2086
	"$CC" "${cflags[@]}" ${target_flags[$t]} -o "$tmp/$t" \
		"$here/${target_src[$t]}" "$repo/src/globmatch.c" "$repo/src/globset.c"
done

# A dictionary of the bytes and words that matter to the matcher.
cat >"$tmp/glob.dict" <<'EOF'
"*"
"?"
"["
"]"
"\\"
"^"
"-"
":"
"\x00"
"\xff"
"\x80"
"[^"
"a-z"
"tenant:"
":client:"
EOF

# Seed corpus.  Fields are separated by NUL: "v\0s" for fuzz_glob_escape,
# "v\0w\0tail" for fuzz_tenant_glob.
seed() {		# seed DIR NAME FIELD...
	local dir=$1 name=$2
	shift 2
	local first=1 f
	{
		for f in "$@"; do
			(( first )) || printf '\0'
			first=0
			printf '%s' "$f"
		done
	} >"$dir/$name"
}
long=$(printf 'ab*?[]\\^%.0s' {1..1280})	# 10 kB with metacharacters
# shellcheck disable=SC1003  # 'a\' is the value a-backslash
values=('a*' 'abc' 'a?c' 'a[b]c' 'a\' 'a]' '[' '^' '-' ' ' '  a b ' $'\r\n' $'a\rb\n'
	'%s' '%s%n' '[a-z]' '[^a]' '\*' '**' '{tenant}' $'\x80\xff' "$long")
mkdir -p "$tmp/corpus/fuzz_glob_escape" "$tmp/corpus/fuzz_tenant_glob"
i=0
for v in "${values[@]}"; do
	seed "$tmp/corpus/fuzz_glob_escape" "v$i" "$v" "${values[(i + 1) % ${#values[@]}]}"
	seed "$tmp/corpus/fuzz_tenant_glob" "v$i" "$v" "${v}x" 'x'
	i=$((i + 1))
done
seed "$tmp/corpus/fuzz_glob_escape" same 'a*b' 'a*b'
seed "$tmp/corpus/fuzz_glob_escape" star 'a*b' 'a\*b'
seed "$tmp/corpus/fuzz_tenant_glob" colon 'a:client:b' 'a' 'x'
seed "$tmp/corpus/fuzz_tenant_glob" prefix 'ab' 'a' 'b:client:x'
# fuzz_globset: patterns, an empty line, keys (one per line).
mkdir -p "$tmp/corpus/fuzz_globset"
printf '%s\n' 'tenant:1:client:*:bu:*:dash*' 'tenant:1:client:2:*' 'tenant:12:*' \
	'tenant:1:client:2:bu:3:user:4:prefs' '*' 'ab\' 'ab*' '[a]*' 'a\*b*' '' \
	'tenant:1:client:2:bu:3:dash:x' 'tenant:12:client:1' 'ab' 'ab\' 'a*b' \
	'tenant:1:client:2:bu:3:user:4:prefs' >"$tmp/corpus/fuzz_globset/tenants"
printf 'a\nb\n\na\nb\n' >"$tmp/corpus/fuzz_globset/plain"

failed=0
for t in "${targets[@]}"; do
	mkdir -p "$tmp/artifacts/$t"
	log=$tmp/$t.log
	# In the background, so that a signal runs the cleanup trap at once.
	set +e
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$tmp/$t" -max_total_time="$secs" -max_len=40000 -timeout=30 \
		-rss_limit_mb=4096 -print_final_stats=1 -dict="$tmp/glob.dict" \
		-artifact_prefix="$tmp/artifacts/$t/" "$tmp/corpus/$t" >"$log" 2>&1 &
	child=$!
	wait "$child"
	rc=$?
	child=
	set -e
	runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	[[ -n $runs ]] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
	corpus=$(find "$tmp/corpus/$t" -type f | wc -l)
	if (( rc == 0 )) && [[ -n $runs ]]; then
		echo "$t: OK, ${runs} executions in ${secs} s (coverage ${cov:-?} edges, corpus ${corpus} inputs)"
	else
		failed=1
		keep=$(mktemp -d "${TMPDIR:-/tmp}/tc_fuzz_failure.XXXXXX")
		cp -r "$tmp/artifacts/$t/." "$log" "$keep/" 2>/dev/null || true
		echo "$t: FAILED (exit status $rc) after ${runs:-?} executions; log and crashing input kept in $keep"
		grep -A 6 -E 'PROPERTY VIOLATED|ERROR: (AddressSanitizer|libFuzzer)|runtime error' "$log" |
			head -n 16 | sed 's/^/    /' || true
	fi
done
exit "$failed"
