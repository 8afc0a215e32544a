#!/usr/bin/env bash
# bench-scale.sh loads a FRESH ledgerd (embedded default, as scripts/bench.sh)
# with many accounts and transfers in batches of 1,000, then measures what a
# big ledger costs to hold and to start: ledgerd's resident memory (VmRSS and
# its peak VmHWM from /proc/<pid>/status, the embedded NATS server
# included) once every projection has caught up, a restart's cold start (time
# to /readyz, then to the first acknowledged transfer, which loads the
# ledger's writer from its snapshot and the log's tail) and the memory after
# it. It rewrites the generated section of BENCHMARKS.md between
# <!-- bench-scale:begin --> and <!-- bench-scale:end -->. `make bench-scale`
# runs it; at the default sizes it takes about an hour on 2 cores.
#
# Environment (all optional):
#   BENCH_SCALE_ACCOUNTS     accounts opened (OpenAccounts of 8,192) (default 1000000)
#   BENCH_SCALE_TRANSFERS    transfers, in batches of 1,000        (default 10000000)
#   BENCH_SCALE_CONCURRENCY  ledgerbench workers                   (default 64)
#   BENCH_SCALE_CATCH_UP_WAIT  seconds the projections may take to catch up
#                            after the last ack                    (default 7200)
#   BENCH_GRPC_ADDR, BENCH_HTTP_ADDR, BENCH_READY_TIMEOUT, BENCH_STOP_TIMEOUT,
#   BENCH_DOC, BENCH_NOTE, BENCH_REPORTS_DIR, GO: as for scripts/bench.sh
#   (BENCH_READY_TIMEOUT defaults to 600 here: a restart replays more).
#
# Exit status: 0 when the run passed and the section was rewritten; 1 when
# ledgerbench failed or ledgerd did not start or stop cleanly; 2 on a bad
# setting.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

accounts=${BENCH_SCALE_ACCOUNTS:-1000000}
transfers=${BENCH_SCALE_TRANSFERS:-10000000}
concurrency=${BENCH_SCALE_CONCURRENCY:-64}
catch_up_wait=${BENCH_SCALE_CATCH_UP_WAIT:-7200}
ledger=scale
common_settings 600 BENCH_SCALE_ACCOUNTS="$accounts" BENCH_SCALE_TRANSFERS="$transfers" \
	BENCH_SCALE_CONCURRENCY="$concurrency" BENCH_SCALE_CATCH_UP_WAIT="$catch_up_wait"
((accounts >= 2)) || die "BENCH_SCALE_ACCOUNTS=$accounts: a transfer needs two accounts"
bench_dir
machine_facts
figures=$dir/figures.txt
: >"$figures"
# figure KEY VALUE records a figure of the run in $figures.
figure() {
	record "$figures" "$@"
}

echo
echo "== building ledgerd, ledgerctl, ledgerbench and benchreport into ./bin"
"$GO" build -o bin/ ./cmd/...

start_ledgerd
pg_socket_setup
durability_facts
pg_pid=$(postmaster_pid) || {
	echo "bench-scale.sh: no postmaster pid in $pg_dir/data/postmaster.pid" >&2
	exit 1
}

echo
echo "== loading: $accounts accounts, $transfers transfers in batches of 1,000"
loaded_from=$(now_ms)
status=0
bin/ledgerbench -addr "$grpc_addr" -ledger "$ledger" -accounts "$accounts" -transfers "$transfers" -batch 1000 \
	-concurrency "$concurrency" -lag-every 1s -catch-up-wait "${catch_up_wait}s" \
	-ledgerd-pid "$ledgerd_pid" -postgres-pid "$pg_pid" -json-out "$reports/scale.json" || status=$?
if ((status != 0)); then
	echo "bench-scale.sh: the load failed (ledgerbench exit $status)" >&2
	exit 1
fi
figure "accounts / transfers" "$accounts / $transfers (one posting each, batches of 1,000, $concurrency clients)"
figure "load, setup included, until every projection caught up" "$(((($(now_ms) - loaded_from) + 500) / 1000)) s"
figure "ledgerd RSS after the load (VmRSS)" "$(mib "$(rss_kib VmRSS)")"
figure "ledgerd peak RSS during the load (VmHWM)" "$(mib "$(rss_kib VmHWM)")"
figure "data dir (PostgreSQL, JetStream)" "$(du -sk "$dir/postgres" | awk '{ printf "%.1f GiB", $1 / 1048576 }'), $(du -sk --exclude=postgres "$dir" | awk '{ printf "%.1f GiB", $1 / 1048576 }')"

echo
echo "== restarting ledgerd"
stop_all || exit 1
start_ledgerd
figure "cold start, ledgerd to /readyz" "$ready_ms ms"
first_from=$(now_ms)
bin/ledgerctl --addr "$grpc_addr" --ledger "$ledger" transfer --id cold-start-1 --from acc-0 --to acc-1 \
	--amount 0.01 --asset USD
figure "cold start, then to the first acknowledged transfer (the writer loads)" "$(($(now_ms) - first_from)) ms"
figure "ledgerd RSS after the restart and one transfer (VmRSS)" "$(mib "$(rss_kib VmRSS)")"
figure "ledgerd peak RSS since the restart (VmHWM)" "$(mib "$(rss_kib VmHWM)")"

echo
echo "== stopping ledgerd"
stop_all || exit 1
if [[ -n $reports_dir ]]; then
	cp "$reports/scale.json" "$figures" "$reports_dir"/
	echo "report and figures kept in $reports_dir"
fi
if [[ $doc != - ]]; then
	echo
	echo "== rewriting the bench-scale section of $doc"
	bin/benchreport -doc "$doc" -section bench-scale -generator "make bench-scale" -machine "$facts" \
		-figures "$figures" -note "$note" "load=$reports/scale.json"
fi
