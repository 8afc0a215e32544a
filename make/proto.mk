# Protobuf code generation for api/.
#
# Included by the top-level Makefile; also usable on its own from the
# repository root:  make -f make/proto.mk proto
#
# All tools are pinned and built from source through the Go module proxy
# (go install pkg@version) into ./bin; buf runs them as local plugins.

BUF_VERSION              ?= v1.75.0
PROTOC_GEN_GO_VERSION    ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2

PROTO_BIN ?= $(CURDIR)/bin
BUF       := $(PROTO_BIN)/buf

# One stamp per tool and version, so changing a version reinstalls that tool.
PROTO_TOOL_STAMPS := \
	$(PROTO_BIN)/.buf-$(BUF_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp

.PHONY: proto proto-tools proto-lint

## proto: install the pinned tools, lint and generate Go code from api/
proto: proto-tools
	$(BUF) lint
	$(BUF) generate

## proto-lint: lint api/ only
proto-lint: proto-tools
	$(BUF) lint

## proto-tools: install buf, protoc-gen-go and protoc-gen-go-grpc into ./bin
proto-tools: $(PROTO_TOOL_STAMPS)

$(PROTO_BIN)/.buf-$(BUF_VERSION).stamp:
	GOBIN=$(PROTO_BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@rm -f $(PROTO_BIN)/.buf-*.stamp && touch $@

$(PROTO_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp:
	GOBIN=$(PROTO_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@rm -f $(PROTO_BIN)/.protoc-gen-go-v*.stamp && touch $@

$(PROTO_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp:
	GOBIN=$(PROTO_BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@rm -f $(PROTO_BIN)/.protoc-gen-go-grpc-*.stamp && touch $@
