//! The worker-side decoder: any frames decode to a message or an error, never a panic, and
//! a message decoded re-encodes to exactly the frames it came from.
#![no_main]

mod frames;

use libfuzzer_sys::fuzz_target;
use majordomo_worker::protocol::WorkerMessage;

fuzz_target!(|data: &[u8]| {
    let frames = frames::split(data);
    match WorkerMessage::decode(frames.clone()) {
        Ok(message) => assert_eq!(message.encode(), frames),
        Err(error) => assert!(error.to_string().len() < 200),
    }
});
