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
# protoc-gen-grpc-gateway and protoc-gen-openapiv2 come from one module; keep
# this in step with github.com/grpc-ecosystem/grpc-gateway/v2 in go.mod (the
# generated code calls that runtime).
GRPC_GATEWAY_VERSION     ?= v2.32.0

PROTO_BIN ?= $(CURDIR)/bin
BUF       := $(PROTO_BIN)/buf

# One stamp per tool and version, so changing a version reinstalls that tool.
PROTO_TOOL_STAMPS := \
	$(PROTO_BIN)/.buf-$(BUF_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-grpc-gateway-$(GRPC_GATEWAY_VERSION).stamp \
	$(PROTO_BIN)/.protoc-gen-openapiv2-$(GRPC_GATEWAY_VERSION).stamp

.PHONY: proto proto-tools proto-lint

## proto: install the pinned tools, lint and generate Go code, the REST gateway
## and its OpenAPI file from api/ (HTTP rules: api/ledger/v1/ledger.gateway.yaml)
proto: proto-tools
	$(BUF) lint
	$(BUF) generate

## proto-lint: lint api/ only
proto-lint: proto-tools
	$(BUF) lint

## proto-tools: install buf and the protoc plugins into ./bin
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

$(PROTO_BIN)/.protoc-gen-grpc-gateway-$(GRPC_GATEWAY_VERSION).stamp:
	GOBIN=$(PROTO_BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	@rm -f $(PROTO_BIN)/.protoc-gen-grpc-gateway-*.stamp && touch $@

$(PROTO_BIN)/.protoc-gen-openapiv2-$(GRPC_GATEWAY_VERSION).stamp:
	GOBIN=$(PROTO_BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@rm -f $(PROTO_BIN)/.protoc-gen-openapiv2-*.stamp && touch $@
