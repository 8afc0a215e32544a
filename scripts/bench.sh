#!/usr/bin/env bash
# bench.sh runs ledgerbench against a FRESH ledgerd on its embedded default (a
# private PostgreSQL cluster and an in-process NATS, in a temporary data dir),
# and prints the machine, the durability settings in force and every report.
# `make bench` runs it after the Go benchmarks; see BENCHMARKS.md.
#
# Environment (all optional):
#   BENCH_GRPC_ADDR         ledgerd gRPC address   (default 127.0.0.1:17070)
#   BENCH_HTTP_ADDR         ledgerd HTTP address   (default 127.0.0.1:18080)
#   BENCH_TRANSFERS_BATCH   transfers of the batch-1000 scenario (default 300000)
#   BENCH_TRANSFERS_SINGLE  transfers of each batch-1 scenario   (default 60000)
#   BENCH_TRANSFERS_READ    transfers of the read-under-write scenario, sized
#                           for 15-20 s of writes (~9.5k/s here) (default 175000)
#   BENCH_READERS           readers of the read-under-write scenario (default 8)
#   BENCH_ACCOUNTS          accounts per scenario                (default 10000)
#   BENCH_READY_TIMEOUT     seconds to wait for /readyz          (default 60)
#   BENCH_STOP_TIMEOUT      seconds to wait for ledgerd to stop  (default 150)
#   GO                      the go command                       (default go)
#
# Exit status: 0 when every ledgerbench run passed; 1 when one failed or
# ledgerd did not start or stop cleanly; 2 on a bad setting.
set -euo pipefail

cd "$(dirname "$0")/.."

# The ports avoid ledgerd's defaults (7070, 8080) and NATS's and PostgreSQL's
# (4222, 5432), so a `make run` or a system server does not get in the way.
grpc_addr=${BENCH_GRPC_ADDR:-127.0.0.1:17070}
http_addr=${BENCH_HTTP_ADDR:-127.0.0.1:18080}
transfers_batch=${BENCH_TRANSFERS_BATCH:-300000}
transfers_single=${BENCH_TRANSFERS_SINGLE:-60000}
transfers_read=${BENCH_TRANSFERS_READ:-175000}
readers=${BENCH_READERS:-8}
accounts=${BENCH_ACCOUNTS:-10000}
ready_timeout=${BENCH_READY_TIMEOUT:-60}
# devpg gives pg_ctl stop 120 s; ledgerd drains its writers first.
stop_timeout=${BENCH_STOP_TIMEOUT:-150}
GO=${GO:-go}

die() {
	echo "bench.sh: $*" >&2
	exit 2
}

