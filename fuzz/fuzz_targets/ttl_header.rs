//! `parse_ttl` on arbitrary header bytes.

#![no_main]

use aws_mock_metadata::server::token::{TTL_RANGE, parse_ttl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ttl) = parse_ttl(Some(data)) {
        let secs = ttl.as_secs();
        assert!(TTL_RANGE.contains(&secs), "accepted {secs}");
        // What was accepted is that number in decimal, with leading zeros
        // and surrounding white space at most.
        let text = std::str::from_utf8(data).expect("accepted text is UTF-8").trim();
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "accepted {text:?}");
        assert_eq!(text.trim_start_matches('0'), secs.to_string());
    }
});
