//! The broker's state machine, fed a sequence of messages from a few peers with time passing
//! in between: it never panics, and everything it sends is an identity followed by a valid
//! worker or client message.
//!
//! Input: records separated by `\xff` (so no frame holds that byte); each record's first
//! byte picks the peer (low two bits) or, when its high bit is set, advances time by
//! `(byte & 0x7f) * 10` ms instead; the rest of the record is split into frames (see
//! `frames.rs`).
#![no_main]

mod frames;

use libfuzzer_sys::fuzz_target;
use majordomo_worker::broker::fuzzing::BrokerMachine;
use majordomo_worker::protocol::{ClientMessage, WorkerMessage};

fuzz_target!(|data: &[u8]| {
    let mut broker = BrokerMachine::new();
    for record in data.split(|&b| b == 0xff).filter(|r| !r.is_empty()) {
        let (&first, rest) = record.split_first().expect("non-empty");
        if first & 0x80 != 0 {
            broker.advance_ms(u64::from(first & 0x7f) * 10);
        } else {
            let mut message = vec![vec![b'P', first & 0x03]];
            message.extend(frames::split(rest));
            broker.handle_message(message);
        }
        while let Some(mut sent) = broker.poll_send() {
            assert!(!sent.is_empty());
            let frames = sent.split_off(1);
            if frames.get(1).is_some_and(|h| h.as_slice() == b"MDPW01") {
                assert!(WorkerMessage::decode(frames).is_ok());
            } else {
                assert!(ClientMessage::decode(frames).is_ok());
            }
        }
        let stats = broker.stats();
        assert!(stats.waiting_workers <= stats.workers);
        assert!(stats.replies_routed <= stats.requests_dispatched);
    }
});
