//! Lockstep round trip in one process: a ROUTER playing the broker sends one REQUEST at a
//! time to an echo peer on a thread (raw DEALER echo, our worker, our threaded worker), over
//! inproc and tcp loopback, 16 B and 1 MiB bodies. Wall time per request; the CPU figures and
//! the alternating rounds are in `benches/lockstep.rs`.
//!
//! `cargo bench --bench roundtrip`

#[path = "support/mod.rs"]
mod support;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use majordomo_worker::ShutdownHandle;
use support::echo::{self, Mode};
use support::Driver;

struct Peer {
    driver: Driver,
    mode: Mode,
    shutdown: ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Peer {
    fn start(context: &zmq::Context, mode: Mode, bind: &str) -> Peer {
        let mut driver = Driver::bind(context, bind);
        let shutdown = ShutdownHandle::new();
        let (ctx, ep, sd) = (context.clone(), driver.endpoint.clone(), shutdown.clone());
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            tx.send(()).unwrap();
            echo::run(mode, &ctx, &ep, Some(sd));
        });
        rx.recv().unwrap();
        driver.accept();
        Peer {
            driver,
            mode,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if matches!(self.mode, Mode::Raw | Mode::RawCopy) {
            self.driver.stop_raw();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn roundtrip(c: &mut Criterion) {
    let context = zmq::Context::new();
    for transport in ["inproc", "tcp"] {
        for (size, label) in [(16usize, "16B"), (1 << 20, "1MiB")] {
            let body = vec![0x5au8; size];
            let mut group = c.benchmark_group(format!("roundtrip/{transport}/{label}"));
            group.sample_size(20);
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));
            group.throughput(Throughput::Elements(1));
            for mode in [Mode::Raw, Mode::Worker, Mode::Threaded] {
                let bind = match transport {
                    "tcp" => "tcp://127.0.0.1:*".to_string(),
                    _ => format!("inproc://roundtrip-{}-{label}", mode.name()),
                };
                let mut peer = Peer::start(&context, mode, &bind);
                group.bench_function(mode.name(), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            peer.driver.round_trip(&body);
                        }
                        start.elapsed()
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
