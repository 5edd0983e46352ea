# Spool: set-up, build, test and benchmark commands (see README.md).
#   make demo    install what is missing, build, and run the main job on the embedded default
#   make test    install what is missing, build, run every test on io_uring, on epoll,
#                and under a seccomp filter that blocks io_uring
#   make bench   run the benchmarks in Benchmarks/ (ratios against peers in the same run)
#   make cluster the distributed set-up on this machine (spool cluster up: PostgreSQL, Redis,
#                two dispatchers, the nginx gateway, two engines) and one job through the gateway
#   make chaos   the chaos run of the distributed mode (1,000 jobs through the gateway while
#                dispatchers, engines, Redis and PostgreSQL are killed and restarted)
#   make simulate  more seeds of the simulation test (SEEDS=N), or replay one (SEED=S)
#   make         (make build) install what is missing, build spool, the tests and the plugins
#   make plugins the transcoder plugins shipped here (.build/plugins/*.so)
SHELL := /bin/bash
.DEFAULT_GOAL := build
DEB_PACKAGES := liburing-dev libsqlite3-dev libssl-dev libavformat-dev libavcodec-dev \
	libswscale-dev libswresample-dev libavutil-dev pkg-config curl python3 python3-requests ffmpeg \
	bubblewrap gcc handbrake-cli redis-server nginx openssl postgresql libpq-dev
BENCH_PACKAGES := wrk nginx-light libsimdjson-dev g++ linux-perf
SWIFT ?= swift
# Release builds carry the Swift runtime and Foundation inside the binary
# (--static-swift-stdlib): it runs on a machine without the Swift toolchain, starts in
# 50 ms instead of 67, and each process (every sandboxed transcode is one) maps 6 MB less
# (docs/adr/0018-encoder-threads.md, addendum 2). Benchmarks/run.sh builds spool through
# this target, so the two never recompile each other's objects.
RELEASE_FLAGS := -c release --static-swift-stdlib
SPOOL := .build/debug/spool
TEST_FLAGS := --skip-build --disable-swift-testing

.PHONY: chaos cluster plugins simulate simulate-fleet deps build release spool-debug test external-tests bench bench-deps bench-smoke fuzz-replay fuzz-corpus demo media-demo media-leakcheck clean kernel-check fuzz fuzz-smoke fuzz-smoke-http1 fuzz-smoke-json fuzz-smoke-resp

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "Debian packages: all present"; fi

build: deps plugins
	$(SWIFT) build --build-tests

# Transcoder plugins shipped in the repo (Plugins/NAME/*.c -> .build/plugins/NAME.so), built
# against the ABI header engines load them with.
plugins: .build/plugins/handbrake.so

.build/plugins/handbrake.so: Plugins/handbrake/handbrake_plugin.c CShims/CPlugin/include/spool_plugin.h
	@mkdir -p .build/plugins
	cc -shared -fPIC -O2 -Wall -Wextra -I CShims/CPlugin/include -o $@ $<

release: deps
	$(SWIFT) build $(RELEASE_FLAGS) --product spool

spool-debug: deps
	$(SWIFT) build --product spool

kernel-check: build
	./kernel-check.sh

