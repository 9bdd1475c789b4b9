//! Recognising an envelope from its first bytes, never from a file name.

/// What a byte stream is wrapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// gzip (one or more members): decompress, then look again.
    Gzip,
    /// An Apache Parquet file (`PAR1` magic).
    Parquet,
    /// JSON: CloudWatch Logs subscription payloads, Firehose HTTP endpoint requests, Lambda
    /// `awslogs` events or `{"message": ...}` lines.
    Json,
    /// Flow-log text lines, with or without header lines.
    Text,
    /// Nothing but white space.
    Empty,
}

/// How many leading bytes [`sniff`] wants to see (fewer is fine at the end of input).
pub const SNIFF_LEN: usize = 64;

/// Classifies a stream by its first bytes.
pub fn sniff(prefix: &[u8]) -> Envelope {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        return Envelope::Gzip;
    }
    if prefix.starts_with(b"PAR1") {
        return Envelope::Parquet;
    }
    let body = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    match body.iter().find(|c| !c.is_ascii_whitespace()) {
        Some(b'{') => Envelope::Json,
        Some(_) => Envelope::Text,
        // All white space so far: text if the stream goes on, nothing if it ends here.
        None if prefix.len() >= SNIFF_LEN => Envelope::Text,
        None => Envelope::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_envelope() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Envelope::Gzip);
        assert_eq!(sniff(b"PAR1\x15\x04"), Envelope::Parquet);
        assert_eq!(sniff(b"  \n{\"messageType\""), Envelope::Json);
        assert_eq!(sniff(b"\xEF\xBB\xBF{\"message\":\"2 1\"}"), Envelope::Json);
        assert_eq!(sniff(b"2 123456789010 eni-1"), Envelope::Text);
        assert_eq!(sniff(b"version account-id"), Envelope::Text);
        assert_eq!(sniff(b" \n\r\n"), Envelope::Empty);
        assert_eq!(sniff(b""), Envelope::Empty);
    }
}
