//! Broker throughput by worker count: our broker with 1, 2 and 4 of our workers, and a raw
//! ROUTER-to-ROUTER forwarder with raw MDP echo workers for scale; one client keeping two
//! requests per worker in flight, 16 B bodies, tcp loopback, all in this process. Latency
//! percentiles are in `benches/lockstep.rs`. `broker_flooded` measures what a flood of
//! requests for 100 000 made-up service names, sent first, costs every later request.
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

/// Per-request cost through our broker with one worker, before and after a flood of requests
/// for unserved names (one broker for both: the flood is what differs).
fn flooded(c: &mut Criterion) {
    let context = zmq::Context::new();
    let mut group = c.benchmark_group("broker_flooded");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let setup = Setup::start(&context, Router::Ours, Backend::Worker, 1);
    let mut client = Client::connect(&context, &setup.client_endpoint);
    for names in [0u32, 100_000] {
        flood_unserved_names(&context, &setup.client_endpoint, names);
        group.bench_function(format!("ours/1_worker/{names}_unserved_names"), |b| {
            b.iter_custom(|iters| client.run(iters, 2, 16).elapsed)
        });
    }
    drop(client);
    setup.stop();
    group.finish();
}

/// One request for each of `names` made-up services, then one for the real service on the
/// same socket: its reply proves that the broker has read the whole flood.
fn flood_unserved_names(context: &zmq::Context, endpoint: &str, names: u32) {
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(60_000).unwrap();
    socket.connect(endpoint).unwrap();
    for n in 0..names {
        let name = format!("nobody-{n}");
        let request = [&b""[..], b"MDPC01", name.as_bytes(), b"x"];
        socket.send_multipart(request, 0).unwrap();
    }
    let request = [&b""[..], b"MDPC01", support::SERVICE.as_bytes(), &[0; 8]];
    socket.send_multipart(request, 0).unwrap();
    socket
        .recv_multipart(0)
        .expect("the real request is answered");
}

criterion_group!(benches, flooded, broker);
criterion_main!(benches);
