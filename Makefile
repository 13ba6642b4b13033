# make test    - format check, clippy (warnings are errors), every test
# make demo    - the one-process demo: broker, workers, client, report
# make example - the echo worker against a broker on tcp://127.0.0.1:5555
# make bench   - criterion benchmarks (see BENCHMARKS.md)
# make soak    - minutes of load with broker restarts, a killed worker and garbage (README, Soak)

CARGO ?= cargo
# nextest runs test binaries in parallel; plain cargo test is the fallback.
TEST_RUNNER := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "nextest run --no-fail-fast" || echo "test")

.PHONY: test lint unit doc example demo bench soak clean

test: lint unit doc

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) $(TEST_RUNNER)

doc:
	$(CARGO) test --doc
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

demo:
	$(CARGO) run --release --example demo

example:
	$(CARGO) run --example echo_worker -- --broker tcp://127.0.0.1:5555 --service echo

bench:
	$(CARGO) bench

# Debug build on purpose: overflow checks and debug assertions stay on while the soak runs.
# SOAK_SECS sets the length (default 180), SOAK_SEED replays a run.
soak:
	$(CARGO) test --test soak -- --ignored --nocapture

clean:
	$(CARGO) clean
