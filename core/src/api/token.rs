//! User tokens: what a browser or mobile client shows the chat API and the
//! channel-auth endpoints to say which user it is.
//!
//! The host app mints them with the app secret (`tidings token --user 17`,
//! or [`mint`] in Rust, or the few lines below in any language):
//!
//! ```text
//! token   = "v1." payload "." signature
//! payload = base64url, no padding, of the JSON {"user":"17","exp":1764131111}
//! signature = lower-case hex HMAC-SHA256(app secret, "v1." payload)
//! ```
//!
//! `user` is a tidings user id (1-128 characters of `[A-Za-z0-9_\-=@,.;]`);
//! `exp` is the expiry in Unix seconds. The signed string holds neither `:`
//! nor a newline, so no Pusher signature (which all sign strings with `:`)
//! can pass for a token, and no token for a Pusher signature. Verification
//! checks the signature in constant time before it reads the payload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::signature::{equal, hmac_hex};

/// The token format's version prefix.
pub const VERSION: &str = "v1";
/// Longest token accepted (a 128-character user id gives about 250).
pub const MAX_TOKEN_LEN: usize = 1024;
/// The lifetime `tidings token` gives when none is asked for: one day.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest lifetime [`mint`] accepts: one year.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub user: UserId,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Why a token was refused. Answered with 401 by the HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signature does not match this server's app secret")]
    BadSignature,
    #[error("the token expired at {exp} (Unix seconds); it is now {now}: mint a new one")]
    Expired { exp: i64, now: i64 },
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A token for `user`, valid for `ttl` from now (1 s to [`MAX_TTL`]).
pub fn mint(secret: &str, user: &str, ttl: Duration) -> Result<String> {
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(Error::InvalidArgument(format!(
            "a token lifetime must be 1 s to {} s, got {} s",
            MAX_TTL.as_secs(),
            ttl.as_secs()
        )));
    }
    // MAX_TTL fits in an i64.
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    mint_until(secret, user, unix_now().saturating_add(ttl))
}

/// A token for `user` that expires at `exp` (Unix seconds).
pub fn mint_until(secret: &str, user: &str, exp: i64) -> Result<String> {
    let claims = Claims {
        user: UserId::new(user)?,
        exp,
    };
    let json = serde_json::to_vec(&claims)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode token claims: {e}")))?;
    let signed = format!("{VERSION}.{}", base64url_encode(&json));
    let signature = hmac_hex(secret, signed.as_bytes());
    Ok(format!("{signed}.{signature}"))
}

