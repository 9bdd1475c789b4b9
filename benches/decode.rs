//! Criterion benches of the hot path: decoding text into FlowBatches, and decoding plus
//! writing raw NDJSON, on corpora shaped like `../shared/bench/gen_flowlogs.py` output
//! (generated here, so the bench needs nothing but the crate).
//!
//! `cargo bench --bench decode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError};
use flowlog_model::{FlowBatch, SourceId};
use flowlog_normalize::{Encoder, OcsfVersion, Target};

const LINES: usize = 20_000;

/// A small deterministic generator (xorshift) so the corpus needs no files.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn corpus(v5: bool) -> Vec<u8> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    if v5 {
        out.push_str("version account-id vpc-id subnet-id instance-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status type tcp-flags pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path\n");
    }
    for i in 0..LINES {
        let eni = format!("eni-{:017x}", r.below(200));
        let local = format!("10.0.{}.{}", r.below(16), 4 + r.below(246));
        let peer = if r.below(10) == 0 {
            format!(
                "2600:1f18:{:x}:{:x}::{:x}",
                r.below(65536),
                r.below(65536),
                r.below(65536)
            )
        } else {
            format!(
                "{}.{}.{}.{}",
                [3, 13, 52, 104, 185][r.below(5) as usize],
                r.below(256),
                r.below(256),
                1 + r.below(254)
            )
        };
        let (src, dst) = if r.below(2) == 0 {
            (peer.clone(), local)
        } else {
            (local, peer.clone())
        };
        let start = 1_763_800_000 + i as u64 / 2000;
        let end = start + 1 + r.below(59);
        let packets = 1 + r.below(2000);
        let bytes = packets * (40 + r.below(1460));
        let (sport, dport) = (
            1024 + r.below(64000),
            [443, 80, 22, 53][r.below(4) as usize],
        );
        let action = if r.below(33) == 0 { "REJECT" } else { "ACCEPT" };
        if v5 {
            out.push_str(&format!(
                "5 123456789012 vpc-0a1b2c3d4e5f60718 subnet-{:017x} i-{:017x} {eni} {src} {dst} {sport} {dport} 6 {packets} {bytes} {start} {end} {action} OK IPv4 19 {src} {dst} us-east-1 use1-az1 - - - S3 egress 8\n",
                r.below(16), r.below(200)
            ));
        } else {
            out.push_str(&format!("2 123456789012 {eni} {src} {dst} {sport} {dport} 6 {packets} {bytes} {start} {end} {action} OK\n"));
        }
    }
    out.into_bytes()
}

struct Discard<'e> {
    encoder: Option<&'e mut dyn Encoder>,
    bytes: usize,
    rows: usize,
}

impl RecordSink for Discard<'_> {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.rows += batch.num_rows();
        if let Some(encoder) = self.encoder.as_mut() {
            self.bytes += encoder.encode(&batch)?.len();
        }
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        Err(format!("unexpected dead letter: {}", letter.reason).into())
    }
}

/// Decodes the whole corpus, encoding each batch when given an encoder; returns the bytes
/// written.
fn decode_all(input: &[u8], encoder: Option<&mut dyn Encoder>) -> usize {
    let mut sink = Discard {
        encoder,
        bytes: 0,
        rows: 0,
    };
    decode_reader(
        input,
        SourceId::new("bench"),
        &DecodeOptions::default(),
        &mut sink,
    )
    .unwrap();
    assert_eq!(sink.rows, LINES);
    sink.bytes
}

fn bench(c: &mut Criterion) {
    for (name, v5) in [("v2", false), ("v5", true)] {
        let input = corpus(v5);
        let mut group = c.benchmark_group(format!("decode_{name}"));
        group.throughput(Throughput::Elements(LINES as u64));
        group.bench_function("to_batches", |b| b.iter(|| decode_all(&input, None)));
        for (target, label) in [
            (Target::Raw, "to_raw_ndjson"),
            (Target::Ecs, "to_ecs_ndjson"),
            (Target::Ocsf(OcsfVersion::V1_1_0), "to_ocsf_ndjson"),
            (Target::Cim, "to_cim_ndjson"),
        ] {
            group.bench_function(label, |b| {
                let mut encoder = target.encoder();
                b.iter(|| decode_all(&input, Some(encoder.as_mut())))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