# The whole suite three times: io_uring (auto), forced epoll, and auto under a seccomp
# filter that makes io_uring_setup fail with EPERM (as Docker's default profile does).
# SimulationTests (300 seeds on the simulated backend, ~10 s) runs in the first pass only:
# the simulator replaces the backend, so the other passes would repeat it exactly. So do the
# suites that never touch the I/O backend (libav, the sandboxed runner, JSON, the model,
# scheduling policy, the RESP codec, the gateway's rendering, libpq and its pool): the epoll
# pass would repeat them exactly too.
# The distributed-mode suites (PostgreSQL dispatchers, `spool cluster`, the short chaos run)
# and the 5 GiB streamed upload (90 s in a debug build) run in the first pass only too: the
# epoll pass covers the same HTTP paths with every other suite, within the time budget.
# Tests that need a service (redis-server, PostgreSQL, an S3 server: moto or rclone from
# .build/venv) start their own on a free loopback port and stop it; SPOOL_REQUIRE_SERVICES=1
# makes a missing one a failure, not a skip.
test: build
	@./kernel-check.sh; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ] || echo "note: io_uring unusable here (kernel-check exit $$rc); the uring pass runs on the fallback"
	@set -o pipefail; fail=0; \
	SPOOL_TEST_PYTHON=$$(Tests/External/venv.sh) || exit 1; export SPOOL_TEST_PYTHON; \
	for mode in uring epoll seccomp; do \
	  echo "=== test pass: $$mode ($$(date +%T))"; \
	  case $$mode in \
	    uring)   env -u SPOOL_IO_BACKEND SPOOL_REQUIRE_SERVICES=1 $(SWIFT) test $(TEST_FLAGS) 2>&1 | tee .build/test-$$mode.log || fail=1 ;; \
	    epoll)   SPOOL_IO_BACKEND=epoll SPOOL_REQUIRE_SERVICES=1 $(SWIFT) test $(TEST_FLAGS) --skip SimulationTests --skip '^(MediaTests|SandboxTests|JSONTests|SpoolModelTests|SchedulingTests|RESPTests|GatewayTests|PostgresTests)\.' --skip '\.Postgres[A-Za-z]+Tests' --skip 'CLITests\.ClusterTests' --skip '^S3Tests\.' --skip 'DispatcherTests\.(S3|RedisCache)' --skip 'StreamingTests/testFiveGiBChunkedUploadStreamsInBoundedMemory' 2>&1 | tee .build/test-$$mode.log || fail=1 ;; \
	    seccomp) env -u SPOOL_IO_BACKEND $(SPOOL) run-without-io-uring -- $(SWIFT) test $(TEST_FLAGS) --filter RingTests 2>&1 | tee .build/test-$$mode.log || fail=1 ;; \
	  esac; \
	done; \
	passed=0; failed=0; skipped=0; \
	for mode in uring epoll seccomp; do \
	  line=$$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with" .build/test-$$mode.log | tail -1); \
	  n=$$(echo "$$line" | grep -oE "Executed [0-9]+" | grep -oE "[0-9]+"); \
	  f=$$(echo "$$line" | grep -oE "[0-9]+ failures?" | grep -oE "[0-9]+"); \
	  k=$$(echo "$$line" | grep -oE "[0-9]+ tests? skipped" | grep -oE "[0-9]+"); \
	  if [ -z "$$n" ] || [ -z "$$f" ]; then echo "pass $$mode: no XCTest summary"; n=0; f=1; fail=1; fi; \
	  k=$${k:-0}; passed=$$((passed + n - f - k)); failed=$$((failed + f)); skipped=$$((skipped + k)); \
	done; \
	echo "=== fuzz: HTTP1 (20 s; $$(date +%T))"; \
	if $(MAKE) --no-print-directory fuzz-smoke-http1; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "=== fuzz: JSON (20 s)"; \
	if $(MAKE) --no-print-directory fuzz-smoke-json; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "=== fuzz: RESP (10 s)"; \
	if $(MAKE) --no-print-directory fuzz-smoke-resp; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "=== fuzz: committed corpora replayed"; \
	if $(MAKE) --no-print-directory fuzz-replay; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "=== external: schemathesis, client flow, bad input, SIGKILL crash consistency (live spool serve; $$(date +%T))"; \
	if $(MAKE) --no-print-directory external-tests; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "=== benchmarks: smoke (debug builds, checksums; $$(date +%T))"; \
	if $(MAKE) --no-print-directory bench-smoke > .build/bench-smoke.log 2>&1; then passed=$$((passed + 1)); tail -3 .build/bench-smoke.log; \
	else failed=$$((failed + 1)); fail=1; tail -40 .build/bench-smoke.log; fi; \
	echo "=== allocation budget: GET /api/v1/jobs/{id} on the fast lane, release build ($$(date +%T))"; \
	if $(MAKE) --no-print-directory release > .build/release-build.log 2>&1 && Benchmarks/alloc_per_request.sh; then passed=$$((passed + 1)); \
	else failed=$$((failed + 1)); fail=1; tail -20 .build/release-build.log; fi; \
	echo "=== MediaTests under ASan + LeakSanitizer ($$(date +%T))"; \
	if $(MAKE) --no-print-directory media-leakcheck; then passed=$$((passed + 1)); else failed=$$((failed + 1)); fail=1; fi; \
	echo "$$passed passed, $$failed failed, $$skipped skipped"; \
	[ $$fail = 0 ] && [ $$failed = 0 ]

