# meta — build, run and test.
#   make run    install what is missing, build, start a local 3-node cluster
#   make test   install what is missing, run every check
SHELL := /bin/bash
GO    ?= go
BIN   := bin
export CGO_ENABLED := 1

.PHONY: all deps build proto run run-tls stop image test vet fmt-check staticcheck lint unit fuzz-short fuzz planted-bugs chaos-smoke chaos chaos-upgrade scaleout mqttbench clean

all: build

# deps installs the system packages the build needs (Debian), once.
deps:
	@ci/deps.sh

build: deps
	$(GO) build -o $(BIN)/ ./cmd/...

proto:
	$(GO) run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate

run: build
	@ci/cluster.sh start

# run-tls: the same cluster with mutual TLS and authentication on; the
# CA, certificates and an admin token under data/tls (ci/cluster.sh).
run-tls: build
	@META_TLS=1 ci/cluster.sh start

stop:
	@ci/cluster.sh stop

# image builds the node image locally (no registry: FROM scratch with
# bin/metanode, its shared libraries and the loader, as the chaos suite
# does) and tags it meta-node:latest for ci/deploy/docker-compose.yml.
image: build
	@tag=$$($(BIN)/metachaos image --binary $(BIN)/metanode) && docker tag "$$tag" meta-node:latest && echo "built $$tag, tagged meta-node:latest"

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# staticcheck runs through `go run` at a pinned version (not a module
# dependency); per-directory exceptions are in staticcheck.conf files.
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

lint: vet fmt-check staticcheck

# unit: every Go test with -race, through gotestsum (go test's own output,
# plus a JSON record of the run); the tests that took 30 s or more are
# listed at the end, so that CI's time can be seen where it goes. The
# longest packages are named first so that they start first (go test runs
# two at a time on this machine's two cores; ./... adds the rest once).
GOTESTSUM := $(GO) run gotest.tools/gotestsum@v1.13.0
UNIT_FIRST := ./metanode/metanodetest/ ./metanode/ ./verify/ ./sm/ ./chaos/ ./cmd/metanode/
unit:
	@mkdir -p $(BIN)
	$(GOTESTSUM) --format standard-quiet --jsonfile $(BIN)/unit.json -- -race -count=1 -timeout 20m $(UNIT_FIRST) ./...
	@echo "unit: tests that took 30 s or more:"; $(GOTESTSUM) tool slowest --jsonfile $(BIN)/unit.json --threshold 30s

# fuzz-short: every native fuzz target (public requests, log entries,
# snapshots, the raft transport codec) for 5 s each; `make fuzz` runs them
# FUZZTIME each (default 2m). Found inputs stay in testdata/fuzz as
# regression tests.
fuzz-short:
	@FUZZTIME=5s ci/fuzz.sh

fuzz:
	@ci/fuzz.sh

# planted-bugs: builds with test-only bugs (tag metabugs; META_BUG picks
# one) must be caught by the in-process fault runner within 20 seeds,
# openauth (a caller without credentials let in) by the auth check that
# TLS chaos runs make, and splitunmarked (a split's tracking misses a
# change) by the scan that verifies the fence digest before the drop.
planted-bugs:
	$(GO) test -tags metabugs -count=1 -timeout 15m -run 'TestPlantedBugs|TestPlantedNoSyncBug|TestPlantedOpenAuthCaught|TestPlantedSplitUnmarked' ./metanode/metanodetest/ ./rocks/ ./rpc/server/ ./sm/ ./metanode/

# chaos-smoke: every nemesis kind once against real nodes in containers
# (about 5 minutes); skipped, loudly, where no Docker engine answers.
chaos-smoke: build
	@if docker info >/dev/null 2>&1; then \
		TESTCONTAINERS_RYUK_DISABLED=true $(BIN)/metachaos smoke --binary $(BIN)/metanode; \
	else \
		echo "!!! chaos-smoke SKIPPED: no Docker engine reachable !!!"; \
	fi

# PREVIOUS_RELEASE: the release chaos upgrades start from, built from
# this repository's history: the last commit of feature level 2 (before
# splits, level 3; sm/version.go).
PREVIOUS_RELEASE ?= 97d3635

# chaos: the maintainers' suite, 20 runs x 60 s over every nemesis kind;
# on even seeds the upgrade fault upgrades from PREVIOUS_RELEASE's binary.
chaos: build
	TESTCONTAINERS_RYUK_DISABLED=true $(BIN)/metachaos run --nemesis all --time 60s --runs 20 --binary $(BIN)/metanode --previous $(PREVIOUS_RELEASE)

# chaos-upgrade: one run (seed 2) whose cluster starts on
# PREVIOUS_RELEASE's binary and is upgraded node by node to bin/metanode
# under the workload, with kills, pauses and partitions beside it.
chaos-upgrade: build
	TESTCONTAINERS_RYUK_DISABLED=true $(BIN)/metachaos run --nemesis upgrade,kill,pause,isolate,reshard --time 60s --seed 2 --runs 1 --binary $(BIN)/metanode --previous $(PREVIOUS_RELEASE)

# test: every check. The planted bugs (in-process clusters) and the chaos
# smoke (containers) both mostly wait on their runs' fault windows, so
# they run side by side, each one's output printed whole when it ends.
test: deps lint unit fuzz-short
	@$(MAKE) --no-print-directory -j2 --output-sync=target planted-bugs chaos-smoke

# scaleout: the scale-out benchmark, 3 nodes then 6, in containers with a
# CPU quota (SCALE_* settings: see ci/scaleout.sh); by hand, never in test.
scaleout: build
	ci/scaleout.sh

# mqttbench: two metamqtt brokers on a cluster of their own, MQB_CLIENTS x
# MQB_PROCS MQTT clients connecting and reconnecting; against the brokers'
# in-memory store for comparison (by hand; not part of make test).
mqttbench: deps
	@ci/mqttbench.sh

clean:
	rm -rf $(BIN)
