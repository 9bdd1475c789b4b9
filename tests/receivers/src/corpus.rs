//! Distinct version 2 flow records for delivery tests: record `i` has its own source
//! address and byte count, and every 200th shares a destination (198.51.100.x) with the
//! others of its class, which tests use to pick poison events.

/// Record `i` (from 0) as one line without its newline.
pub fn v2_line(i: usize) -> String {
    format!(
        "2 123456789012 eni-0a1b2c3d 10.{}.{}.{} 198.51.100.{} {} 443 6 {} {} 1700000000 1700000060 ACCEPT OK",
        i / 62_500 % 250,
        i / 250 % 250,
        i % 250,
        i % 200,
        1024 + i % 60000,
        1 + i % 90,
        100 + i
    )
}

/// Records `from..from + n`, one per line.
pub fn v2_lines(from: usize, n: usize) -> String {
    let mut text = String::with_capacity(n * 120);
    for i in from..from + n {
        text.push_str(&v2_line(i));
        text.push('\n');
    }
    text
}
