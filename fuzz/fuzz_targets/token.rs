//! `TokenSigner::verify` on arbitrary bytes, and on real tokens with bytes
//! changed. With an even first byte the rest is the token, checked by a
//! signer that never issues one. With an odd first byte the rest edits a
//! freshly issued token as (position, xor) pairs.
//!
//! The even mode must not use the issuing key: libFuzzer records the
//! operands of the `edited == token` comparison and replays the issued
//! token as raw input, which then verifies without being a forgery.

#![no_main]

use std::time::{Duration, SystemTime};

use aws_mock_metadata::server::token::TokenSigner;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x5a; 32];
/// The key of the signer that only verifies.
const VERIFY_ONLY_KEY: [u8; 32] = [0x33; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if mode % 2 == 0 {
        let verifier = TokenSigner::from_key(VERIFY_ONLY_KEY);
        assert!(
            !verifier.verify(rest, now),
            "forged token {:?}",
            String::from_utf8_lossy(rest)
        );
        return;
    }
    let signer = TokenSigner::from_key(KEY);
    let ttl = Duration::from_secs(u64::from(mode) * 84 + 1);
    let token = signer.issue(ttl, now).into_bytes();
    let mut edited = token.clone();
    for pair in rest.chunks_exact(2) {
        let i = usize::from(pair[0]) % edited.len();
        edited[i] ^= pair[1];
    }
    if rest.len() % 2 == 1 {
        // An odd byte left over truncates the token to that length.
        edited.truncate(usize::from(rest[rest.len() - 1]) % (token.len() + 1));
    }
    assert_eq!(
        signer.verify(&edited, now),
        edited == token,
        "edited token {:?}",
        String::from_utf8_lossy(&edited)
    );
});
