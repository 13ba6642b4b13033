# make test    - format check, clippy (warnings are errors), every test
# make demo    - the one-process demo: broker, workers, client, report
# make example - the echo worker against a broker on tcp://127.0.0.1:5555
# make bench   - benchmarks: criterion (codec, roundtrip, broker) and the cross-process
#                lockstep harness, then the plot (see BENCHMARKS.md). BENCH_QUICK=1 for a
#                short smoke run. Results land in target/bench/ and target/criterion/.
# make bench-docs - copy the last lockstep results and plot into docs/

CARGO ?= cargo
# nextest runs test binaries in parallel; plain cargo test is the fallback.
TEST_RUNNER := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo "nextest run --no-fail-fast" || echo "test")

.PHONY: test lint unit doc example demo bench bench-docs clean

test: lint unit doc

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) $(TEST_RUNNER)

doc:
	$(CARGO) test --doc
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

example:
	$(CARGO) run --example echo_worker -- --broker tcp://127.0.0.1:5555 --service echo

bench:
	$(CARGO) bench --bench codec --bench roundtrip --bench broker
	$(CARGO) bench --bench lockstep
	python3 scripts/plot_rate.py target/bench/rate_by_size.csv target/bench/rate_by_size.svg

bench-docs:
	cp target/bench/rate_by_size.csv target/bench/report.md docs/
	python3 scripts/plot_rate.py docs/rate_by_size.csv docs/rate_by_size.svg

clean:
	$(CARGO) clean