# The live `spool serve` checked from outside (Tests/External, Python deps from PyPI in
# .build/venv, installed once): schemathesis against /api/v1/openapi.json, a python-requests
# client through the whole flow, hostile input on every endpoint, and SIGKILL at 20 random
# points with every acknowledged job and file checked after each restart, the engines and the
# HandBrake plugin end to end, and the nginx gateway (`spool gateway`) in front of the server;
# then the API suite again with files in S3, reads on a PostgreSQL replica, jobs on two
# shards and Redis for queue, events and cache (scaled_suite.py).
# One step of make test.
external-tests: spool-debug plugins
	@py=$$(Tests/External/venv.sh) || exit 1; fail=0; \
	echo "--- schemathesis"; Tests/External/schemathesis.sh || fail=1; \
	echo "--- api_flow.py"; $$py Tests/External/api_flow.py || fail=1; \
	echo "--- bad_input.py"; $$py Tests/External/bad_input.py || fail=1; \
	echo "--- crash_kill.py"; $$py Tests/External/crash_kill.py || fail=1; \
	echo "--- engines_e2e.py"; $$py Tests/External/engines_e2e.py || fail=1; \
	echo "--- engines_e2e.py --redis (the job queue on Redis Streams)"; $$py Tests/External/engines_e2e.py --redis || fail=1; \
	echo "--- engines_e2e.py --s3 (files in an S3 bucket, moto's server)"; $$py Tests/External/engines_e2e.py --s3 || fail=1; \
	echo "--- plugins_e2e.py"; $$py Tests/External/plugins_e2e.py || fail=1; \
	echo "--- gateway_e2e.py (nginx: TLS, auth, rate limits, retries)"; $$py Tests/External/gateway_e2e.py || fail=1; \
	echo "--- scaled_suite.py (api_flow, bad_input, schemathesis on S3 + a PostgreSQL replica + 2 job shards + Redis)"; \
	  SCHEMATHESIS_EXAMPLES=10 $$py Tests/External/scaled_suite.py || fail=1; \
	[ $$fail = 0 ] && echo "external tests: ok" || { echo "external tests: FAILED"; exit 1; }

# Seeded simulation of the loop, server and client (Sources/Simulation, Tests/SimulationTests):
#   make simulate SEEDS=N   N random seeds (the base is printed; default 1000)
#   make simulate SEED=S    replays seed S (every failure prints its seed)
SEEDS ?= 1000
simulate: build
	@if [ -n "$(SEED)" ]; then \
	  SPOOL_SIM_SEED=$(SEED) $(SWIFT) test $(TEST_FLAGS) --filter SimulationTests.SimulationTests/testHTTPTrafficOverSeeds; \
	else \
	  SPOOL_SIM_RANDOM=1 SPOOL_SIM_SEEDS=$(SEEDS) $(SWIFT) test $(TEST_FLAGS) --filter SimulationTests.SimulationTests/testHTTPTrafficOverSeeds; \
	fi

# The dispatcher's scheduler, leases, heartbeats and sweeps with 100 simulated engines
# (Tests/FleetSimulationTests; `make test` runs 10 seeds):
#   make simulate-fleet SEEDS=N   seeds 1...N     make simulate-fleet SEED=S   replays seed S
simulate-fleet: build
	@if [ -n "$(SEED)" ]; then \
	  SPOOL_FLEET_SEED=$(SEED) $(SWIFT) test $(TEST_FLAGS) --filter FleetSimulationTests; \
	else \
	  SPOOL_FLEET_SEEDS=$(SEEDS) $(SWIFT) test $(TEST_FLAGS) --filter FleetSimulationTests; \
	fi

