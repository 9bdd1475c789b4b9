//! The configuration loader: `${NAME}` interpolation over TOML text, then parsing and
//! validation. Any text gets a configuration or an error naming a line inside the text.
#![no_main]

use std::path::Path;

use flowlog_pipeline::config::interpolate;
use flowlog_registry::Config;
use flowlog_pipeline::ConfigError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let lines = text.lines().count().max(1);
    // Values that need escaping, wherever the text asks for a variable.
    let env = |name: &str| match name.len() % 3 {
        0 => None,
        1 => Some("se\"cr\\et'\n".to_string()),
        _ => Some("42".to_string()),
    };
    if let Err((line, _)) = interpolate(text, env) {
        assert!(line <= lines, "error on line {line} of {lines}");
    }
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(_) => {}
        Err(ConfigError::Invalid { line, .. }) => {
            assert!(line <= lines + 1, "error on line {line} of {lines}")
        }
        Err(e) => panic!("parsing text gave {e}"),
    }
});
