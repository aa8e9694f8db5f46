//! `store::redact_url`: no password of a store, Redis or Pusher URL reaches
//! a log line, an error message or the start banner.

use proptest::prelude::*;
use tidings::store::redact_url;

#[test]
fn userinfo_passwords_are_hidden() {
    for (url, shown) in [
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        (
            "postgresql://u:pw@h:5432/db",
            "postgresql://u:***@h:5432/db",
        ),
        (
            "redis://:pw@127.0.0.1:6379/0",
            "redis://:***@127.0.0.1:6379/0",
        ),
        (
            "http://key:secret@127.0.0.1:6001/apps/1",
            "http://key:***@127.0.0.1:6001/apps/1",
        ),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
        (
            "postgres://u:pw@[::1]:5432/db",
            "postgres://u:***@[::1]:5432/db",
        ),
        // Without `://`.
        ("u:pw@h/db", "u:***@h/db"),
        ("postgres:u:pw@h/db", "postgres:***@h/db"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
}

#[test]
fn query_passwords_are_hidden() {
    for (url, shown) in [
        (
            "postgres://h/db?password=pw",
            "postgres://h/db?password=***",
        ),
        (
            "postgres://u@h/db?sslmode=disable&password=pw&application_name=x",
            "postgres://u@h/db?sslmode=disable&password=***&application_name=x",
        ),
        (
            "postgres://u:pw@h/db?PASSWORD=pw2#frag",
            "postgres://u:***@h/db?PASSWORD=***#frag",
        ),
        ("redis://h/0?token=t&db=1", "redis://h/0?token=***&db=1"),
        ("postgres://h/db?password=", "postgres://h/db?password="),
        // Without `://`: libpq's key=value words, quoted or not.
        (
            "host=h user=u password=pw dbname=db",
            "host=h user=u password=*** dbname=db",
        ),
        (
            "host=h password='p w' dbname=db",
            "host=h password=*** dbname=db",
        ),
        ("sqlite:x.db?password=pw", "sqlite:x.db?password=***"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
}

#[test]
fn urls_without_secrets_are_unchanged() {
    for url in [
        "memory:",
        "sqlite://./tidings-data/tidings.db",
        "sqlite:///var/lib/tidings/tidings.db?synchronous=full",
        "sqlite:///home/a@b/tidings.db",
        "postgres://u@h/db",
        "postgres://h/db?sslmode=require",
        "redis://127.0.0.1:6379",
        "",
        "=",
        "@",
    ] {
        assert_eq!(redact_url(url), url, "{url}");
    }
}

proptest! {
    #[test]
    fn never_panics(url in ".{0,80}") {
        let _ = redact_url(&url);
    }

    #[test]
    fn passwords_never_show(
        scheme in prop_oneof![Just("postgres://"), Just("redis://"), Just("http://"), Just("")],
        user in "[a-z]{0,8}",
        password in "[A-Z0-9!$%*+,/:;=@_~-]{6,20}",
        host in "[a-z]{1,8}(:[0-9]{1,5})?",
        query_password in "[A-Z0-9!$%*+,/:@_~-]{6,20}",
    ) {
        // Without a scheme, `USER:` + a password starting `//` is the URL
        // of scheme USER: another text, not this one.
        prop_assume!(!(scheme.is_empty() && password.starts_with("//")));
        let url = format!("{scheme}{user}:{password}@{host}/db?sslmode=disable&password={query_password}");
        let shown = redact_url(&url);
        prop_assert!(!shown.contains(&password), "{} -> {}", url, shown);
        prop_assert!(!shown.contains(&query_password), "{} -> {}", url, shown);
        prop_assert!(shown.contains(&host), "{} -> {}", url, shown);
    }
}

/// Found by `passwords_never_show`: a `://` inside a query password was taken
/// for the scheme's, so the userinfo password before it showed.
#[test]
fn a_scheme_is_only_at_the_start() {
    assert_eq!(
        redact_url(":$$*0$$@a/db?sslmode=disable&password=://0__"),
        ":***@a/db?sslmode=disable&password=***"
    );
    assert_eq!(redact_url("u:a://b@h/db"), "u:***@h/db");
    assert_eq!(redact_url("://=~@/@a/db"), ":***@a/db");
    assert_eq!(
        redact_url("postgres://u:a://b@h/db"),
        "postgres://u:***@h/db"
    );
}