# Benchmarks also want perf (malloc counting) and taskset (util-linux, always present).
# libFuzzer targets (swiftc -sanitize=fuzzer,address) for the pure parsers. The corpus is
# generated under .build/; crashers are written to .build/fuzz-crashes/ (replay them with
# the same binary and the file as argument).
# FuzzJSON compiles the JSON sources into its own module (internal API visible) and uses
# a token dictionary (Fuzz/FuzzJSON/json.dict).
FUZZ_BIN := .build/fuzz-http1
FUZZ_JSON_BIN := .build/fuzz-json
FUZZ_JSON_DICT := Fuzz/FuzzJSON/json.dict
FUZZ_RESP_BIN := .build/fuzz-resp
$(FUZZ_BIN): Fuzz/FuzzHTTP1/main.swift $(wildcard Sources/HTTP1/*.swift)
	$(SWIFT)c -sanitize=fuzzer,address -parse-as-library -O -module-name FuzzHTTP1 $^ -o $@

# The JSON sources import the C stage-1 kernel: it is compiled with the toolchain's clang
# under the same sanitizers and found through a module map made beside it.
FUZZ_JSON_C := .build/fuzz-cjsonscan
$(FUZZ_JSON_BIN): Fuzz/FuzzJSON/main.swift $(wildcard Sources/JSON/*.swift) CShims/CJSONScan/jsonscan.c CShims/CJSONScan/include/CJSONScan.h
	@mkdir -p $(FUZZ_JSON_C)
	printf 'module CJSONScan {\n  header "%s"\n  export *\n}\n' "$(CURDIR)/CShims/CJSONScan/include/CJSONScan.h" > $(FUZZ_JSON_C)/module.modulemap
	$$(dirname $$(command -v $(SWIFT)c))/clang -O2 -fsanitize=fuzzer-no-link,address -ICShims/CJSONScan/include -c CShims/CJSONScan/jsonscan.c -o $(FUZZ_JSON_C)/jsonscan.o
	$(SWIFT)c -sanitize=fuzzer,address -parse-as-library -O -module-name FuzzJSON -I $(FUZZ_JSON_C) $(filter %.swift,$^) $(FUZZ_JSON_C)/jsonscan.o -o $@

$(FUZZ_RESP_BIN): Fuzz/FuzzRESP/main.swift $(wildcard Sources/RESP/*.swift)
	$(SWIFT)c -sanitize=fuzzer,address -parse-as-library -O -module-name FuzzRESP $^ -o $@

# The fuzzers, 20 s each (RESP 10 s) with a fixed seed.
fuzz-smoke: fuzz-smoke-http1 fuzz-smoke-json fuzz-smoke-resp

fuzz-smoke-resp: $(FUZZ_RESP_BIN)
	@mkdir -p .build/fuzz-corpus-resp .build/fuzz-crashes
	set -o pipefail; $(FUZZ_RESP_BIN) -seed=1 -max_total_time=10 -max_len=512 -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-resp Fuzz/corpus/resp 2>&1 | tail -2

# New inputs go to .build/fuzz-corpus-*; the committed corpus (Fuzz/corpus/*) seeds them.
fuzz-smoke-http1: $(FUZZ_BIN)
	@mkdir -p .build/fuzz-corpus-http1 .build/fuzz-crashes
	set -o pipefail; $(FUZZ_BIN) -seed=1 -max_total_time=20 -max_len=1024 -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-http1 Fuzz/corpus/http1 2>&1 | tail -2

fuzz-smoke-json: $(FUZZ_JSON_BIN)
	@mkdir -p .build/fuzz-corpus-json .build/fuzz-crashes
	set -o pipefail; $(FUZZ_JSON_BIN) -seed=1 -max_total_time=20 -max_len=1024 -dict=$(FUZZ_JSON_DICT) -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-json Fuzz/corpus/json 2>&1 | tail -2

# Every input of the committed corpora run once through both targets (a regression that
# crashes on a known input fails here without luck). Part of make test.
fuzz-replay: $(FUZZ_BIN) $(FUZZ_JSON_BIN) $(FUZZ_RESP_BIN)
	@mkdir -p .build/fuzz-crashes
	set -o pipefail; $(FUZZ_RESP_BIN) -runs=0 -artifact_prefix=.build/fuzz-crashes/ Fuzz/corpus/resp 2>&1 | tail -1
	set -o pipefail; $(FUZZ_BIN) -runs=0 -artifact_prefix=.build/fuzz-crashes/ Fuzz/corpus/http1 2>&1 | tail -1
	set -o pipefail; $(FUZZ_JSON_BIN) -runs=0 -artifact_prefix=.build/fuzz-crashes/ Fuzz/corpus/json 2>&1 | tail -1

# Refreshes the committed corpora from a longer local run (minimized by -merge, inputs of
# at most 512 bytes so the corpus stays small): make fuzz-corpus FUZZ_SECONDS=120
fuzz-corpus: $(FUZZ_BIN) $(FUZZ_JSON_BIN)
	@mkdir -p .build/fuzz-corpus-http1 .build/fuzz-corpus-json
	$(FUZZ_BIN) -seed=1 -max_total_time=$${FUZZ_SECONDS:-60} -max_len=512 .build/fuzz-corpus-http1 Fuzz/corpus/http1 >/dev/null 2>&1
	$(FUZZ_JSON_BIN) -seed=1 -max_total_time=$${FUZZ_SECONDS:-60} -max_len=512 -dict=$(FUZZ_JSON_DICT) .build/fuzz-corpus-json Fuzz/corpus/json >/dev/null 2>&1
	rm -rf .build/fuzz-merge-http1 .build/fuzz-merge-json; mkdir -p .build/fuzz-merge-http1 .build/fuzz-merge-json
	$(FUZZ_BIN) -merge=1 -max_len=512 .build/fuzz-merge-http1 .build/fuzz-corpus-http1 Fuzz/corpus/http1 >/dev/null 2>&1
	$(FUZZ_JSON_BIN) -merge=1 -max_len=512 .build/fuzz-merge-json .build/fuzz-corpus-json Fuzz/corpus/json >/dev/null 2>&1
	rm -rf Fuzz/corpus/http1 Fuzz/corpus/json; mkdir -p Fuzz/corpus
	cp -r .build/fuzz-merge-http1 Fuzz/corpus/http1; cp -r .build/fuzz-merge-json Fuzz/corpus/json
	@echo "corpus: $$(ls Fuzz/corpus/http1 | wc -l) HTTP1 inputs, $$(ls Fuzz/corpus/json | wc -l) JSON inputs"

# Both fuzzers, FUZZ_SECONDS each (default 600), random seeds; fails if either fails.
fuzz: $(FUZZ_BIN) $(FUZZ_JSON_BIN) $(FUZZ_RESP_BIN)
	@mkdir -p .build/fuzz-corpus-http1 .build/fuzz-corpus-json .build/fuzz-corpus-resp .build/fuzz-crashes
	@rc=0; \
	$(FUZZ_BIN) -max_total_time=$${FUZZ_SECONDS:-600} -max_len=4096 -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-http1 || rc=1; \
	$(FUZZ_JSON_BIN) -max_total_time=$${FUZZ_SECONDS:-600} -max_len=4096 -dict=$(FUZZ_JSON_DICT) -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-json || rc=1; \
	$(FUZZ_RESP_BIN) -max_total_time=$${FUZZ_SECONDS:-600} -max_len=4096 -artifact_prefix=.build/fuzz-crashes/ .build/fuzz-corpus-resp Fuzz/corpus/resp || rc=1; \
	exit $$rc

bench-deps: deps
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

bench: bench-deps
	cd Benchmarks && ./run.sh

# Every benchmark once at tiny sizes on debug builds: fails if one stops compiling, a peer's
# harness breaks, or an output checksum changes. No timing is judged. Part of make test.
bench-smoke: bench-deps
	cd Benchmarks && ./run.sh --smoke

# The distributed set-up with the defaults in .build/cluster (.ci/cluster.sh), left running.
cluster: release
	@.ci/cluster.sh .build/release/spool

# The chaos run in full (.ci/chaos.py; its short form is ClusterTests.testShortChaosRun).
chaos: release
	@python3 .ci/chaos.py --spool .build/release/spool --jobs 1000 --real 20 --clients 4 --kills 5

# The main job through the whole system (.ci/demo.sh): it checks the kernel, starts `spool
# up` (dispatcher + one engine, SQLite + local disk) on a free loopback port, synthesizes a
# 720p clip, submits an HLS ladder job with a quality report through `spool submit --wait`,
# downloads the outputs, and stops the server with SIGTERM. Exit 0 only if the job completed.
demo: release
	@./kernel-check.sh --start-loop; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ] || [ $$rc = 1 ]
	@.build/release/spool version
	@./.ci/demo.sh .build/release/spool

# libav in-process: synthesize a 6 s 1280x720 clip (moving pattern + tone), then decode it
# once into an HLS ladder (720p + 360p H.264, fMP4 segments, master playlist) with PSNR/SSIM.
# Standalone (`make media-demo`) it builds the debug binary first; `make demo` passes its
# release binary in SPOOL_BIN.
SPOOL_BIN ?= $(SPOOL)
MEDIA_DEMO_DIR := .build/demo-media
media-demo: $(if $(filter $(SPOOL),$(SPOOL_BIN)),spool-debug)
	@rm -rf $(MEDIA_DEMO_DIR); mkdir -p $(MEDIA_DEMO_DIR)
	@$(SPOOL_BIN) synthesize $(MEDIA_DEMO_DIR)/source.mp4 --width 1280 --height 720 --seconds 6 --fps 30
	@$(SPOOL_BIN) probe $(MEDIA_DEMO_DIR)/source.mp4
	@$(SPOOL_BIN) transcode $(MEDIA_DEMO_DIR)/source.mp4 $(MEDIA_DEMO_DIR)/hls --preset hls-ladder-h264 --quality \
	  && test -s $(MEDIA_DEMO_DIR)/hls/master.m3u8 \
	  && echo "media demo: ok; play $(MEDIA_DEMO_DIR)/hls/master.m3u8 (renditions in $(MEDIA_DEMO_DIR)/hls/*/)" \
	  || { echo "media demo: FAILED"; exit 1; }

# MediaTests under ASan + LeakSanitizer; fails on any leak through Media or libav.
media-leakcheck:
	SWIFT="$(SWIFT)" ./.ci/media-leakcheck.sh

clean:
	rm -rf .build Benchmarks/.build Benchmarks/.work
