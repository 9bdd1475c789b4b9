//! `flowlog transform --threads`: documents encoded on several threads are the documents
//! one thread writes, byte for byte and in the same order, for every target, with dead
//! letters among the records and from gzip'd input.

mod common;

use std::io::Write;
use std::path::Path;

/// `lines` records shaped like the bench generator's, every 997th malformed.
fn corpus(lines: usize, v5: bool) -> String {
    let mut out = String::new();
    if v5 {
        out.push_str("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id flow-direction traffic-path\n");
    }
    for i in 0..lines {
        if i % 997 == 500 {
            out.push_str("2 123456789012 eni-broken this-is-no-address\n");
            continue;
        }
        let peer = match i % 10 {
            0 => format!("2600:1f18:{:x}::{:x}", i % 65536, i % 4099),
            _ => format!("52.{}.{}.{}", i % 256, (i / 256) % 256, 1 + i % 254),
        };
        let local = format!("10.0.{}.{}", i % 16, 4 + i % 246);
        let (src, dst) = if i % 2 == 0 {
            (peer.clone(), local.clone())
        } else {
            (local.clone(), peer.clone())
        };
        let start = 1_763_800_000 + (i / 2000) as u64;
        let action = if i % 7 == 0 { "REJECT" } else { "ACCEPT" };
        let common = format!(
            "{} {} {} {} 6 {} {} {start} {} {action} OK",
            src,
            dst,
            1024 + i % 60000,
            [22, 443, 53, 3306][i % 4],
            1 + i % 2000,
            40 + i * 7 % 1_000_000,
            start + 1 + (i % 59) as u64,
        );
        let eni = format!("eni-{:017x}", i % 200);
        if v5 {
            out.push_str(&format!(
                "5 123456789012 {eni} {common} vpc-0a1b2c3d subnet-{:08x} i-{:017x} {} IPv4 {src} {dst} us-east-1 use1-az{} {} {}\n",
                i % 30,
                i % 200,
                [2, 18, 19][i % 3],
                1 + i % 6,
                ["ingress", "egress"][i % 2],
                1 + i % 8,
            ));
        } else {
            out.push_str(&format!("2 123456789012 {eni} {common}\n"));
        }
    }
    out
}

/// Standard output and the dead letters of `transform --quiet ARGS INPUT`.
fn transform(input: &Path, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut all = vec!["--quiet"];
    all.extend_from_slice(args);
    all.push(input.to_str().unwrap());
    let (out, dead_letters) = common::transform_bytes(&all, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.stdout, dead_letters)
}

#[test]
fn every_target_writes_the_same_bytes_on_one_thread_and_on_several() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("v2.log");
    // Seven batches of the decoder's 8192 rows: enough to interleave several threads.
    std::fs::write(&v2, corpus(50_000, false)).unwrap();
    let v5 = dir.path().join("v5.log.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(corpus(30_000, true).as_bytes()).unwrap();
    std::fs::write(&v5, gz.finish().unwrap()).unwrap();

    for (input, records) in [(&v2, 50_000), (&v5, 30_000)] {
        for target in ["raw", "ecs", "ocsf", "cim"] {
            let (one, dead_one) = transform(input, &["--to", target, "--threads", "1"]);
            let lines = one.iter().filter(|&&b| b == b'\n').count();
            // Every record but the malformed ones (one in 997), which are dead letters.
            let malformed = records / 997 + usize::from(records % 997 > 500);
            assert_eq!(lines, records - malformed, "{target} {}", input.display());
            assert_eq!(dead_one.iter().filter(|&&b| b == b'\n').count(), malformed);
            for threads in ["2", "5", "0"] {
                let (many, dead_many) = transform(input, &["--to", target, "--threads", threads]);
                assert!(
                    many == one,
                    "{target} {} with --threads {threads}: the documents differ",
                    input.display()
                );
                assert_eq!(dead_many, dead_one);
            }
        }
    }
}

#[test]
fn output_to_a_file_on_several_threads_is_complete_when_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("v2.log");
    std::fs::write(&input, corpus(20_000, false)).unwrap();
    let (expected, _) = transform(&input, &["--to", "ecs", "--threads", "1"]);
    let path = dir.path().join("out.ndjson");
    let path_text = path.to_str().unwrap();
    let (stdout, _) = transform(
        &input,
        &["--to", "ecs", "--threads", "3", "--output", path_text],
    );
    assert!(stdout.is_empty());
    assert!(std::fs::read(&path).unwrap() == expected);
}

#[test]
fn standard_input_through_a_pipe_gives_the_same_bytes_on_several_threads() {
    let text = corpus(40_000, false);
    let run = |threads: &str| {
        let (out, dead) = common::transform_bytes(
            &["--quiet", "--to", "ecs", "--threads", threads],
            text.as_bytes(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out.stdout, dead)
    };
    let one = run("1");
    assert_eq!(one.0.iter().filter(|&&b| b == b'\n').count(), 40_000 - 40);
    for threads in ["2", "4"] {
        let many = run(threads);
        assert!(many.0 == one.0, "--threads {threads}: the documents differ");
        assert_eq!(many.1, one.1);
    }
}
