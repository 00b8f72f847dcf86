# Upscale. `make run` and `make test` are all a fresh Debian 12 root machine needs.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
DATA ?= /var/lib/upscale

# The server needs git and HAProxy; the agent LXC (with lxc-dev to build
# it), debootstrap for runtime images, iproute2 and nftables for its bridge.
RUN_PKGS := git ca-certificates haproxy lxc lxc-dev pkg-config gcc debootstrap iproute2 nftables
# GlusterFS: the storage engine's tests start several glusterd and mount
# volumes with the FUSE client.
TEST_PKGS := $(RUN_PKGS) openssh-client openssh-server mariadb-server busybox-static wrk sudo glusterfs-server glusterfs-client

.PHONY: all build run stop uninstall test lint fuzz bench clean clean-test deps test-deps

all: build

build:
	$(GO) build -o $(BIN)/upscale ./cmd/upscale
	CGO_ENABLED=1 $(GO) build -o $(BIN)/upscale-agent ./cmd/upscale-agent

deps:
	@scripts/deps.sh $(RUN_PKGS)

test-deps:
	@scripts/deps.sh $(TEST_PKGS)

# Runs the server in the foreground with the embedded defaults: SSH on
# :2222, HTTP on :80, data in $(DATA), SQLite store, embedded bus, and this
# box's own agent (bin/upscale-agent, started by the server).
run: deps build
	$(BIN)/upscale server --data $(DATA) $(ARGS)

# Stops what make run started, whichever shell runs it: the server (as
# SIGTERM does), HAProxy (which outlives a server restart on purpose) and
# this box's agent's containers, bridge and NAT rule.
stop:
	@if [ -x $(BIN)/upscale ]; then $(BIN)/upscale server stop --data $(DATA); fi

# Stops everything, then removes what Upscale keeps on this box: the data
# directory (store, repositories, host key), the agent's state and the
# runtime image cache. Debian packages and /etc/upscale stay.
uninstall: stop
	rm -rf $(DATA) /var/lib/upscale-agent /var/cache/upscale $(BIN)

# Every test, end-to-end ones included: real git, OpenSSH, MariaDB.
# MariaDB is stopped afterwards when the run started it, and the id ranges
# the tests' agents reserved in /etc/subuid and /etc/subgid are given back.
test: test-deps
	@scripts/test-subids.sh save; \
	dsn=$$(scripts/test-mariadb.sh) || { scripts/test-subids.sh restore; exit 1; }; \
	UPSCALE_TEST_MYSQL_DSN="$$dsn" UPSCALE_REQUIRE_MYSQL=1 UPSCALE_E2E=1 \
		$(GO) test -race -count=1 -timeout 25m ./...; status=$$?; \
	scripts/test-mariadb.sh stop; scripts/test-subids.sh restore; exit $$status

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Each fuzz target for a while; `make fuzz FUZZTIME=5m` for longer.
FUZZTIME ?= 30s
fuzz:
	@$(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read pkg dir; do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench: test-deps build
	$(GO) run ./bench

# Removes what a crashed test run may have left: containers, bridges, NAT
# rules, HAProxy and servers, temp dirs, test databases.
clean-test:
	@scripts/clean-test.sh $(BIN)/upscale-agent

clean: clean-test
	rm -rf $(BIN)
