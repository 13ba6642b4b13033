//! Signals interrupt system calls: a worker whose thread catches one (SIGTERM wired to
//! shutdown, or any handler the application installs) must carry on, not fail.

mod common;

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use majordomo_worker::{Received, Worker};

fn signal_thread(thread: libc::pthread_t) {
    // SAFETY: pthread_kill with a live thread id (the thread is joined only after the test)
    // and a signal that has a handler installed.
    let rc = unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
    assert_eq!(rc, 0);
}

fn serves_while_signalled(threaded: bool) {
    let handled = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, handled).unwrap();
    let broker = TestBroker::tcp();
    let cfg = config(&broker.endpoint, "echo");
    let shutdown = majordomo_worker::ShutdownHandle::new();
    let cfg = cfg.shutdown_handle(shutdown.clone());
    let handle = thread::spawn(move || {
        let mut worker = if threaded {
            Worker::threaded(cfg, echo).unwrap()
        } else {
            Worker::new(cfg, echo).unwrap()
        };
        let mut handled = 0;
        loop {
            match worker.receive() {
                Ok(Received::Handled) => handled += 1,
                Ok(Received::ShutDown) => return Ok(handled),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let thread_id = handle.as_pthread_t();
    let id = broker.expect_ready("echo");
    for round in 0..20u8 {
        // Idle in poll: signals land while the worker waits.
        for _ in 0..10 {
            signal_thread(thread_id);
            thread::sleep(Duration::from_micros(500));
        }
        broker.request(&id, &[b"c"], &[&[round]]);
        signal_thread(thread_id);
        assert_eq!(broker.expect_reply(&id).1, vec![vec![round]]);
    }
    shutdown.shutdown();
    assert_eq!(
        handle.join().unwrap(),
        Ok(20),
        "the worker failed on a signal"
    );
}

#[test]
fn an_inline_worker_serves_on_while_its_thread_catches_signals() {
    serves_while_signalled(false);
}

#[test]
fn a_threaded_worker_serves_on_while_its_thread_catches_signals() {
    serves_while_signalled(true);
}