/// Checks a token's signature and expiry at `now` (Unix seconds).
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Claims, TokenError> {
    let malformed = |why: &str| TokenError::Malformed(why.to_owned());
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "it is {} characters long; at most {MAX_TOKEN_LEN} are allowed",
            token.len()
        )));
    }
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("expected v1.<payload>.<signature>"))?;
    let (version, payload) = signed
        .split_once('.')
        .ok_or_else(|| malformed("expected v1.<payload>.<signature>"))?;
    if version != VERSION {
        return Err(TokenError::Malformed(format!(
            "unknown version {version:?}; this server reads {VERSION}"
        )));
    }
    if !equal(&hmac_hex(secret, signed.as_bytes()), signature) {
        return Err(TokenError::BadSignature);
    }
    let json =
        base64url_decode(payload).ok_or_else(|| malformed("the payload is not base64url"))?;
    let claims: Claims = serde_json::from_slice(&json)
        .map_err(|e| TokenError::Malformed(format!("the payload is not valid claims: {e}")))?;
    if now >= claims.exp {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    Ok(claims)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 4648 §5).
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url without padding; `None` for anything else (including
/// non-canonical trailing bits).
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
    }
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let len = chunk.len() - 1;
        // Bits below the last whole byte must be zero.
        if len < 3 && bytes[len..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..len]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn base64url_round_trips() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let encoded = base64url_encode(text.as_bytes());
            assert_eq!(base64url_decode(&encoded).unwrap(), text.as_bytes());
        }
        assert_eq!(base64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_encode(b"fo"), "Zm8");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert!(base64url_decode("Zm8=").is_none());
        assert!(base64url_decode("Zm9").is_none(), "non-zero trailing bits");
        assert!(base64url_decode("Z").is_none());
        assert!(base64url_decode("Zm+v").is_none());
    }

    proptest::proptest! {
        #[test]
        fn base64url_round_trips_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let encoded = base64url_encode(&bytes);
            proptest::prop_assert_eq!(base64url_decode(&encoded), Some(bytes));
        }

        #[test]
        fn base64url_decode_never_panics(text in proptest::prop_oneof![".{0,64}", "[A-Za-z0-9_=+/-]{0,64}"]) {
            if let Some(bytes) = base64url_decode(&text) {
                proptest::prop_assert_eq!(base64url_encode(&bytes), text);
            }
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let token = mint_until(SECRET, "17", 2_000).unwrap();
        assert!(token.starts_with("v1."), "{token}");
        let claims = verify(SECRET, &token, 1_999).unwrap();
        assert_eq!(claims.user.as_str(), "17");
        assert_eq!(claims.exp, 2_000);
        assert_eq!(
            verify(SECRET, &token, 2_000),
            Err(TokenError::Expired {
                exp: 2_000,
                now: 2_000
            })
        );
        let message = verify(SECRET, &token, 2_001).unwrap_err().to_string();
        assert!(message.contains("expired"), "{message}");
    }

    #[test]
    fn the_format_is_as_documented() {
        let token = mint_until(SECRET, "17", 1_764_131_111).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let json = base64url_decode(parts[1]).unwrap();
        assert_eq!(json, br#"{"user":"17","exp":1764131111}"#);
        assert_eq!(
            parts[2],
            hmac_hex(SECRET, format!("v1.{}", parts[1]).as_bytes())
        );
        // User ids with dots still split right: base64url has no dots.
        let dotted = mint_until(SECRET, "a.b", 10).unwrap();
        assert_eq!(verify(SECRET, &dotted, 0).unwrap().user.as_str(), "a.b");
    }

    #[test]
    fn mint_uses_the_clock_and_bounds_the_lifetime() {
        let token = mint(SECRET, "17", Duration::from_secs(60)).unwrap();
        let claims = verify(SECRET, &token, unix_now()).unwrap();
        assert!((claims.exp - unix_now() - 60).abs() <= 2);
        assert!(mint(SECRET, "17", Duration::ZERO).is_err());
        assert!(mint(SECRET, "17", MAX_TTL + Duration::from_secs(1)).is_err());
        assert!(mint(SECRET, "no spaces", Duration::from_secs(60)).is_err());
    }

    #[test]
    fn forged_and_mangled_tokens_are_refused() {
        let token = mint_until(SECRET, "17", 2_000).unwrap();
        assert_eq!(
            verify("another-secret", &token, 0),
            Err(TokenError::BadSignature)
        );
        // Another user's payload under the first signature.
        let other = mint_until(SECRET, "18", 2_000).unwrap();
        let (_, sig) = token.rsplit_once('.').unwrap();
        let (other_signed, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            verify(SECRET, &format!("{other_signed}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "v1", "v1.abc", "v2.abc.def", "garbage"] {
            assert!(
                matches!(verify(SECRET, bad, 0), Err(TokenError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = "v1.".to_owned() + &"a".repeat(MAX_TOKEN_LEN);
        assert!(matches!(
            verify(SECRET, &long, 0),
            Err(TokenError::Malformed(_))
        ));
        // A correctly signed payload that is not claims.
        let signed = format!("v1.{}", base64url_encode(br#"{"user":"17"}"#));
        let forged = format!("{signed}.{}", hmac_hex(SECRET, signed.as_bytes()));
        let err = verify(SECRET, &forged, 0).unwrap_err().to_string();
        assert!(err.contains("exp"), "{err}");
    }
}
