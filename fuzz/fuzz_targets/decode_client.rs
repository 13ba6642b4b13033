//! The client-side decoder, with and without the leading empty frame: a message or an
//! error, never a panic; a message decoded re-encodes to exactly the frames it came from.
#![no_main]

mod frames;

use libfuzzer_sys::fuzz_target;
use majordomo_worker::protocol::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let frames = frames::split(data);
    match ClientMessage::decode(frames.clone()) {
        Ok(message) => assert_eq!(message.encode(), frames),
        Err(error) => assert!(error.to_string().len() < 200),
    }
    match ClientMessage::decode_without_delimiter(frames.clone()) {
        Ok(message) => assert_eq!(message.encode()[1..], frames[..]),
        Err(error) => assert!(error.to_string().len() < 200),
    }
});
