//! `parse_code` with JSON and form bodies. The first byte selects the
//! Content-Type: 0 sends none, 1 to 6 send one of the types clients use,
//! and 7 sends the bytes up to the first newline. The rest is the body.

#![no_main]

use aws_mock_metadata::server::manage::parse_code;
use libfuzzer_sys::fuzz_target;
use warp::http::{HeaderMap, HeaderValue, header};

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.api+json",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "text/plain",
];

/// Every message `parse_code` returns. None of them repeats the input.
const MESSAGES: [&str; 5] = [
    "body is not a JSON object; send {\"token\": \"123456\"}",
    "token must be a JSON string of 6 digits, such as \"012345\"",
    "body is not form data; send token=123456",
    "missing MFA code; send token=123456 or {\"token\": \"123456\"}",
    "the MFA code must be exactly 6 digits",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let body = match selector % 8 {
        0 => rest,
        7 => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            if let Ok(value) = HeaderValue::from_bytes(&rest[..end]) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            rest.get(end + 1..).unwrap_or(&[])
        }
        n => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPES[usize::from(n) - 1]),
            );
            rest
        }
    };
    match parse_code(&headers, body) {
        Ok(code) => {
            let digits = code.expose();
            assert!(
                digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()),
                "accepted code {digits:?}"
            );
            assert!(!format!("{code:?}").contains(digits));
        }
        Err(message) => assert!(MESSAGES.contains(&message.as_str()), "message {message:?}"),
    }
});
