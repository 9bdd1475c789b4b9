//! Gzip for request bodies (HEC, `_bulk` and OTLP/HTTP all take `Content-Encoding: gzip`).
//!
//! A sink compresses every byte it sends, and for JSON events that is most of what the
//! sink costs: a million ECS events are about 1.1 GB of envelopes. So the whole request
//! is compressed in one call (several times faster than a streaming deflater), at the
//! fastest level, with the output buffer kept per thread. (isal-rs still allocates and
//! zeroes igzip's 282 KB level buffer on each call, about 1% of a run's CPU.)
//!
//! By default the engine is libdeflate, level 1 (C, built by the `cc` crate: a Rust
//! toolchain and a C compiler are all a build needs). With the opt-in `isal` feature
//! (`cargo build --release --features isal`) it is Intel's ISA-L igzip, level 1: about
//! 1.1–1.5 GB/s on flow-log JSON against 0.35–0.55 GB/s for libdeflate, for a ratio of
//! 0.098 against 0.091. ISA-L is built from source and needs nasm and the autotools.

use bytes::Bytes;

/// `data` as one gzip member.
pub fn gzip(data: &[u8]) -> Bytes {
    engine::gzip(data)
}

#[cfg(feature = "isal")]
mod engine {
    use bytes::Bytes;

    thread_local! {
        static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    pub(super) fn gzip(data: &[u8]) -> Bytes {
        OUT.with_borrow_mut(|out| {
            // Stored blocks cost 5 bytes per 64 KiB, and igzip falls back to them when
            // Huffman coding does not pay; this leaves room for that and the gzip header
            // and trailer. Overflow is still handled, by growing the buffer.
            let mut bound = data.len() + data.len() / 64 + 1024;
            loop {
                if out.len() < bound {
                    out.resize(bound, 0);
                }
                match isal::compress_into(
                    data,
                    &mut out[..bound],
                    isal::CompressionLevel::One,
                    isal::Codec::Gzip,
                ) {
                    Ok(n) => return Bytes::copy_from_slice(&out[..n]),
                    Err(isal::error::Error::CompressionError(
                        isal::CompCode::StatelessOverflow,
                    )) => {
                        bound *= 2;
                    }
                    Err(e) => panic!("igzip failed on an in-memory buffer: {e}"),
                }
            }
        })
    }
}

#[cfg(not(feature = "isal"))]
mod engine {
    use bytes::Bytes;

    thread_local! {
        static GZIP: std::cell::RefCell<(libdeflater::Compressor, Vec<u8>)> =
            std::cell::RefCell::new((
                libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(1).expect("level 1 exists"),
                ),
                Vec::new(),
            ));
    }

    pub(super) fn gzip(data: &[u8]) -> Bytes {
        GZIP.with_borrow_mut(|(compressor, out)| {
            let bound = compressor.gzip_compress_bound(data.len());
            if out.len() < bound {
                out.resize(bound, 0);
            }
            let n = compressor
                .gzip_compress(data, &mut out[..bound])
                .expect("the output is as large as the bound");
            Bytes::copy_from_slice(&out[..n])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn round_trips_text_empty_and_incompressible_input() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| {
                format!("{{\"event\":\"2 123456789012 eni-{i:08x} ACCEPT OK\"}}\n").into_bytes()
            })
            .collect();
        // Random bytes do not compress: the output is stored blocks, larger than the input.
        let mut noise = vec![0u8; 300_000];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for byte in &mut noise {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        for data in [&text[..], &[][..], b"x", &noise[..]] {
            let packed = gzip(data);
            assert_eq!(gunzip(&packed), data, "{} bytes", data.len());
        }
        assert!(gzip(&text).len() < text.len() / 5);
    }

    #[test]
    fn each_call_is_one_complete_member() {
        // The thread's buffer is reused: a short body after a long one must not carry
        // any of the long one's bytes.
        let long = vec![b'a'; 100_000];
        let _ = gzip(&long);
        assert_eq!(gunzip(&gzip(b"short")), b"short");
    }
}
