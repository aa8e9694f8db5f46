//! The `tidings` command line as a new user tries it.

use std::path::Path;
use std::process::{Command, Output};

fn tidings(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .current_dir(dir)
        .env_remove("TIDINGS_STORE")
        .args(args)
        .output()
        .expect("run tidings")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tidings(dir, args);
    assert!(
        out.status.success(),
        "tidings {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).expect("json output")
}

#[test]
fn send_history_search_inbox_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    ok(d, &["send", "--from", "1", "--to", "18", "Hello teacher"]);
    ok(
        d,
        &[
            "send",
            "--from",
            "18",
            "--to",
            "1",
            "Homework is due Friday",
        ],
    );
    let third = ok(
        d,
        &[
            "send",
            "--from",
            "1",
            "--to",
            "18",
            "--client-id",
            "k",
            "Thanks!",
        ],
    );
    assert!(third.contains("#3 in 1-18"), "{third}");
    let again = ok(
        d,
        &[
            "send",
            "--from",
            "1",
            "--to",
            "18",
            "--client-id",
            "k",
            "Thanks!",
        ],
    );
    assert!(again.contains("nothing stored"), "{again}");
    assert!(d.join("tidings-data/tidings.db").exists(), "default store");

    let history = json(d, &["history", "1-18"]);
    let seqs: Vec<i64> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [3, 2, 1], "newest first, nothing stored twice");
    let text = ok(d, &["history", "1-18", "--limit", "2"]);
    assert!(
        text.contains("1: Thanks!") && text.contains("--before 2"),
        "{text}"
    );

    let found = json(d, &["search", "--user", "1", "homework"]);
    assert_eq!(found[0]["body"], "Homework is due Friday");
    let none = json(d, &["search", "--user", "7", "homework"]);
    assert_eq!(none.as_array().map(Vec::len), Some(0));

    let inbox = json(d, &["inbox", "--user", "18"]);
    assert_eq!(inbox[0]["conversation_id"], "1-18");
    assert_eq!(inbox[0]["unread_count"], 2);
    ok(d, &["read", "--user", "18", "1-18", "--up-to", "3"]);
    let inbox = ok(d, &["inbox", "--user", "18"]);
    assert!(inbox.contains("0 unread"), "{inbox}");

    let after = json(d, &["after", "1-18", "1"]);
    assert_eq!(after.as_array().map(Vec::len), Some(2));
    let outbox = ok(d, &["outbox"]);
    assert!(outbox.contains("nothing is waiting"), "{outbox}");
}

#[test]
fn mistakes_get_a_readable_error_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    for (args, needle) in [
        (&["send", "--from", "1", "--to", "18", " "][..], "empty"),
        (&["history", "18-1"][..], "canonical"),
        (
            &["send", "--from", "1 x", "--to", "18", "hi"][..],
            "user id",
        ),
        (&["edit", "--user", "1", "99", "text"][..], "does not exist"),
        (
            &["--store", "mysql://x", "inbox", "--user", "1"][..],
            "unknown store URL",
        ),
    ] {
        let out = tidings(d, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("error") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "errors go to stderr only");
    }
}
