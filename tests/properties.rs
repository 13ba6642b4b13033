//! Properties of the MDP/0.1 codec, checked on generated input:
//!
//! - any sequence of frames decodes to a message or a [`ProtocolError`], never a panic, and
//!   the error's text stays short whatever the frames hold;
//! - what decodes is exactly what its encoding sends (decoding loses nothing);
//! - encode then decode is the identity for every valid message.
//!
//! Frames come from three sources: random bytes, the building blocks of real messages
//! (headers, command bytes, empty frames) in random order, and valid messages with a few
//! random mutations (a frame deleted, inserted, replaced, or a byte changed), which reach
//! the deep branches of the decoder that random bytes almost never do.

use majordomo_worker::protocol::{ClientMessage, ProtocolError, WorkerMessage};
use proptest::prelude::*;

type Frames = Vec<Vec<u8>>;

/// Case counts stay modest so that `make test` stays fast; the fuzzer (`make fuzz`) goes deep.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// A frame: random bytes, or one of the pieces real messages are made of.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..8),
        1 => Just(Vec::new()),
        1 => prop::sample::select(vec![
            b"MDPW01".to_vec(),
            b"MDPC01".to_vec(),
            b"MDPW02".to_vec(),
            b"MDPC02".to_vec(),
            b"mmi.service".to_vec(),
        ]),
        1 => (0u8..=6).prop_map(|byte| vec![byte]),
    ]
}

fn non_empty_frame() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..8)
}

fn service_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 1..12),
        1 => prop::collection::vec(any::<u8>(), 250..=255),
    ]
}

fn body() -> impl Strategy<Value = Frames> {
    prop::collection::vec(frame(), 0..4)
}

fn worker_message() -> impl Strategy<Value = WorkerMessage<Vec<u8>>> {
    prop_oneof![
        service_name().prop_map(|service| WorkerMessage::Ready { service }),
        (prop::collection::vec(non_empty_frame(), 1..3), body())
            .prop_map(|(envelope, body)| WorkerMessage::Request { envelope, body }),
        (prop::collection::vec(non_empty_frame(), 1..3), body())
            .prop_map(|(envelope, body)| WorkerMessage::Reply { envelope, body }),
        Just(WorkerMessage::Heartbeat),
        Just(WorkerMessage::Disconnect),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage<Vec<u8>>> {
    (service_name(), body()).prop_map(|(service, body)| ClientMessage { service, body })
}

/// One change to a valid message.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Insert(usize, Vec<u8>),
    Replace(usize, Vec<u8>),
    FlipByte(usize, usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), frame()).prop_map(|(at, f)| Mutation::Insert(at, f)),
        (any::<usize>(), frame()).prop_map(|(at, f)| Mutation::Replace(at, f)),
        (any::<usize>(), any::<usize>(), 1u8..=255)
            .prop_map(|(f, b, x)| Mutation::FlipByte(f, b, x)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut frames: Frames, mutations: &[Mutation]) -> Frames {
    for mutation in mutations {
        let len = frames.len();
        match mutation.clone() {
            Mutation::Delete(at) if len > 0 => {
                frames.remove(at % len);
            }
            Mutation::Insert(at, frame) => frames.insert(at % (len + 1), frame),
            Mutation::Replace(at, frame) if len > 0 => frames[at % len] = frame,
            Mutation::FlipByte(at, byte, x) if len > 0 && !frames[at % len].is_empty() => {
                let frame = &mut frames[at % len];
                let i = byte % frame.len();
                frame[i] ^= x;
            }
            Mutation::Truncate(at) => frames.truncate(at % (len + 1)),
            _ => {}
        }
    }
    frames
}

/// Frames of every shape: random, or a valid message of either family, mutated.
fn any_frames() -> impl Strategy<Value = Frames> {
    prop_oneof![
        prop::collection::vec(frame(), 0..10),
        (
            worker_message().prop_map(WorkerMessage::encode),
            prop::collection::vec(mutation(), 0..3)
        )
            .prop_map(|(frames, m)| apply(frames, &m)),
        (
            client_message().prop_map(ClientMessage::encode),
            prop::collection::vec(mutation(), 0..3)
        )
            .prop_map(|(frames, m)| apply(frames, &m)),
    ]
}

/// An error's text is short whatever the frames held: a hostile frame cannot flood the log.
fn check_error_text(error: &ProtocolError) -> Result<(), TestCaseError> {
    let text = error.to_string();
    prop_assert!(
        text.len() < 200,
        "error text of {} bytes: {text}",
        text.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_frames_decode_as_a_worker_message_or_an_error_never_a_panic(frames in any_frames()) {
        match WorkerMessage::decode(frames.clone()) {
            // Decoding loses nothing: the message's encoding is the very frames received.
            Ok(message) => prop_assert_eq!(message.encode(), frames),
            Err(error) => check_error_text(&error)?,
        }
    }

    #[test]
    fn any_frames_decode_as_a_client_message_or_an_error_never_a_panic(frames in any_frames()) {
        match ClientMessage::decode(frames.clone()) {
            Ok(message) => prop_assert_eq!(message.encode(), frames.clone()),
            Err(error) => check_error_text(&error)?,
        }
        match ClientMessage::decode_without_delimiter(frames.clone()) {
            Ok(message) => prop_assert_eq!(&message.encode()[1..], &frames[..]),
            Err(error) => check_error_text(&error)?,
        }
    }

    #[test]
    fn encode_then_decode_is_the_identity_for_worker_messages(message in worker_message()) {
        prop_assert_eq!(WorkerMessage::decode(message.clone().encode()), Ok(message));
    }

    #[test]
    fn encode_then_decode_is_the_identity_for_client_messages(message in client_message()) {
        prop_assert_eq!(ClientMessage::decode(message.clone().encode()), Ok(message.clone()));
        let without_delimiter = message.clone().encode().split_off(1);
        prop_assert_eq!(ClientMessage::decode_without_delimiter(without_delimiter), Ok(message));
    }

    #[test]
    fn zmq_message_frames_decode_like_byte_vectors(frames in any_frames()) {
        let messages: Vec<zmq::Message> = frames.iter().map(|f| zmq::Message::from(&f[..])).collect();
        let as_bytes = |m: WorkerMessage<zmq::Message>| -> WorkerMessage<Vec<u8>> {
            WorkerMessage::decode(m.encode().iter().map(|f| f.to_vec()).collect())
                .expect("re-decodes")
        };
        let expected = WorkerMessage::decode(frames.clone());
        prop_assert_eq!(WorkerMessage::decode(messages).map(as_bytes), expected);
    }
}
