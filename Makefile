# ledger: the two commands are `make run` and `make test`. See README.md.

GO       ?= go
# Tests share one PostgreSQL (a database per test) and run packages in parallel,
# always under the race detector: a race is a bug whatever the test's outcome.
# -parallel 4: most tests wait on PostgreSQL, NATS or a ledgerd, not on the
# CPU, and go test's default (GOMAXPROCS: 2 on a small machine) leaves the CPU
# idle while they wait (internal/ctl: 64-69 s at 2, 33-42 s at 8); at 8, with
# the race detector, a loaded 2-core box starved projections past the 10 s
# min_position wait of some daemon tests.
TEST_FLAGS ?= -race -count=1 -parallel 4 -timeout 15m
# The two longest packages first: go test starts packages in the order given,
# two at a time, and internal/daemon (about 4 minutes under -race) last in
# ./...'s order ran alone at the end (make test's Go tests 415 s → 370 s on a
# 2-core box). ./... lists them again; go test runs each package once.
TEST_PKGS ?= ./internal/daemon ./projections ./...
STATICCHECK_VERSION ?= v0.8.2
# FUZZ_TIME: executions, not seconds: Go 1.26's fuzz coordinator can fail a
# target with a bare "context deadline exceeded" when a -fuzztime duration
# ends while a worker is busy on a loaded machine (golang/go#75804, fixed in
# Go 1.27; seen here on FuzzParseFrame). A count has no deadline to race.
# 3,000 new inputs a target (besides the seed corpus) is about a second on
# this box: make test's fuzzing is a smoke test that every target still runs
# and holds on its corpus; fuzz for longer with e.g. make fuzz FUZZ_TIME=5m.
FUZZ_TIME ?= 3000x
# FUZZ_PKGS: every package with a fuzz target, found rather than listed, so a
# new target runs without anyone remembering to add it here.
FUZZ_PKGS ?= $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=bin --exclude-dir=var --exclude-dir=.git .)))

include make/proto.mk

.PHONY: run build dist version test test-go test-race fuzz check fmt fmt-check vet lint bench bench-go bench-ledger bench-scale chaos clean

# VERSION and COMMIT are stamped into the binaries (internal/version):
# `ledgerctl version`, `ledgerd -version` and ledgerd's first log line say them.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/ledgerd/ledger/internal/version.Version=$(VERSION) \
           -X github.com/ledgerd/ledger/internal/version.Commit=$(COMMIT)
# DIST_PLATFORMS: what make dist builds, static (CGO_ENABLED=0).
DIST_PLATFORMS ?= linux/amd64 linux/arm64

## run: ledgerd on its embedded default (in-process NATS, private PostgreSQL under ./var).
## It builds, then execs bin/ledgerd: make waits on ledgerd itself and sees its exit
## status (0 after a clean Ctrl-C). Under `go run` it saw go's instead, which is 1
## whenever go is interrupted, whatever the program's status: "make: *** Error 1".
run: build
	exec bin/ledgerd

## build: ledgerd, ledgerctl and ledgerbench into ./bin, stamped with the version
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## version: the version make build and make dist stamp
version:
	@echo $(VERSION)

## dist: static ledgerd and ledgerctl for each of DIST_PLATFORMS, with LICENSE,
## README.md and CHANGELOG.md, as dist/ledger-VERSION-OS-ARCH.tar.gz and SHA256SUMS
dist:
	rm -rf dist
	@set -e; for p in $(DIST_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; dir=ledger-$(VERSION)-$$os-$$arch; \
		echo "dist $$dir"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS) -s -w' \
			-o dist/$$dir/ ./cmd/ledgerd ./cmd/ledgerctl; \
		cp LICENSE README.md CHANGELOG.md dist/$$dir/; \
		tar -C dist -czf dist/$$dir.tar.gz $$dir; \
	done
	cd dist && sha256sum *.tar.gz > SHA256SUMS

## test: what CI runs (.ci/run): formatting, vet, staticcheck, every test with the
## race detector against real PostgreSQL and NATS JetStream, then a short fuzz
test: fmt-check vet lint test-go fuzz

## test-go: only the Go tests (with -race), e.g. while iterating
test-go:
	$(GO) test $(TEST_FLAGS) $(TEST_PKGS)

## fuzz: a short run of every fuzz target in the tree (FUZZ_TIME each)
fuzz:
	@test -n "$(strip $(FUZZ_PKGS))" || { echo "fuzz: no package with a fuzz target found"; exit 1; }
	@for pkg in $(FUZZ_PKGS); do \
		targets=$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz') || { echo "fuzz: cannot list $$pkg"; exit 1; }; \
		for target in $$targets; do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZ_TIME) $$pkg || exit 1; \
		done; \
	done

## chaos: the acceptance chaos test (build tag chaos, out of make test): two ledgerd
## processes, CHAOS_ROUNDS rounds of kill -9, SIGSTOP with the lease session ended, and a
## restart while NATS is down (about 20 s a round); see docs/operations.md
CHAOS_ROUNDS ?= 3
chaos:
	LEDGER_CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(GO) test -tags chaos -count=1 -timeout 20m -run '^TestChaos$$' -v ./internal/daemon/

## test-race: the Go tests; kept as a name for test-go (which has -race already)
test-race: test-go

## check: the same as test (what CI runs); the style's name for it
check: test

fmt:
	gofmt -w $$(git ls-files '*.go')

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## lint: staticcheck, pinned, built through the Go module proxy
lint: bin/staticcheck-$(STATICCHECK_VERSION)
	bin/staticcheck-$(STATICCHECK_VERSION) ./...

bin/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(CURDIR)/bin/.staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/.staticcheck/staticcheck $@

## bench: Go benchmarks, then ledgerbench against a fresh ledgerd, which rewrites
## the generated section of BENCHMARKS.md (see there); BENCH_SKIP_GO=1 skips the
## Go benchmarks (or: make bench-ledger)
bench:
	@if [ -z "$(BENCH_SKIP_GO)" ]; then $(MAKE) --no-print-directory bench-go; fi
	GO=$(GO) scripts/bench.sh

## bench-go: only the Go benchmarks
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

## bench-ledger: only scripts/bench.sh (ledgerbench scenarios and the naive baseline)
bench-ledger:
	GO=$(GO) scripts/bench.sh

## bench-scale: 1M accounts and 10M transfers into a fresh ledgerd, then its RSS,
## a restart and its cold start (may take an hour; BENCH_SCALE_ACCOUNTS and
## BENCH_SCALE_TRANSFERS make it smaller); rewrites BENCHMARKS.md's bench-scale section
bench-scale:
	GO=$(GO) scripts/bench-scale.sh

clean:
	rm -rf bin var dist
