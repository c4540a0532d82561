//! Stateless IMDSv2 session tokens.
//!
//! A token is the expiry time and an HMAC-SHA256 over it, so no token is
//! stored, and tokens stay valid across a restart because the signing key
//! lives in a file (mode 0600) in the state directory. SDKs cache a token
//! for up to six hours, and the Rust SDK re-sends one even after a 401.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// The TTL range real IMDS accepts, in seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<u64> = 1..=21_600;

const KEY_LEN: usize = 32;
const FORMAT_VERSION: u8 = 1;
const TOKEN_LEN: usize = 1 + 8 + 32;
/// Characters of a token as sent: [`TOKEN_LEN`] bytes in unpadded base64.
const TOKEN_TEXT_LEN: usize = (TOKEN_LEN * 4).div_ceil(3);
/// Number of tokens whose signature check is remembered. An SDK keeps one
/// token for hours, so eight slots should cover one machine's clients (an
/// estimate). A token that drops out is only checked again.
const RECENT_TOKENS: usize = 8;

type HmacSha256 = Hmac<Sha256>;

/// The reason a TTL header was rejected, sent back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("missing X-aws-ec2-metadata-token-ttl-seconds header")]
    Missing,
    #[error(
        "X-aws-ec2-metadata-token-ttl-seconds must be a whole number of seconds from 1 to 21600"
    )]
    Invalid,
}

/// Parses the TTL header value of a token request.
pub fn parse_ttl(value: Option<&[u8]>) -> Result<Duration, TtlError> {
    let value = value.ok_or(TtlError::Missing)?;
    let text = std::str::from_utf8(value)
        .map_err(|_| TtlError::Invalid)?
        .trim();
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TtlError::Invalid);
    }
    let secs: u64 = text.parse().map_err(|_| TtlError::Invalid)?;
    if TTL_RANGE.contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(TtlError::Invalid)
    }
}

/// Issues and checks tokens with one key.
pub struct TokenSigner {
    key: [u8; KEY_LEN],
    /// The HMAC state after the key, cloned for each token.
    keyed: HmacSha256,
    recent: RecentTokens,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<redacted>)")
    }
}

impl TokenSigner {
    pub fn from_key(key: [u8; KEY_LEN]) -> Self {
        Self {
            key,
            keyed: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"),
            recent: RecentTokens::default(),
        }
    }

    /// Creates a signer with a fresh random key that is never written to disk.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).expect("the OS random source is available");
        Self::from_key(key)
    }

    /// Reads the key at `path`, or creates it (mode 0600, in a directory of
    /// mode 0700) when it does not exist or is damaged.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        match read_key(path) {
            Ok(Some(key)) => return Ok(Self::from_key(key)),
            Ok(None) => {
                tracing::warn!(path = %path.display(), "token key file is damaged; replacing it, so earlier tokens stop working");
                fs::remove_file(path)?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let signer = Self::ephemeral();
        match write_new_private_file(path, &signer.key) {
            Ok(()) => Ok(signer),
            // Another instance created it first; use theirs.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => match read_key(path)? {
                Some(key) => Ok(Self::from_key(key)),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "token key file is damaged",
                )),
            },
            Err(err) => Err(err),
        }
    }

    fn mac(&self, expiry_secs: u64) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(&[FORMAT_VERSION]);
        mac.update(&expiry_secs.to_be_bytes());
        mac
    }

    /// Issues a token valid from `now` for `ttl`.
    pub fn issue(&self, ttl: Duration, now: SystemTime) -> String {
        // NOTE: the expiry counts from the start of the current second, so a
        // token lives up to a second less than its TTL; SDKs ask for 300 s
        // or more, where that does not matter.
        let expiry = unix_secs(now) + ttl.as_secs();
        let mut raw = Vec::with_capacity(TOKEN_LEN);
        raw.push(FORMAT_VERSION);
        raw.extend_from_slice(&expiry.to_be_bytes());
        raw.extend_from_slice(&self.mac(expiry).finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks that `token` was issued with this key and has not expired.
    ///
    /// SDKs send the same token with every request, so the signature of a
    /// token is checked once and remembered; the expiry is checked each time.
    pub fn verify(&self, token: &[u8], now: SystemTime) -> bool {
        let Ok(text) = <&TokenText>::try_from(token) else {
            return false;
        };
        let expiry = match self.recent.expiry_of(text) {
            Some(expiry) => expiry,
            None => match self.check_signature(text) {
                Some(expiry) => {
                    self.recent.remember(text, expiry);
                    expiry
                }
                None => return false,
            },
        };
        let now = unix_secs(now);
        now < expiry && expiry <= now + TTL_RANGE.end()
    }

    /// Returns the expiry a token carries when its signature is right.
    fn check_signature(&self, text: &TokenText) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() != TOKEN_LEN || raw[0] != FORMAT_VERSION {
            return None;
        }
        let expiry = u64::from_be_bytes(raw[1..9].try_into().expect("slice of 8 bytes"));
        self.mac(expiry).verify_slice(&raw[9..]).ok()?;
        Some(expiry)
    }
}

type TokenText = [u8; TOKEN_TEXT_LEN];

/// A token's text as machine words, for a cheap constant-time comparison.
type TokenWords = [u64; TOKEN_TEXT_LEN.div_ceil(8)];

