use super::*;

type Frames = Vec<Vec<u8>>;
type Case = (&'static [&'static [u8]], WorkerMessage<Vec<u8>>);

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn worker(parts: &[&[u8]]) -> Result<WorkerMessage<Vec<u8>>, ProtocolError> {
    WorkerMessage::decode(frames(parts))
}

#[test]
fn every_valid_worker_command_decodes_to_its_message() {
    let cases: Vec<Case> = vec![
        (
            &[b"", b"MDPW01", &[1], b"echo"],
            WorkerMessage::Ready {
                service: b"echo".to_vec(),
            },
        ),
        (
            &[b"", b"MDPW01", &[2], b"client-1", b"", b"hello"],
            WorkerMessage::Request {
                envelope: frames(&[b"client-1"]),
                body: frames(&[b"hello"]),
            },
        ),
        (
            &[b"", b"MDPW01", &[3], b"c", b"", b"a", b"", b"\xff\x00"],
            WorkerMessage::Reply {
                envelope: frames(&[b"c"]),
                body: frames(&[b"a", b"", b"\xff\x00"]),
            },
        ),
        (&[b"", b"MDPW01", &[4]], WorkerMessage::Heartbeat),
        (&[b"", b"MDPW01", &[5]], WorkerMessage::Disconnect),
    ];
    for (input, expected) in cases {
        assert_eq!(worker(input), Ok(expected), "input {input:?}");
    }
}

#[test]
fn request_envelope_keeps_every_frame_up_to_the_first_empty_one() {
    let decoded = worker(&[
        b"",
        b"MDPW01",
        &[2],
        b"\x00\xffhop1",
        b"hop2",
        b"",
        b"x",
        b"",
    ]);
    assert_eq!(
        decoded,
        Ok(WorkerMessage::Request {
            envelope: frames(&[b"\x00\xffhop1", b"hop2"]),
            body: frames(&[b"x", b""]),
        })
    );
}

#[test]
fn request_with_no_body_frames_is_valid() {
    assert_eq!(
        worker(&[b"", b"MDPW01", &[2], b"c", b""]),
        Ok(WorkerMessage::Request {
            envelope: frames(&[b"c"]),
            body: vec![],
        })
    );
}

#[test]
fn every_malformed_worker_shape_is_a_typed_error() {
    let long_name = vec![b'x'; 256];
    let cases: Vec<(Frames, ProtocolError)> = vec![
        (vec![], ProtocolError::TooFewFrames { count: 0, min: 3 }),
        (
            frames(&[b"", b"MDPW01"]),
            ProtocolError::TooFewFrames { count: 2, min: 3 },
        ),
        (
            frames(&[b"x", b"MDPW01", &[4]]),
            ProtocolError::MissingEmptyFrame {
                found: ShownBytes::new(b"x"),
            },
        ),
        (
            frames(&[b"", b"MDPW00", &[4]]),
            ProtocolError::BadHeader {
                found: ShownBytes::new(b"MDPW00"),
            },
        ),
        (
            frames(&[b"", b"MDPC01", &[4]]),
            ProtocolError::BadHeader {
                found: ShownBytes::new(b"MDPC01"),
            },
        ),
        (
            frames(&[b"", b"MDPW02", &[4]]),
            ProtocolError::UnsupportedVersion {
                found: ShownBytes::new(b"MDPW02"),
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[9]]),
            ProtocolError::UnknownCommand(9),
        ),
        (
            frames(&[b"", b"MDPW01", &[0]]),
            ProtocolError::UnknownCommand(0),
        ),
        (
            frames(&[b"", b"MDPW01", b""]),
            ProtocolError::BadCommandFrame { len: 0 },
        ),
        (
            frames(&[b"", b"MDPW01", b"\x02\x02"]),
            ProtocolError::BadCommandFrame { len: 2 },
        ),
        (
            frames(&[b"", b"MDPW01", &[2], b"client", b"body"]),
            ProtocolError::MissingDelimiter {
                command: Command::Request,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[2]]),
            ProtocolError::MissingDelimiter {
                command: Command::Request,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[2], b"", b"body"]),
            ProtocolError::MissingAddress {
                command: Command::Request,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[3], b"c"]),
            ProtocolError::MissingDelimiter {
                command: Command::Reply,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[4], b"extra"]),
            ProtocolError::TrailingFrames {
                command: Command::Heartbeat,
                extra: 1,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[5], b"", b""]),
            ProtocolError::TrailingFrames {
                command: Command::Disconnect,
                extra: 2,
            },
        ),
        (
            frames(&[b"", b"MDPW01", &[1]]),
            ProtocolError::TooFewFrames { count: 3, min: 4 },
        ),
        (
            frames(&[b"", b"MDPW01", &[1], b""]),
            ProtocolError::EmptyServiceName,
        ),
        (
            vec![b"".to_vec(), b"MDPW01".to_vec(), vec![1], long_name],
            ProtocolError::ServiceNameTooLong { len: 256 },
        ),
        (
            frames(&[b"", b"MDPW01", &[1], b"echo", b"more"]),
            ProtocolError::TrailingFrames {
                command: Command::Ready,
                extra: 1,
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            WorkerMessage::decode(input.clone()),
            Err(expected),
            "input {input:?}"
        );
    }
}

