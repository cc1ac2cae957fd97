# netevd: build, test and CI entry points. `make help` lists the targets.
#
# Variables: GO (go), VERSION (from git describe), FUZZTIME (10s per target).

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin

GO       ?= go
MODULE   := github.com/netevd/netevd
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X $(MODULE)/internal/version.Version=$(VERSION)
BIN      := bin/netevd
FUZZTIME ?= 10s

.PHONY: all build test deps lint vet fmt-check bench demo fuzz clean help

all: build

help:
	@echo "make build      build $(BIN) (version $(VERSION))"
	@echo "make test       install test deps, lint, then go test -race ./... (what .ci/run does)"
	@echo "make lint       go vet + gofmt check"
	@echo "make bench      Go benchmarks, then scripts/bench*.sh"
	@echo "make fuzz       every Fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make demo       build, then run '$(BIN) lab' (root only)"
	@echo "make clean      remove build output"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/netevd

# Tests that need root (network namespaces) skip themselves without it.
test: deps lint
	$(GO) test -race -count=1 -timeout 15m ./...

deps:
	@bash scripts/install-test-deps.sh

lint: vet fmt-check

vet:
	$(GO) vet ./...

# Lists the files gofmt would change and fails if there are any.
fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$files"; exit 1; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@for s in scripts/bench*.sh; do \
		if [ -x "$$s" ]; then echo "== $$s"; "$$s" || exit 1; fi; \
	done

fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# The lab creates network namespaces, so it needs root; check before building.
demo: demo-root build
	$(BIN) lab

.PHONY: demo-root
demo-root:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make demo: '$(BIN) lab' creates network namespaces and must run as root (try: sudo make demo)" >&2; \
		exit 1; \
	fi

clean:
	rm -rf bin coverage*.out
