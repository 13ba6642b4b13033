//! Broker throughput by worker count: our broker with 1, 2 and 4 of our workers, and a raw
//! ROUTER-to-ROUTER forwarder with raw MDP echo workers for scale; one client keeping two
//! requests per worker in flight, 16 B bodies, tcp loopback, all in this process. Latency
//! percentiles are in `benches/lockstep.rs`.
//!
//! `cargo bench --bench broker`

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use support::broker::{Backend, Client, Router, Setup};

fn broker(c: &mut Criterion) {
    let context = zmq::Context::new();
    let mut group = c.benchmark_group("broker");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for workers in [1usize, 2, 4] {
        for (router, backend, name) in [
            (Router::Ours, Backend::Worker, "ours"),
            (Router::Raw, Backend::RawEcho, "raw_forwarder"),
        ] {
            let setup = Setup::start(&context, router, backend, workers);
            let mut client = Client::connect(&context, &setup.client_endpoint);
            group.bench_function(format!("{name}/{workers}_workers"), |b| {
                b.iter_custom(|iters| client.run(iters, 2 * workers as u64, 16).elapsed)
            });
            drop(client);
            setup.stop();
        }
    }
    group.finish();
}

criterion_group!(benches, broker);
criterion_main!(benches);
