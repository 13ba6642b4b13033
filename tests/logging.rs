//! What the worker's log lines carry.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use majordomo_worker::Worker;

/// Collects everything a fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// tracing-subscriber's fmt layer appends a value each time a span field is recorded, so a
/// span that recorded `broker` on every connect grew by one `broker=…` per reconnect, in
/// memory and on every log line.
#[test]
fn log_lines_name_the_broker_once_however_often_the_worker_reconnects() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let broker = TestBroker::tcp();
    tracing::subscriber::with_default(subscriber, || {
        let mut worker = Worker::new(config(&broker.endpoint, "svc"), echo).unwrap();
        for _ in 0..4 {
            worker.connect().unwrap();
            let deadline = Instant::now() + WATCHDOG;
            let identity = loop {
                let _ = worker.receive_timeout(Duration::from_millis(5)).unwrap();
                if let Some((identity, frames)) = broker.try_recv(Duration::from_millis(5)) {
                    if is_command(&frames, READY) {
                        break identity;
                    }
                }
                assert!(Instant::now() < deadline, "no READY");
            };
            broker.send(&identity, &[b"", b"MDPW01", &[DISCONNECT]]);
            let _ = worker.receive_timeout(Duration::from_millis(50)).unwrap();
        }
        assert!(worker.stats().reconnects >= 3, "{:?}", worker.stats());
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let worst = text
        .lines()
        .max_by_key(|line| line.matches("broker=\"").count())
        .unwrap_or_default();
    assert!(
        worst.matches("broker=\"").count() <= 1,
        "a log line repeats the broker: {worst}"
    );
    assert!(
        text.lines()
            .all(|line| line.matches("mdp_worker{").count() <= 1),
        "a connection's span nested in the previous one"
    );
    let span_field = format!("broker=\"{}\"", broker.endpoint);
    assert!(text.contains(&span_field), "no line in a connection's span");
}
