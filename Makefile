# duplex — the two commands: `make run` and `make test`.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
RELEASE_BUILD ?= build-release
FUZZ_SECONDS ?= 12
CMAKE_FLAGS ?=
WERROR ?= ON
# make run serves on HOST:PORT (make run PORT=9000).
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: all deps build run test unit interop examples consumer asan fuzz bench deb release clean help

all: build

help:
	@echo "make run    - install what is missing, build the server, serve the hub and demo page at http://127.0.0.1:8080/"
	@echo "              (another port: make run PORT=9000; another address: HOST=0.0.0.0)"
	@echo "make test   - install, build, run every test (unit, examples, consumer, interop, ASan+UBSan, TSan, fuzz)"
	@echo "make bench  - micro-benchmarks"
	@echo "make release - the production binary: $(RELEASE_BUILD)/duplex with -O3, LTO and PGO from duplex's own"
	@echo "              benchmarks (scripts/build-release; about twice a build's time; make deb BUILD=$(RELEASE_BUILD))"
	@echo "make deb    - the Debian package: $(BUILD)/packages/duplex_<version>-1_<arch>.deb (duplex, web files,"
	@echo "              /etc/duplex/duplex.toml, the systemd unit; docs/OPERATIONS.md)"

deps:
	@scripts/deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDUPLEX_WERROR=$(WERROR) $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS)

# Only the server is built first (not the tests): the demo is up in about
# half the time of a full build; `make test` builds the rest.
run: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS) --target duplex_cli
	$(BUILD)/duplex serve --config config/demo.toml --listen $(HOST):$(PORT)

test: build
	scripts/test-all $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(FUZZ_SECONDS) $(TSAN_BUILD)

bench: build
	cmake --build $(BUILD) -j$(JOBS) --target micro_benchmarks beast_echo
	scripts/bench $(BUILD)

# Only the duplex binary is built (in $(BUILD)), then CPack packs it.
deb: deps $(BUILD)/build.ninja
	JOBS=$(JOBS) scripts/deb $(BUILD)

release: deps
	scripts/build-release --jobs $(JOBS) $(RELEASE_BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(TSAN_BUILD) $(RELEASE_BUILD)