#[test]
fn encode_then_decode_is_the_identity_for_worker_messages() {
    let messages: Vec<WorkerMessage<Vec<u8>>> = vec![
        WorkerMessage::Ready {
            service: b"svc".to_vec(),
        },
        WorkerMessage::Request {
            envelope: frames(&[b"a", b"\x00"]),
            body: frames(&[b"", b"\x01\x02", b""]),
        },
        WorkerMessage::Reply {
            envelope: frames(&[b"a"]),
            body: vec![],
        },
        WorkerMessage::Heartbeat,
        WorkerMessage::Disconnect,
    ];
    for message in messages {
        let encoded = message.clone().encode();
        assert_eq!(WorkerMessage::decode(encoded), Ok(message));
    }
}

#[test]
fn encoded_frames_match_the_specification_layout() {
    let reply = WorkerMessage::Reply {
        envelope: frames(&[b"client"]),
        body: frames(&[b"x"]),
    };
    assert_eq!(
        reply.encode(),
        frames(&[b"", b"MDPW01", &[3], b"client", b"", b"x"])
    );
    assert_eq!(
        WorkerMessage::<Vec<u8>>::Heartbeat.encode(),
        frames(&[b"", b"MDPW01", &[4]])
    );
    let ready = WorkerMessage::Ready {
        service: b"echo".to_vec(),
    };
    assert_eq!(ready.encode(), frames(&[b"", b"MDPW01", &[1], b"echo"]));
}

#[test]
fn client_messages_decode_and_encode() {
    let decoded = ClientMessage::decode(frames(&[b"", b"MDPC01", b"echo", b"a", b"b"]));
    let expected = ClientMessage {
        service: b"echo".to_vec(),
        body: frames(&[b"a", b"b"]),
    };
    assert_eq!(decoded, Ok(expected.clone()));
    assert_eq!(
        expected.clone().encode(),
        frames(&[b"", b"MDPC01", b"echo", b"a", b"b"])
    );
    assert_eq!(
        ClientMessage::decode_without_delimiter(frames(&[b"MDPC01", b"echo", b"a", b"b"])),
        Ok(expected)
    );
}

#[test]
fn malformed_client_messages_are_typed_errors() {
    let cases: Vec<(Frames, ProtocolError)> = vec![
        (
            frames(&[b"", b"MDPC01"]),
            ProtocolError::TooFewFrames { count: 2, min: 3 },
        ),
        (
            frames(&[b"x", b"MDPC01", b"echo"]),
            ProtocolError::MissingEmptyFrame {
                found: ShownBytes::new(b"x"),
            },
        ),
        (
            frames(&[b"", b"MDPW01", b"echo"]),
            ProtocolError::BadHeader {
                found: ShownBytes::new(b"MDPW01"),
            },
        ),
        (
            frames(&[b"", b"MDPC02", b"echo"]),
            ProtocolError::UnsupportedVersion {
                found: ShownBytes::new(b"MDPC02"),
            },
        ),
        (
            frames(&[b"", b"MDPC01", b""]),
            ProtocolError::EmptyServiceName,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(ClientMessage::decode(input.clone()), Err(expected));
    }
}

#[test]
fn error_messages_show_bytes_escaped_and_cut() {
    let err = worker(&[b"", b"\x00MDP\n", &[4]]).unwrap_err();
    assert_eq!(err.to_string(), "bad protocol header \"\\x00MDP\\x0a\"");
    let long = vec![b'a'; 100];
    let err = WorkerMessage::decode(vec![long, b"MDPW01".to_vec(), vec![4]]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("frame 0 is not empty: \"{}...\"", "a".repeat(32))
    );
    assert_eq!(
        ProtocolError::UnknownCommand(9).to_string(),
        "unknown command byte 0x09"
    );
}

#[test]
fn a_reply_to_a_decoded_request_reuses_its_buffer_and_keeps_the_frame_order() {
    let request = frames(&[b"", b"MDPW01", &[2], b"hop", b"client", b"", b"body"]);
    let buffer = request.as_ptr();
    let Ok(WorkerMessage::Request { envelope, body }) = WorkerMessage::decode(request) else {
        panic!("a valid request");
    };
    assert_eq!(
        envelope.as_ptr(),
        buffer,
        "the envelope keeps the received buffer"
    );
    let reply = WorkerMessage::Reply { envelope, body }.encode();
    assert_eq!(
        reply,
        frames(&[b"", b"MDPW01", &[3], b"hop", b"client", b"", b"body"])
    );
    assert_eq!(
        reply.as_ptr(),
        buffer,
        "the reply is built in the same buffer"
    );
}
