# SPDX-License-Identifier: MIT
# The two promises: `make run` and `make test` (see README.md). Both install what is
# missing first (scripts/bootstrap.sh), so a fresh Debian 12 machine needs nothing else.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
BACKEND    ?= sqlite

.PHONY: all build run test bench deps deps-test clean clean-data asan check-layering fuzz chaos scaleout scaleout-down

all: build

deps:
	@scripts/bootstrap.sh build

deps-test:
	@scripts/bootstrap.sh test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target emporium

run: build
	$(BUILD)/emporium serve

test: deps-test
	scripts/test.sh

# The full operations drills (tests/ops): 20 crash rounds, rolling restart, upgrade/rollback,
# blue-green and canary under load (`make test` runs short versions). CHAOS_ROUNDS=N for more.
chaos: deps-test
	scripts/chaos.sh

# libFuzzer targets (tests/fuzz), FUZZ_SECONDS each (default 60).
fuzz: deps-test
	scripts/fuzz.sh

bench: deps-test build
	BACKEND=$(BACKEND) bench/run.sh

# The topology in miniature: every service group as its own process behind nginx, on
# PostgreSQL + PgBouncer, a Redis Cluster and the Kafka mock (docs/topology.md).
scaleout: deps-test build
	cmake --build $(BUILD) -j $(JOBS) --target emporium-kafka-mock
	SCALEOUT_BIN=$(BUILD)/emporium scripts/scaleout.sh up

scaleout-down:
	scripts/scaleout.sh down

# Build output only. The shop's data (./data, the default EMPORIUM_DATA_DIR) is never
# touched here: deleting it is `make clean-data`.
clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

# Deletes ./data: every account, order and product of the local shop. On purpose only.
clean-data:
	rm -rf data

# Layering rules (see scripts/check-layering.sh); prints every violation.
check-layering:
	scripts/check-layering.sh
