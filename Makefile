# make test    - format check, clippy (warnings are errors), every test
# make demo    - mdp bench --kill-one: broker, 4 echo workers (one SIGKILLed half-way and
#                restarted), 8 clients, 100 000 checked requests, a report
# make example - the echo worker against a broker on tcp://127.0.0.1:5555
# make bench   - benchmarks: criterion (codec, roundtrip, broker) and the cross-process
#                lockstep harness, then the plot (see BENCHMARKS.md). BENCH_QUICK=1 for a
#                short smoke run. Results land in target/bench/ and target/criterion/.
# make bench-docs - copy the last lockstep results and plot into docs/
# make soak    - minutes of load with broker restarts, a killed worker and garbage (README, Soak)
# make fuzz    - each fuzz target for FUZZ_SECONDS (see FUZZING.md; needs cargo-fuzz)
# make test-curve - the CURVE tests against the system libzmq (needs libzmq3-dev; see README)

CARGO ?= cargo
# nextest runs test binaries in parallel; plain cargo test is the fallback.
TEST_RUNNER := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "nextest run --no-fail-fast" || echo "test")

.PHONY: test lint unit doc example demo bench bench-docs soak fuzz test-curve clean

test: lint unit doc

# Every target with every feature (the tokio driver included), and the sync API alone.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(CARGO) clippy -p majordomo-worker --lib -- -D warnings

unit:
	$(CARGO) $(TEST_RUNNER) --workspace --all-features

doc:
	$(CARGO) test --doc --all-features
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --all-features

# MDP_BROKER would point mdp bench at another broker: the demo is always the embedded one.
demo:
	env -u MDP_BROKER $(CARGO) run --release -p majordomo-cli -- bench --kill-one

example:
	$(CARGO) run --example echo_worker -- --broker tcp://127.0.0.1:5555 --service echo

bench:
	$(CARGO) bench --bench codec --bench roundtrip --bench broker
	$(CARGO) bench --features tokio,metrics --bench lockstep
	$(CARGO) bench --features tokio --bench idle
	$(CARGO) bench --features tokio --bench io_bound
	$(CARGO) bench --bench pool_registration
	python3 scripts/plot_rate.py target/bench/rate_by_size.csv target/bench/rate_by_size.svg

bench-docs:
	cp target/bench/rate_by_size.csv target/bench/report.md docs/
	python3 scripts/plot_rate.py docs/rate_by_size.csv docs/rate_by_size.svg

# Debug build on purpose: overflow checks and debug assertions stay on while the soak runs.
# SOAK_SECS sets the length (default 180), SOAK_SEED replays a run.
soak:
	$(CARGO) test --test soak -- --ignored --nocapture

# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode_worker decode_client broker_state

fuzz:
	for target in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target -- \
			-max_total_time=$(FUZZ_SECONDS) -dict=$(CURDIR)/fuzz/mdp.dict || exit 1; \
	done

# The bundled libzmq of the zmq crate has no CURVE. This overrides the zmq-sys build script
# (a Cargo `links` override) to link the system libzmq instead, built with libsodium on
# Debian/Ubuntu (libzmq3-dev), in a target directory of its own.
CURVE_TARGET ?= $(shell rustc -vV | sed -n 's/^host: //p')
CURVE_LIBDIR ?= $(shell pkg-config --variable=libdir libzmq 2>/dev/null)

test-curve:
	CARGO_TARGET_DIR=target/system-libzmq $(CARGO) \
		--config 'target.$(CURVE_TARGET).zmq.rustc-link-lib=["zmq"]' \
		--config 'target.$(CURVE_TARGET).zmq.rustc-link-search=["$(CURVE_LIBDIR)"]' \
		test --test curve -- --nocapture

clean:
	$(CARGO) clean
