//! The protocol codec by body size: decoding a REQUEST and encoding a REPLY move the body
//! frames, so their cost should not grow with the body (a copy would: see `copy_to_vec`).
//!
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use majordomo_worker::protocol::WorkerMessage;
use majordomo_worker::Message;

const SIZES: [usize; 6] = [16, 256, 4096, 65536, 262_144, 1_048_576];

fn request_frames(body: &[u8]) -> Vec<Message> {
    vec![
        Message::new(),
        Message::from(&b"MDPW01"[..]),
        Message::from(&[2u8][..]),
        Message::from(&b"client-0001"[..]),
        Message::new(),
        Message::from(body),
    ]
}

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.sample_size(30);
    group.warm_up_time(std::time::Duration::from_millis(300));
    group.measurement_time(std::time::Duration::from_secs(1));
    for size in SIZES {
        let body = vec![0x5au8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode_request/{}", label(size)), |b| {
            b.iter_batched(
                || request_frames(&body),
                |frames| black_box(WorkerMessage::decode(frames).unwrap()),
                BatchSize::NumIterations(32),
            )
        });
        group.bench_function(format!("encode_reply/{}", label(size)), |b| {
            b.iter_batched(
                || WorkerMessage::Reply {
                    envelope: vec![Message::from(&b"client-0001"[..])],
                    body: vec![Message::from(&body[..])],
                },
                |message| black_box(message.encode()),
                BatchSize::NumIterations(32),
            )
        });
        group.bench_function(format!("decode_request_vec/{}", label(size)), |b| {
            b.iter_batched(
                || {
                    request_frames(&body)
                        .iter()
                        .map(|f| f.to_vec())
                        .collect::<Vec<_>>()
                },
                |frames| black_box(WorkerMessage::decode(frames).unwrap()),
                BatchSize::NumIterations(32),
            )
        });
        // What one copy of the body (BytesAction, recv_multipart) would add, for scale.
        group.bench_function(format!("copy_to_vec/{}", label(size)), |b| {
            let frame = Message::from(&body[..]);
            b.iter(|| black_box(frame.to_vec()))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
