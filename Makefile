# ledger: the two commands are `make run` and `make test`. See README.md.

GO       ?= go
# Tests share one PostgreSQL (a database per test) and run packages in parallel.
TEST_FLAGS ?= -count=1 -timeout 15m
STATICCHECK_VERSION ?= v0.8.2
FUZZ_TIME ?= 5s
FUZZ_PKGS ?= ./domain ./eventstore

include make/proto.mk

.PHONY: run build test test-race fuzz check fmt fmt-check vet lint bench chaos clean

## run: ledgerd on its embedded default (in-process NATS, private PostgreSQL under ./var)
run:
	$(GO) run ./cmd/ledgerd

## build: ledgerd, ledgerctl and ledgerbench into ./bin
build:
	$(GO) build -o bin/ ./cmd/...

## test: every test against real PostgreSQL and NATS JetStream, then a short fuzz
test:
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz

## fuzz: a short run of every fuzz target (FUZZ_TIME each)
fuzz:
	@for pkg in $(FUZZ_PKGS); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
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

test-race:
	$(GO) test -race $(TEST_FLAGS) ./...

## check: what CI should hold us to: formatting, vet, lint, tests with -race
check: fmt-check vet lint test-race

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

## bench: Go benchmarks, then ledgerbench against a fresh ledgerd (see BENCHMARKS.md)
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	scripts/bench.sh

clean:
	rm -rf bin var
