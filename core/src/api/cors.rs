//! CORS of the chat API and the auth endpoints: which pages of other
//! origins a browser lets call them.
//!
//! By default none: the chat page tidings serves is on the server's own
//! origin and needs no CORS, and a page elsewhere gets no
//! `Access-Control-Allow-Origin`, so the browser keeps it from reading any
//! answer; its preflights are refused with 403. Host apps whose browser
//! code calls tidings from another origin list that origin
//! (`--allowed-origins https://app.example`, `allowed_origins` of an
//! `[[app]]`); `*` allows every origin (credentials are tokens in headers,
//! never cookies), but never in demo mode, where a page of any site could
//! then act as any user.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::ApiError;
use crate::error::{Error, Result};

/// The origins allowed to call, normalized (`scheme://host[:port]`, lower
/// case, without the scheme's default port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// Parses origins such as `https://app.example` or
    /// `http://localhost:3000`, or `*` for every origin; an entry with a
    /// path, query, user or no host is an error naming it. Empty entries
    /// are skipped (`--allowed-origins ""` allows none).
    pub fn parse<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Result<AllowedOrigins> {
        let mut allowed = AllowedOrigins::default();
        for entry in list {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                allowed.any = true;
                continue;
            }
            let origin = normalize(entry).map_err(|why| {
                Error::Config(format!(
                    "allowed origin {entry:?} {why}; write it as scheme://host[:port], \
                     such as https://app.example or http://localhost:3000"
                ))
            })?;
            if !allowed.origins.contains(&origin) {
                allowed.origins.push(origin);
            }
        }
        Ok(allowed)
    }

    /// Whether every origin is allowed (`*`).
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Whether none is (only the server's own origin may call).
    pub fn is_empty(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The allowed origins, normalized, without `*`.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Whether a page of `origin` (an `Origin` header) may call.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        normalize(origin).is_ok_and(|origin| self.origins.contains(&origin))
    }
}

/// `scheme://host[:port]` in lower case, without a trailing `/` or the
/// scheme's default port; an error says what is wrong.
fn normalize(origin: &str) -> std::result::Result<String, &'static str> {
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, authority) = origin.split_once("://").ok_or("has no scheme://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("has no valid scheme");
    }
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains(['/', '?', '#', '@', '*']) || authority.contains(char::is_whitespace) {
        return Err("is not an origin (it has a path, query, user or wildcard)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        // [IPv6]:port
        Some(rest) => {
            let (inside, after) = rest.split_once(']').ok_or("has an unclosed [")?;
            if inside.is_empty() {
                return Err("has no host");
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("has text after ]")?),
            };
            (&authority[..inside.len() + 2], port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return Err("has no valid host");
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(port) => {
            let number: u16 = port.parse().map_err(|_| "has a port that is not 1-65535")?;
            if number == 0 {
                return Err("has a port that is not 1-65535");
            }
            let default = matches!((scheme.as_str(), number), ("http", 80) | ("https", 443));
            (!default).then_some(number)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The middleware: answers preflights (204 with the allowed methods and
/// headers for an allowed origin, 403 otherwise) and adds
/// `Access-Control-Allow-Origin` to every answer to an allowed origin.
pub async fn layer(
    State(allowed): State<Arc<AllowedOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed_origin = origin.clone().filter(|o| allowed.allows(o));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight && allowed_origin.is_some() {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, x-tidings-user"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    } else if preflight {
        let shown = origin.as_deref().map_or_else(
            || "a request without Origin".to_owned(),
            |o| format!("origin {:?}", crate::domain::ids::prefix(o, 100)),
        );
        ApiError::from(Error::Forbidden(format!(
            "{shown} may not call this server from a browser; the server's operator allows \
             origins with --allowed-origins (TIDINGS_ALLOWED_ORIGINS) or allowed_origins"
        )))
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    match allowed_origin {
        Some(_) if allowed.is_any() => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Some(origin) => {
            if let Ok(value) = HeaderValue::from_str(&origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
        }
        None => {}
    }
    if !allowed.is_any() {
        // The answer depends on the Origin: caches must keep them apart.
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        for (given, normal) in [
            ("https://App.Example", "https://app.example"),
            ("https://app.example/", "https://app.example"),
            ("https://app.example:443", "https://app.example"),
            ("http://app.example:80", "http://app.example"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("https://app.example:8443", "https://app.example:8443"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("capacitor://localhost", "capacitor://localhost"),
        ] {
            assert_eq!(normalize(given).as_deref(), Ok(normal), "{given}");
        }
        for bad in [
            "app.example",
            "https://",
            "https://app.example/path",
            "https://app.example?x",
            "https://u@app.example",
            "https://*.example",
            "https://app.example:0",
            "https://app.example:99999",
            "https://app.example:x",
            "http://[::1",
            "http://::1",
            "1https://x",
            "null",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let none = AllowedOrigins::parse(Vec::<String>::new()).unwrap();
        assert!(none.is_empty() && !none.allows("https://app.example"));
        let some =
            AllowedOrigins::parse(["https://app.example", " http://localhost:3000 ", ""]).unwrap();
        assert!(some.allows("https://app.example"));
        assert!(some.allows("https://APP.example:443"));
        assert!(some.allows("http://localhost:3000"));
        assert!(!some.allows("http://localhost:3001"));
        assert!(!some.allows("https://evil.example"));
        assert!(!some.allows("https://app.example.evil.example"));
        assert!(!some.allows("null"));
        assert!(!some.is_any());
        let any = AllowedOrigins::parse(["*"]).unwrap();
        assert!(any.is_any() && any.allows("https://evil.example"));
        let err = AllowedOrigins::parse(["https://app.example/chat"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://app.example/chat"), "{err}");
    }
}
