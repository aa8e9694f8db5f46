//! Pusher signatures, I/O-free: channel authorization, user authentication,
//! HTTP API request signing and webhook signing (as the Pusher HTTP API and webhooks define them).
//! Every check compares in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `auth_timestamp` may be from the server's clock.
pub const REQUEST_WINDOW_SECS: i64 = 600;

/// Hex HMAC-SHA256 of `message` with `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings.
pub fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `key:hex` for a private or encrypted channel: signs `socket_id:channel`.
pub fn channel_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, format!("{socket_id}:{channel}").as_bytes())
    )
}

/// `key:hex` for a presence channel: signs `socket_id:channel:channel_data`,
/// with `channel_data` exactly as sent.
pub fn presence_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: &str,
) -> String {
    format!(
        "{key}:{}",
        hmac_hex(
            secret,
            format!("{socket_id}:{channel}:{channel_data}").as_bytes()
        )
    )
}

/// `key:hex` for `pusher:signin`: signs `socket_id::user::user_data`.
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!(
        "{key}:{}",
        hmac_hex(secret, format!("{socket_id}::user::{user_data}").as_bytes())
    )
}

/// Hex MD5 of a request body (`body_md5`).
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string an HTTP API request signs: `METHOD\nPATH\nk=v&…` with keys
/// lower-cased and sorted, `auth_signature` left out, nothing URL-escaped.
pub fn request_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

/// The query parameters that sign a request, `auth_signature` last, as the
/// official SDKs send them: `auth_key`, `auth_timestamp`, `auth_version`,
/// `body_md5` (when there is a body), the caller's own, then the signature.
pub fn sign_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut params = vec![
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".to_owned(), body_md5(body)));
    }
    params.extend(extra.iter().cloned());
    let signature = hmac_hex(
        secret,
        request_string_to_sign(method, path, &params).as_bytes(),
    );
    params.push(("auth_signature".to_owned(), signature));
    params
}

/// Why a signed request was refused (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRejected {
    Missing(&'static str),
    Version(String),
    Timestamp {
        given: String,
        now: i64,
    },
    BodyMd5 {
        given: String,
        actual: String,
    },
    Signature {
        expected_string: String,
        given: String,
    },
}

impl std::fmt::Display for RequestRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestRejected::Missing(p) => write!(f, "Missing parameter: {p}"),
            RequestRejected::Version(v) => {
                write!(f, "Unsupported auth_version: {v:?} (only 1.0 is supported)")
            }
            RequestRejected::Timestamp { given, now } => write!(
                f,
                "Timestamp expired: Given timestamp ({given}) not within {REQUEST_WINDOW_SECS}s of server time ({now})"
            ),
            RequestRejected::BodyMd5 { given, actual } => write!(
                f,
                "Invalid body_md5: the body's MD5 is {actual}, but you sent {given}"
            ),
            RequestRejected::Signature {
                expected_string,
                given,
            } => write!(
                f,
                "Invalid signature: you should have sent HmacSHA256Hex({expected_string:?}, your_secret_key), but you sent {given:?}"
            ),
        }
    }
}

/// Checks a signed HTTP API request against an app's secret: version,
/// timestamp window, `body_md5` on the raw body when present or when there
/// is a body, and the signature. `params` are the decoded query pairs.
pub fn verify_request(
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now: i64,
) -> Result<(), RequestRejected> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let version = get("auth_version").ok_or(RequestRejected::Missing("auth_version"))?;
    if version != "1.0" {
        return Err(RequestRejected::Version(version.to_owned()));
    }
    let timestamp = get("auth_timestamp").ok_or(RequestRejected::Missing("auth_timestamp"))?;
    match timestamp.parse::<i64>() {
        // `abs_diff`: a timestamp near i64::MIN or MAX must not overflow.
        Ok(ts) if ts.abs_diff(now) < REQUEST_WINDOW_SECS.unsigned_abs() => {}
        _ => {
            return Err(RequestRejected::Timestamp {
                given: timestamp.to_owned(),
                now,
            })
        }
    }
    let given_signature =
        get("auth_signature").ok_or(RequestRejected::Missing("auth_signature"))?;
    match get("body_md5") {
        Some(given) => {
            let actual = body_md5(body);
            if !equal(given, &actual) {
                return Err(RequestRejected::BodyMd5 {
                    given: given.to_owned(),
                    actual,
                });
            }
        }
        None if !body.is_empty() => return Err(RequestRejected::Missing("body_md5")),
        None => {}
    }
    let expected_string = request_string_to_sign(method, path, params);
    let expected = hmac_hex(secret, expected_string.as_bytes());
    if !equal(&expected, given_signature) {
        return Err(RequestRejected::Signature {
            expected_string,
            given: given_signature.to_owned(),
        });
    }
    Ok(())
}