for setting in BENCH_TRANSFERS_BATCH="$transfers_batch" BENCH_TRANSFERS_SINGLE="$transfers_single" \
	BENCH_TRANSFERS_READ="$transfers_read" BENCH_READERS="$readers" BENCH_ACCOUNTS="$accounts" \
	BENCH_READY_TIMEOUT="$ready_timeout" BENCH_STOP_TIMEOUT="$stop_timeout"; do
	[[ ${setting#*=} =~ ^[1-9][0-9]{0,8}$ ]] || die "$setting: want a whole number from 1"
done
for addr in "$grpc_addr" "$http_addr"; do
	[[ $addr =~ ^[^:]+:[0-9]+$ ]] || die "address $addr: want HOST:PORT"
done

# listening says whether something accepts TCP connections on HOST:PORT.
listening() {
	(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# find_pg_bin prints the path of a PostgreSQL binary, looking where devpg
# looks: PATH, then the distributions' directories, highest version first.
find_pg_bin() {
	if command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
		return 0
	fi
	local dirs d
	mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin /usr/pgsql-*/bin | sort -Vr)
	for d in "${dirs[@]}"; do
		if [[ -x $d/$1 ]]; then
			echo "$d/$1"
			return 0
		fi
	done
	return 1
}

# --- the machine -------------------------------------------------------------

echo "== machine"
echo "date:       $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "host:       $(uname -srm)"
echo "cpu:        $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
echo "memory:     $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo unknown)"
if postgres_bin=$(find_pg_bin postgres); then
	echo "postgres:   $("$postgres_bin" --version)"
else
	echo "postgres:   not found (ledgerd's embedded default needs initdb, pg_ctl, postgres)"
fi
echo "go:         $("$GO" version)"
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
	[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || commit+=" (with uncommitted changes)"
	echo "commit:     $commit"
fi

# --- build and start ---------------------------------------------------------

echo
echo "== building ledgerd and ledgerbench into ./bin"
"$GO" build -o bin/ ./cmd/...

for addr in "$grpc_addr" "$http_addr"; do
	if listening "$addr"; then
		echo "bench.sh: something already listens on $addr; set BENCH_GRPC_ADDR/BENCH_HTTP_ADDR" >&2
		exit 1
	fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/ledger-bench.XXXXXX")
# As root, the cluster runs as the postgres user, which must reach its
# directory below this one; mktemp makes it 0700.
chmod 0755 "$dir"
ledgerd_pid=""

# stop_postgres_left_running stops a cluster ledgerd did not stop (it was
# killed, or it died), so that nothing outlives the script: SIGINT is
# PostgreSQL's fast shutdown.
stop_postgres_left_running() {
	local pidfile=$dir/postgres/data/postmaster.pid pg_pid i
	[[ -f $pidfile ]] || return 0
	pg_pid=$(head -n1 "$pidfile")
	[[ $pg_pid =~ ^[0-9]+$ ]] && kill -0 "$pg_pid" 2>/dev/null || return 0
	echo "bench.sh: stopping the PostgreSQL server ledgerd left running (pid $pg_pid)" >&2
	kill -INT "$pg_pid" 2>/dev/null || true
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pg_pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "bench.sh: PostgreSQL (pid $pg_pid) still running after 60 s; killing it" >&2
	kill -KILL "$pg_pid" 2>/dev/null || true
	return 1
}

# stop_ledgerd sends ledgerd one SIGINT (it drains its writers and stops its
# servers, PostgreSQL included), waits a bounded time and returns its exit
# status.
stop_ledgerd() {
	local pid=$ledgerd_pid status=0 i
	[[ -n $pid ]] || return 0
	ledgerd_pid=""
	kill -INT "$pid" 2>/dev/null || true
	# bash reaps a finished background job at once, so kill -0 fails then.
	for ((i = 0; i < stop_timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "bench.sh: ledgerd (pid $pid) still running after ${stop_timeout} s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" || status=$?
	return "$status"
}

print_ledgerd_log() {
	echo "--- last lines of the ledgerd log:" >&2
	tail -n 40 "$dir/ledgerd.log" >&2 || true
}

cleanup() {
	local status=$? stop_status=0
	trap - EXIT INT TERM
	stop_ledgerd || stop_status=$?
	stop_postgres_left_running || stop_status=1
	if ((stop_status != 0)); then
		echo "bench.sh: ledgerd did not stop cleanly (exit $stop_status)" >&2
		print_ledgerd_log
		((status != 0)) || status=1
	fi
	rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo
echo "== starting a fresh ledgerd in $dir (gRPC $grpc_addr, HTTP $http_addr)"
started=$SECONDS
bin/ledgerd -data-dir "$dir" -grpc-addr "$grpc_addr" -http-addr "$http_addr" >"$dir/ledgerd.log" 2>&1 &
ledgerd_pid=$!

deadline=$((started + ready_timeout))
until curl -fsS --max-time 2 "http://$http_addr/readyz" >/dev/null 2>&1; do
	if ! kill -0 "$ledgerd_pid" 2>/dev/null; then
		status=0
		wait "$ledgerd_pid" || status=$?
		ledgerd_pid=""
		echo "bench.sh: ledgerd exited with status $status before it was ready" >&2
		print_ledgerd_log
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "bench.sh: ledgerd not ready after ${ready_timeout} s" >&2
		print_ledgerd_log
		exit 1
	fi
	sleep 0.2
done
echo "ledgerd ready after $((SECONDS - started)) s (pid $ledgerd_pid)"
# The fresh ledgerd generated an admin key in its data dir (dev mode).
LEDGER_API_KEY=$(cat "$dir/admin.key")
export LEDGER_API_KEY

# --- durability in force -----------------------------------------------------

# The private cluster listens only on a unix socket: $dir/postgres/run, port
# 5432, user postgres, database ledger (adapters/devpg). When that path would
# pass the kernel's 107-byte limit, devpg uses $TMPDIR/devpg-<12 hex of the
# sha256 of the cluster dir> instead.
pg_dir=$dir/postgres
socket_dir=$pg_dir/run
socket_file=/.s.PGSQL.5432
if ((${#socket_dir} + ${#socket_file} > 107)); then
	socket_dir=${TMPDIR:-/tmp}/devpg-$(printf '%s' "$pg_dir" | sha256sum | cut -c1-12)
fi

echo
echo "== durability settings in force (PostgreSQL via $socket_dir)"
if psql_bin=$(find_pg_bin psql); then
	for setting in fsync synchronous_commit wal_sync_method full_page_writes; do
		value=$("$psql_bin" -X -A -t -h "$socket_dir" -p 5432 -U postgres -d ledger -c "SHOW $setting" 2>&1) ||
			value="(psql failed: $value)"
		printf '%-20s %s\n' "$setting" "$value"
	done
else
	echo "psql is not installed: cannot show fsync and synchronous_commit (Debian: apt-get install postgresql-client)"
fi

# --- the scenarios -----------------------------------------------------------

failed=()
scenarios=0

# scenario NAME ARGS... runs ledgerbench on a fresh ledger named bench-NAME.
scenario() {
	local name=$1 status=0
	shift
	scenarios=$((scenarios + 1))
	echo
	echo "== scenario $scenarios: $name: $*"
	if ! kill -0 "$ledgerd_pid" 2>/dev/null; then
		echo "bench.sh: ledgerd is no longer running" >&2
		failed+=("$name (ledgerd gone)")
		return
	fi
	bin/ledgerbench -addr "$grpc_addr" -ledger "bench-$name" -accounts "$accounts" "$@" || status=$?
	if ((status != 0)); then
		echo "bench.sh: scenario $name failed (ledgerbench exit $status)" >&2
		failed+=("$name")
	fi
}

scenario batch-c64 -batch 1000 -concurrency 64 -transfers "$transfers_batch"
scenario single-c64 -batch 1 -concurrency 64 -transfers "$transfers_single"
scenario single-c256 -batch 1 -concurrency 256 -transfers "$transfers_single"
scenario hot-c256 -batch 1 -concurrency 256 -transfers "$transfers_single" -hot
# GetBalances and ListStatement latency and rate, and the projections' lag
# sampled every 100 ms, while batches of 100 are written.
scenario read-under-write -batch 100 -concurrency 32 -transfers "$transfers_read" \
	-readers "$readers" -read-kind both -lag-every 100ms

echo
echo "== stopping ledgerd"
stop_status=0
stop_ledgerd || stop_status=$?
stop_postgres_left_running || stop_status=1
if ((stop_status != 0)); then
	echo "bench.sh: ledgerd did not stop cleanly (exit $stop_status)" >&2
	print_ledgerd_log
	exit 1
fi
if ((${#failed[@]} > 0)); then
	echo "bench.sh: ${#failed[@]} of $scenarios scenarios failed: ${failed[*]}" >&2
	exit 1
fi
echo "all $scenarios scenarios passed"
