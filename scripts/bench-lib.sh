# bench-lib.sh: what scripts/bench.sh and scripts/bench-scale.sh share:
# the machine's facts, a fresh ledgerd on its embedded default in a
# temporary data dir (started, timed, stopped, cleaned up), and its private
# PostgreSQL cluster's socket, postmaster pid and durability settings.
# Sourced, not run, from the root of the repository; common_settings sets
# what the other functions use.

# common_settings READY_TIMEOUT_DEFAULT reads the settings both scripts
# take from the environment (listed in scripts/bench.sh) and checks them,
# with the numbers NAME=VALUE given after it; it dies (exit 2) on a bad one.
common_settings() {
	local setting addr
	# The ports avoid ledgerd's defaults (7070, 8080) and NATS's and
	# PostgreSQL's (4222, 5432), so a `make run` or a system server does not
	# get in the way.
	grpc_addr=${BENCH_GRPC_ADDR:-127.0.0.1:17070}
	http_addr=${BENCH_HTTP_ADDR:-127.0.0.1:18080}
	ready_timeout=${BENCH_READY_TIMEOUT:-$1}
	# devpg gives pg_ctl stop 120 s; ledgerd drains its writers first.
	stop_timeout=${BENCH_STOP_TIMEOUT:-150}
	doc=${BENCH_DOC:-BENCHMARKS.md}
	note=${BENCH_NOTE:-}
	reports_dir=${BENCH_REPORTS_DIR:-}
	GO=${GO:-go}
	shift
	for setting in "$@" BENCH_READY_TIMEOUT="$ready_timeout" BENCH_STOP_TIMEOUT="$stop_timeout"; do
		[[ ${setting#*=} =~ ^[1-9][0-9]{0,8}$ ]] || die "$setting: want a whole number from 1"
	done
	for addr in "$grpc_addr" "$http_addr"; do
		[[ $addr =~ ^[^:]+:[0-9]+$ ]] || die "address $addr: want HOST:PORT"
	done
	[[ $doc == - || -f $doc ]] || die "BENCH_DOC=$doc: no such file"
	[[ -z $reports_dir || -d $reports_dir ]] || die "BENCH_REPORTS_DIR=$reports_dir: no such directory"
}

die() {
	echo "$(basename "$0"): $*" >&2
	exit 2
}

# listening says whether something accepts TCP connections on HOST:PORT.
listening() {
	(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# now_ms prints the time in milliseconds (GNU date).
now_ms() {
	date +%s%3N
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

# record FILE KEY VALUE prints KEY: VALUE and appends it to FILE, read back
# by cmd/benchreport, which splits a line at its first colon: a key has none.
record() {
	[[ $2 != *:* ]] || die "key $2 has a colon"
	printf '%-20s %s\n' "$2:" "$3"
	printf '%s: %s\n' "$2" "$3" >>"$1"
}

# fact KEY VALUE records a fact of the machine or its settings in $facts.
fact() {
	record "$facts" "$@"
}

# bench_dir makes the run's temporary directory: $dir, with the facts file
# $facts and the JSON reports under $reports; cleanup removes it.
bench_dir() {
	dir=$(mktemp -d "${TMPDIR:-/tmp}/ledger-bench.XXXXXX")
	# As root, the cluster runs as the postgres user, which must reach its
	# directory below this one; mktemp makes it 0700.
	chmod 0755 "$dir"
	facts=$dir/machine.txt
	reports=$dir/reports
	mkdir "$reports"
	: >"$facts"
	ledgerd_pid=""
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

machine_facts() {
	local commit postgres_bin
	echo "== machine"
	fact date "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
	fact host "$(uname -srm)"
	fact cpu "$(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
	fact memory "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo unknown)"
	if postgres_bin=$(find_pg_bin postgres); then
		fact postgres "$("$postgres_bin" --version)"
	else
		fact postgres "not found (ledgerd's embedded default needs initdb, pg_ctl, postgres)"
	fi
	fact go "$("$GO" version)"
	if commit=$(git rev-parse --short HEAD 2>/dev/null); then
		[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || commit+=" (with uncommitted changes)"
		fact commit "$commit"
	fi
	fact nats "embedded in ledgerd (JetStream on disk): its CPU counts in ledgerd's"
	# The load the machine carried when the run began: a shared box shows.
	fact "load average" "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
}

# pg_socket_setup sets pg_dir, socket_dir and naive_url for the private
# cluster under $dir. The cluster listens only on a unix socket:
# $dir/postgres/run, port 5432, user postgres, database ledger
# (adapters/devpg). When that path would pass the kernel's 107-byte limit,
# devpg uses $TMPDIR/devpg-<12 hex of the sha256 of the cluster dir> instead.
pg_socket_setup() {
	local socket_file=/.s.PGSQL.5432
	pg_dir=$dir/postgres
	socket_dir=$pg_dir/run
	if ((${#socket_dir} + ${#socket_file} > 107)); then
		socket_dir=${TMPDIR:-/tmp}/devpg-$(printf '%s' "$pg_dir" | sha256sum | cut -c1-12)
	fi
	# The naive baseline's database on the same server (ledgerbench creates it).
	naive_url="postgres:///ledgerbench_naive?host=$socket_dir&port=5432&user=postgres"
}

# postmaster_pid prints the private cluster's postmaster pid: the first line
# of postmaster.pid.
postmaster_pid() {
	local pid
	pid=$(head -n1 "$pg_dir/data/postmaster.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	echo "$pid"
}

durability_facts() {
	local psql_bin setting value
	echo
	echo "== durability settings in force (PostgreSQL via $socket_dir)"
	if psql_bin=$(find_pg_bin psql); then
		for setting in fsync synchronous_commit wal_sync_method full_page_writes; do
			value=$("$psql_bin" -X -A -t -h "$socket_dir" -p 5432 -U postgres -d ledger -c "SHOW $setting" 2>&1) ||
				value="(psql failed: $value)"
			fact "$setting" "$value"
		done
	else
		echo "psql is not installed: cannot show fsync and synchronous_commit (Debian: apt-get install postgresql-client)"
	fi
	fact "projection commits" "synchronous_commit off (derived data: a lost commit is re-applied from the log)"
}

# stop_postgres_left_running stops a cluster ledgerd did not stop (it was
# killed, or it died), so that nothing outlives the script: SIGINT is
# PostgreSQL's fast shutdown.
stop_postgres_left_running() {
	local pidfile=$dir/postgres/data/postmaster.pid pg_pid i
	[[ -f $pidfile ]] || return 0
	pg_pid=$(head -n1 "$pidfile")
	[[ $pg_pid =~ ^[0-9]+$ ]] && kill -0 "$pg_pid" 2>/dev/null || return 0
	echo "$(basename "$0"): stopping the PostgreSQL server ledgerd left running (pid $pg_pid)" >&2
	kill -INT "$pg_pid" 2>/dev/null || true
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pg_pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "$(basename "$0"): PostgreSQL (pid $pg_pid) still running after 60 s; killing it" >&2
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
		echo "$(basename "$0"): ledgerd (pid $pid) still running after ${stop_timeout} s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" || status=$?
	return "$status"
}

# stop_all stops ledgerd and a cluster it left running; non-zero when either
# did not stop cleanly (the ledgerd log is printed then).
stop_all() {
	local status=0
	stop_ledgerd || status=$?
	stop_postgres_left_running || status=1
	if ((status != 0)); then
		echo "$(basename "$0"): ledgerd did not stop cleanly (exit $status)" >&2
		print_ledgerd_log
	fi
	return "$status"
}

print_ledgerd_log() {
	echo "--- last lines of the ledgerd log:" >&2
	tail -n 40 "$dir/ledgerd.log" >&2 || true
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_all || { ((status != 0)) || status=1; }
	rm -rf "$dir"
	exit "$status"
}

# start_ledgerd starts ledgerd on $dir (fresh, or the data an earlier start
# left), waits for /readyz and sets ledgerd_pid and ready_ms (from the
# start to the first ready answer). It exits the script when ledgerd dies
# or is not ready in time.
start_ledgerd() {
	local started deadline status
	for addr in "$grpc_addr" "$http_addr"; do
		if listening "$addr"; then
			echo "$(basename "$0"): something already listens on $addr; set BENCH_GRPC_ADDR/BENCH_HTTP_ADDR" >&2
			exit 1
		fi
	done
	echo
	echo "== starting ledgerd on $dir (gRPC $grpc_addr, HTTP $http_addr)"
	started=$(now_ms)
	deadline=$((started + ready_timeout * 1000))
	bin/ledgerd -data-dir "$dir" -grpc-addr "$grpc_addr" -http-addr "$http_addr" >>"$dir/ledgerd.log" 2>&1 &
	ledgerd_pid=$!
	until curl -fsS --max-time 2 "http://$http_addr/readyz" >/dev/null 2>&1; do
		if ! kill -0 "$ledgerd_pid" 2>/dev/null; then
			status=0
			wait "$ledgerd_pid" || status=$?
			ledgerd_pid=""
			echo "$(basename "$0"): ledgerd exited with status $status before it was ready" >&2
			print_ledgerd_log
			exit 1
		fi
		if (($(now_ms) >= deadline)); then
			echo "$(basename "$0"): ledgerd not ready after ${ready_timeout} s" >&2
			print_ledgerd_log
			exit 1
		fi
		sleep 0.05
	done
	ready_ms=$(($(now_ms) - started))
	echo "ledgerd ready after ${ready_ms} ms (pid $ledgerd_pid)"
	# The fresh ledgerd generated an admin key in its data dir (dev mode).
	LEDGER_API_KEY=$(cat "$dir/admin.key")
	export LEDGER_API_KEY
}

# rss_kib NAME prints a line of /proc/$ledgerd_pid/status (VmRSS, VmHWM) in KiB.
rss_kib() {
	awk -v key="$1:" '$1 == key { print $2 }' "/proc/$ledgerd_pid/status"
}

# mib KIB prints KiB as MiB with one decimal.
mib() {
	awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'
}