/// `X-Pusher-Signature` of a webhook body.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the Pusher HTTP API documentation.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn channel_and_user_vectors() {
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar"),
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
        );
        assert_eq!(
            presence_auth(
                KEY,
                SECRET,
                "1234.1234",
                "presence-foobar",
                r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#
            ),
            format!("{KEY}:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80")
        );
        assert_eq!(
            user_auth(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#),
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba")
        );
    }

    #[test]
    fn request_vectors() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let params = pairs(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]);
        let s = request_string_to_sign("POST", "/apps/3/events", &params);
        assert_eq!(
            hmac_hex(SECRET, s.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let signed = sign_request(KEY, SECRET, "POST", "/apps/3/events", body, 1353088179, &[]);
        assert_eq!(
            signed.last().map(|(_, v)| v.as_str()),
            Some("da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")
        );
        assert_eq!(
            verify_request(
                SECRET,
                "POST",
                "/apps/3/events",
                &signed,
                body,
                1353088179 + 599
            ),
            Ok(())
        );

        let get = pairs(&[
            ("filter_by_prefix", "presence-"),
            ("info", "user_count"),
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
        ]);
        let s = request_string_to_sign("GET", "/apps/3/channels", &get);
        assert_eq!(
            hmac_hex(SECRET, s.as_bytes()),
            "f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba"
        );
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let body = b"{}";
        let signed = sign_request(KEY, SECRET, "POST", "/apps/3/events", body, 1000, &[]);
        let late = verify_request(SECRET, "POST", "/apps/3/events", &signed, body, 1000 + 600);
        assert!(matches!(late, Err(RequestRejected::Timestamp { .. })));
        let tampered = verify_request(SECRET, "POST", "/apps/3/events", &signed, b"{ }", 1000);
        assert!(matches!(tampered, Err(RequestRejected::BodyMd5 { .. })));
        let wrong = verify_request("other", "POST", "/apps/3/events", &signed, body, 1000);
        let err = wrong.unwrap_err().to_string();
        assert!(err.starts_with("Invalid signature"), "{err}");
        for extreme in [i64::MIN, i64::MAX] {
            let far = verify_request(SECRET, "POST", "/apps/3/events", &signed, body, extreme);
            assert!(matches!(far, Err(RequestRejected::Timestamp { .. })));
            let params = pairs(&[
                ("auth_version", "1.0"),
                ("auth_timestamp", &extreme.to_string()),
                ("auth_signature", "x"),
            ]);
            let given = verify_request(SECRET, "GET", "/", &params, b"", 1000);
            assert!(matches!(given, Err(RequestRejected::Timestamp { .. })));
        }
        let unsigned = verify_request(
            SECRET,
            "POST",
            "/apps/3/events",
            &pairs(&[
                ("auth_version", "1.0"),
                ("auth_timestamp", "1000"),
                ("auth_signature", "x"),
            ]),
            body,
            1000,
        );
        assert_eq!(unsigned, Err(RequestRejected::Missing("body_md5")));
    }

    #[test]
    fn webhook_vector() {
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        assert_eq!(
            webhook_signature(SECRET, body),
            "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa"
        );
    }
}