fn words(text: &TokenText) -> TokenWords {
    let mut words = TokenWords::default();
    for (word, chunk) in words.iter_mut().zip(text.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    words
}

/// The last few tokens whose signature was right, with their expiry. It is
/// read without a lock; a new token replaces the whole list.
#[derive(Default)]
struct RecentTokens(ArcSwap<RecentSlots>);

#[derive(Default, Clone)]
struct RecentSlots {
    slots: [Option<(TokenWords, u64)>; RECENT_TOKENS],
    /// The slot the next new token replaces.
    next: usize,
}

impl RecentTokens {
    /// Looks `text` up, comparing it with every slot in constant time so
    /// that response times reveal nothing about remembered tokens.
    fn expiry_of(&self, text: &TokenText) -> Option<u64> {
        let expected = words(text);
        let recent = self.0.load();
        let mut found = None;
        for (remembered, expiry) in recent.slots.iter().flatten() {
            if bool::from(remembered.ct_eq(&expected)) {
                found = Some(*expiry);
            }
        }
        found
    }

    fn remember(&self, text: &TokenText, expiry: u64) {
        let entry = (words(text), expiry);
        self.0.rcu(|recent| {
            let mut recent = RecentSlots::clone(recent);
            let slot = recent.next;
            recent.slots[slot] = Some(entry);
            recent.next = (slot + 1) % RECENT_TOKENS;
            recent
        });
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Returns the key, `None` when the file has the wrong size.
fn read_key(path: &Path) -> io::Result<Option<[u8; KEY_LEN]>> {
    let mut options = OpenOptions::new();
    options.read(true);
    // A link at the key path could point the chmod below at another file.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = options.open(path).map_err(|err| {
        if err.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link", path.display()),
            )
        } else {
            err
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    restrict_permissions(&file, path)?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes.try_into().ok())
}

#[cfg(unix)]
fn restrict_permissions(file: &fs::File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "token key file was readable by others; setting mode 0600");
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_file: &fs::File, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates `dir` and its parents; a directory this creates gets mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to a new file that only the owner can read.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn ttl_header_bounds() {
        assert_eq!(parse_ttl(None), Err(TtlError::Missing));
        for bad in [
            "0",
            "21601",
            "abc",
            "",
            "-1",
            "1.5",
            " ",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_ttl(Some(bad.as_bytes())),
                Err(TtlError::Invalid),
                "{bad:?}"
            );
        }
        assert_eq!(parse_ttl(Some(b"1")), Ok(Duration::from_secs(1)));
        assert_eq!(parse_ttl(Some(b"21600")), Ok(Duration::from_secs(21600)));
    }

    #[test]
    fn token_is_header_safe_and_valid_for_its_ttl() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let token = signer.issue(Duration::from_secs(60), at(1000));
        assert!(token.bytes().all(|b| b.is_ascii_graphic()));
        assert!(signer.verify(token.as_bytes(), at(1000)));
        assert!(signer.verify(token.as_bytes(), at(1059)));
        assert!(!signer.verify(token.as_bytes(), at(1060)));
    }

    #[test]
    fn tokens_from_another_key_or_tampered_are_rejected() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let other = TokenSigner::from_key([8; KEY_LEN]);
        let token = other.issue(Duration::from_secs(60), at(1000));
        assert!(!signer.verify(token.as_bytes(), at(1000)));
        let mut tampered = signer.issue(Duration::from_secs(60), at(1000)).into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert!(!signer.verify(&tampered, at(1000)));
        assert!(!signer.verify(b"", at(1000)));
        assert!(!signer.verify(b"not a token", at(1000)));
    }

    #[test]
    fn token_text_has_the_expected_length() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let token = signer.issue(Duration::from_secs(60), at(1000));
        assert_eq!(token.len(), TOKEN_TEXT_LEN);
    }

    #[test]
    fn remembered_token_still_expires() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let token = signer.issue(Duration::from_secs(60), at(100_000));
        assert!(signer.verify(token.as_bytes(), at(100_000)));
        assert!(signer.verify(token.as_bytes(), at(100_059)));
        assert!(!signer.verify(token.as_bytes(), at(100_060)));
        // A clock set back by more than the longest TTL rejects it too.
        assert!(!signer.verify(token.as_bytes(), at(100_060 - 21_601)));
    }

    #[test]
    fn tampered_copy_of_a_remembered_token_is_rejected() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let token = signer.issue(Duration::from_secs(60), at(1000));
        assert!(signer.verify(token.as_bytes(), at(1000)));
        for position in [0, 10, TOKEN_TEXT_LEN - 1] {
            let mut tampered = token.clone().into_bytes();
            tampered[position] = if tampered[position] == b'A' {
                b'B'
            } else {
                b'A'
            };
            assert!(!signer.verify(&tampered, at(1000)), "byte {position}");
        }
    }

    #[test]
    fn more_tokens_than_slots_all_verify() {
        let signer = TokenSigner::from_key([7; KEY_LEN]);
        let tokens: Vec<String> = (0..RECENT_TOKENS as u64 * 3)
            .map(|ttl| signer.issue(Duration::from_secs(60 + ttl), at(1000)))
            .collect();
        for _ in 0..2 {
            for token in &tokens {
                assert!(signer.verify(token.as_bytes(), at(1001)));
            }
        }
    }

    #[test]
    fn key_file_survives_restart_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("imds-token-key");
        let first = TokenSigner::load_or_create(&path).unwrap();
        let token = first.issue(Duration::from_secs(60), at(1000));
        let second = TokenSigner::load_or_create(&path).unwrap();
        assert!(second.verify(token.as_bytes(), at(1001)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(path.parent().unwrap())
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_link_at_key_path_is_rejected() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "not a key").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().join("imds-token-key");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(TokenSigner::load_or_create(&path).is_err());
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imds-token-key");
        fs::write(&path, [1u8; KEY_LEN]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        TokenSigner::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
