#!/usr/bin/env bash
#
# test/fuzz/redis_diff.sh [SEED [NKEYS [NPATTERNS]]]
#
# Differential test of tc_glob_match() (src/globmatch.c) and of the
# worker's prefix-indexed set of globs (src/globset.c) against a real Redis: builds test/fuzz/redis_diff.c, starts a scratch redis-server on a
# free port of 127.0.0.1 (no persistence, in a temp dir), runs the
# comparison and stops the server again, also on failure or interrupt.
#
# SEED defaults to $TC_DIFF_SEED or 20240601, so runs are reproducible.
# Exit status: 0 no mismatch, 1 mismatches, 2 or other: error.
#
set -euo pipefail

seed=${1:-${TC_DIFF_SEED:-20240601}}
nkeys=${2:-4000}
npatterns=${3:-400}
CC=${CC:-clang}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc_redis_diff.XXXXXX")
port=
redis_pid=
child=

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
	if [[ -n $child ]]; then
		kill "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	if [[ -n $port ]]; then
		"$REDIS_CLI" -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
	fi
	if [[ -n $redis_pid ]]; then
		for _ in $(seq 50); do
			kill -0 "$redis_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$redis_pid" 2>/dev/null; then
			kill "$redis_pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$CC" -std=c99 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
	-fno-sanitize-recover=all -I "$repo/src" \
	-o "$tmp/redis_diff" "$here/redis_diff.c" "$repo/src/globmatch.c" \
	"$repo/src/globset.c" -lhiredis

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Start a scratch server on a free port; retry on a lost race for the port.
for _ in $(seq 20); do
	candidate=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
	port_in_use "$candidate" && continue
	rm -f "$tmp/redis.pid"
	"$REDIS_SERVER" --port "$candidate" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize yes --dir "$tmp" \
		--pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" >/dev/null
	for _ in $(seq 100); do
		[[ -s $tmp/redis.pid ]] && break
		sleep 0.05
	done
	[[ -s $tmp/redis.pid ]] || continue
	pid=$(cat "$tmp/redis.pid")
	for _ in $(seq 100); do
		if [[ $("$REDIS_CLI" -h 127.0.0.1 -p "$candidate" ping 2>/dev/null) == PONG ]]; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	# Make sure the server answering is the one we started.
	answering=$("$REDIS_CLI" -h 127.0.0.1 -p "$candidate" info server 2>/dev/null |
		tr -d '\r' | sed -n 's/^process_id://p')
	if [[ $answering == "$pid" ]]; then
		port=$candidate
		redis_pid=$pid
		break
	fi
	kill "$pid" 2>/dev/null || true
done
if [[ -z $port ]]; then
	echo "redis_diff: could not start redis-server on a free port" >&2
	[[ -f $tmp/redis.log ]] && tail -n 20 "$tmp/redis.log" >&2
	exit 2
fi
echo "redis_diff: $("$REDIS_SERVER" --version | cut -d' ' -f1-3) on 127.0.0.1:$port, seed $seed"

# In the background, so that a signal runs the cleanup trap at once.
set +e
"$tmp/redis_diff" "$port" "$seed" "$nkeys" "$npatterns" &
child=$!
wait "$child"
rc=$?
child=
set -e
exit "$rc"
