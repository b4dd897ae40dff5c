# Search-and-rescue coordination backend. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export CGO_ENABLED := 1
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BUF := go tool -modfile=tools/go.mod buf
GOTEST_FLAGS ?= -race -timeout 20m

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install what the tests need from Debian's packages when missing (redis-server, chromium, a CJK font)
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || [ -n "$${SAR_CHROMIUM:-}" ] || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
		echo "installing (Debian packages):$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@redis-server --version
	@$${SAR_CHROMIUM:-chromium} --version
	@# NATS needs no install: tests embed nats-server v2.15 in-process (Debian's nats-server is 2.9).
	@# The share page's browser tests keep screenshots in artifacts/share/ (SAR_ARTIFACTS to move them).

.PHONY: run
run: build ## Run the server in embedded mode (no Redis or NATS needed)
	./bin/sard --log-format text

.PHONY: build
build: ## Build sard, sarctl and sarsim into bin/
	go build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

.PHONY: test
test: deps ## Install test dependencies and run all tests with the race detector
	go test $(GOTEST_FLAGS) ./...

.PHONY: generate
generate: ## Regenerate Go code from proto/ (local plugins only)
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: generate ## Fail if the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		git status --porcelain -- gen; git diff --stat -- gen; \
		echo "generated code is stale: run 'make generate' and commit"; exit 1; fi

.PHONY: lint
lint: ## buf lint, gofmt, go vet
	$(BUF) lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...

.PHONY: breaking
breaking: ## Check proto changes against main for wire/JSON breaks
	$(BUF) breaking --against '.git#branch=main'

.PHONY: bench
bench: ## Run the Go micro-benchmarks
	go test -run '^$$' -bench . -benchmem ./geo/ ./internal/...
