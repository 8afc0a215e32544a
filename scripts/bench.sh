#!/usr/bin/env bash
# bench.sh runs ledgerbench against a FRESH ledgerd on its embedded default (a
# private PostgreSQL cluster and an in-process NATS, in a temporary data dir),
# prints the machine, the durability settings in force and every report, and
# rewrites the generated section of BENCHMARKS.md (between
# <!-- bench:begin --> and <!-- bench:end -->) from the reports
# (cmd/benchreport). Each report carries ledgerd's and PostgreSQL's CPU time
# per transfer (from /proc: ledgerbench gets their pids) and, in the
# scenarios that say so, the naive row-lock baseline run on the same
# PostgreSQL. `make bench` runs it after the Go benchmarks; see BENCHMARKS.md.
#
# Environment (all optional):
#   BENCH_GRPC_ADDR         ledgerd gRPC address   (default 127.0.0.1:17070)
#   BENCH_HTTP_ADDR         ledgerd HTTP address   (default 127.0.0.1:18080)
#   BENCH_TRANSFERS_BATCH   transfers of the batch-1000 scenario (default 300000)
#   BENCH_TRANSFERS_SINGLE  transfers of each batch-1 scenario   (default 60000)
#   BENCH_TRANSFERS_READ    transfers of the read-under-write, read-latency and read-floor scenarios, written
#                           at 10,000 a second (default 175000: 17.5 s)
#   BENCH_TRANSFERS_NAIVE   transfers of each naive baseline run
#                           (default: ledgerbench's, min(transfers, 30000))
#   BENCH_READERS           readers of the read-under-write, read-latency and read-floor scenarios (default 8)
#   BENCH_ACCOUNTS          accounts per scenario                (default 10000)
#   BENCH_READY_TIMEOUT     seconds to wait for /readyz          (default 60)
#   BENCH_STOP_TIMEOUT      seconds to wait for ledgerd to stop  (default 150)
#   BENCH_DOC               the document whose section is rewritten
#                           (default BENCHMARKS.md; "-": none)
#   BENCH_NOTE              a line printed first in the section, in bold
#                           (e.g. "Smoke run: small sizes, not figures to quote")
#   BENCH_REPORTS_DIR       keep the JSON reports there (default: removed)
#   GO                      the go command                       (default go)
#
# Exit status: 0 when every ledgerbench run passed; 1 when one failed or
# ledgerd did not start or stop cleanly; 2 on a bad setting.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

transfers_batch=${BENCH_TRANSFERS_BATCH:-300000}
transfers_single=${BENCH_TRANSFERS_SINGLE:-60000}
transfers_read=${BENCH_TRANSFERS_READ:-175000}
transfers_naive=${BENCH_TRANSFERS_NAIVE:-}
readers=${BENCH_READERS:-8}
accounts=${BENCH_ACCOUNTS:-10000}
common_settings 60 BENCH_TRANSFERS_BATCH="$transfers_batch" BENCH_TRANSFERS_SINGLE="$transfers_single" \
	BENCH_TRANSFERS_READ="$transfers_read" BENCH_READERS="$readers" BENCH_ACCOUNTS="$accounts" \
	${transfers_naive:+BENCH_TRANSFERS_NAIVE="$transfers_naive"}

bench_dir
machine_facts

echo
echo "== building ledgerd, ledgerbench and benchreport into ./bin"
"$GO" build -o bin/ ./cmd/...

start_ledgerd
pg_socket_setup
durability_facts
pg_pid=$(postmaster_pid) || {
	echo "bench.sh: no postmaster pid in $pg_dir/data/postmaster.pid" >&2
	exit 1
}
echo "postgres:            postmaster pid $pg_pid; ledgerd pid $ledgerd_pid (CPU from /proc)"

# --- the scenarios -----------------------------------------------------------

failed=()
scenarios=0
# done_reports lists NAME=FILE of each report written, for benchreport.
done_reports=()
# baseline is the flags of a scenario that also runs the naive ledger.
baseline=(-baseline-postgres-url "$naive_url" ${transfers_naive:+-baseline-transfers "$transfers_naive"})

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
	bin/ledgerbench -addr "$grpc_addr" -ledger "bench-$name" -accounts "$accounts" \
		-ledgerd-pid "$ledgerd_pid" -postgres-pid "$pg_pid" -json-out "$reports/$name.json" "$@" || status=$?
	if [[ -s $reports/$name.json ]]; then
		done_reports+=("$name=$reports/$name.json")
	fi
	if ((status != 0)); then
		echo "bench.sh: scenario $name failed (ledgerbench exit $status)" >&2
		failed+=("$name")
	fi
}

# The naive ledger runs single transfers whatever the scenario's batch: the
# issue's ">= 50x with batches" compares the batched rate with it.
scenario batch-c64 -batch 1000 -concurrency 64 -transfers "$transfers_batch" "${baseline[@]}"
scenario single-c64 -batch 1 -concurrency 64 -transfers "$transfers_single" "${baseline[@]}"
scenario single-c256 -batch 1 -concurrency 256 -transfers "$transfers_single"
# The same single transfers through the Go client's automatic batching
# (package client): the issue's ">= 5x single-c256".
scenario single-autobatch-c256 -batch 1 -concurrency 256 -transfers "$transfers_single" -auto-batch
scenario hot-c256 -batch 1 -concurrency 256 -transfers "$transfers_single" -hot "${baseline[@]}"
# GetBalances and ListStatement latency and rate, and the projections' lag
# sampled every 100 ms, while batches of 100 are written at 10,000 transfers
# a second (the issue's "under 10k writes/s"), paced rather than as fast as
# the box takes.
scenario read-under-write -batch 100 -concurrency 32 -transfers "$transfers_read" -rate 10000 \
	-readers "$readers" -read-kind both -lag-every 100ms
# The same writes with the readers paced to 1,000 calls a second in all:
# the latency of a read under 10k writes/s. Readers in tight loops (above)
# measure how many reads the box takes, and on two cores they saturate it,
# so their percentiles are mostly queueing.
scenario read-latency -batch 100 -concurrency 32 -transfers "$transfers_read" -rate 10000 \
	-readers "$readers" -read-kind both -read-rate 1000 -lag-every 100ms
# The same again with the readers asking the gRPC health service, which
# reads nothing: the latency of a call itself under that load, the floor
# under the two queries' (docs/perf.md, "Session 24").
scenario read-floor -batch 100 -concurrency 32 -transfers "$transfers_read" -rate 10000 \
	-readers "$readers" -read-kind health -read-rate 1000 -lag-every 100ms

echo
echo "== stopping ledgerd"
stop_all || exit 1

if [[ -n $reports_dir ]]; then
	cp "$reports"/*.json "$reports_dir"/ 2>/dev/null || true
	echo "JSON reports kept in $reports_dir"
fi
if [[ $doc != - ]]; then
	echo
	echo "== rewriting the generated section of $doc"
	bin/benchreport -doc "$doc" -section bench -generator "make bench" -machine "$facts" -note "$note" "${done_reports[@]}"
fi
if ((${#failed[@]} > 0)); then
	echo "bench.sh: ${#failed[@]} of $scenarios scenarios failed: ${failed[*]}" >&2
	exit 1
fi
echo "all $scenarios scenarios passed"
