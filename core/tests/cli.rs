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

/// `tidings serve ARGS` in `dir` with `envs`, run until it prints its
/// address (then stopped) or exits: whether it served, and its stderr.
fn serve(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    use std::io::{BufRead, BufReader};
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .current_dir(dir)
        .env_remove("TIDINGS_STORE")
        .env_remove("TIDINGS_CONFIG")
        .env_remove("TIDINGS_APP_SECRET")
        .env_remove("TIDINGS_DEMO_PUBLIC")
        .env_remove("TIDINGS_ALLOWED_ORIGINS")
        .env_remove("TIDINGS_LISTEN")
        .arg("serve")
        .args(["--data-dir", "data"])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run tidings serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut text = String::new();
    let mut served = false;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                // The banner ends with the pusher-js line.
                if line.starts_with("  pusher-js") {
                    served = true;
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // What it printed before it was stopped.
    while let Ok(line) = rx.try_recv() {
        text.push_str(&line);
        text.push('\n');
    }
    (served, text)
}

#[test]
fn demo_mode_warns_and_stays_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let memory = ["--store", "memory:"];
    let (served, err) = serve(
        d,
        &[&memory[..], &["--demo", "--listen", "127.0.0.1:0"]].concat(),
        &[],
    );
    assert!(served, "{err}");
    assert!(
        err.contains("warning: demo mode") && err.contains("act as any user"),
        "{err}"
    );
    // Not on an address other people reach, unless asked for.
    let (served, err) = serve(
        d,
        &[&memory[..], &["--demo", "--listen", "0.0.0.0:0"]].concat(),
        &[],
    );
    assert!(!served, "{err}");
    assert!(
        err.contains("error") && err.contains("--demo-public") && err.contains("0.0.0.0:0"),
        "{err}"
    );
    let (served, err) = serve(
        d,
        &[&memory[..], &["--demo", "--listen", "0.0.0.0:0"]].concat(),
        &[("TIDINGS_DEMO_PUBLIC", "1")],
    );
    assert!(served, "{err}");
    assert!(err.contains("warning: demo mode"), "{err}");
    assert!(err.contains("other people can reach it"), "{err}");
    // Without --demo no warning, and no origin but the server's own.
    let (served, err) = serve(
        d,
        &[&memory[..], &["--listen", "127.0.0.1:0"]].concat(),
        &[],
    );
    assert!(served, "{err}");
    assert!(!err.contains("demo mode"), "{err}");
    assert!(err.contains("origins   this server's own only"), "{err}");
    // The wildcard is refused in demo mode.
    let (served, err) = serve(
        d,
        &[&memory[..], &["--demo", "--listen", "127.0.0.1:0"]].concat(),
        &[("TIDINGS_ALLOWED_ORIGINS", "https://app.example,*")],
    );
    assert!(!served && err.contains("refused in demo mode"), "{err}");
    let (served, err) = serve(
        d,
        &[
            &memory[..],
            &[
                "--listen",
                "127.0.0.1:0",
                "--allowed-origins",
                "https://App.example,http://localhost:3000",
            ],
        ]
        .concat(),
        &[],
    );
    assert!(served, "{err}");
    assert!(
        err.contains("origins   https://app.example, http://localhost:3000"),
        "{err}"
    );
}

#[test]
fn short_app_secrets_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let args = ["--store", "memory:", "--listen", "127.0.0.1:0"];
    let (served, err) = serve(d, &args, &[("TIDINGS_APP_SECRET", "only-sixteen-b16")]);
    assert!(!served, "{err}");
    assert!(
        err.contains("secret of app 1") && err.contains("TIDINGS_APP_SECRET") && err.contains("32"),
        "{err}"
    );
    std::fs::write(
        d.join("tidings.toml"),
        "[[app]]\nid = \"7\"\nkey = \"seven\"\nsecret = \"seven-secret\"\n",
    )
    .expect("write");
    let (served, err) = serve(
        d,
        &[&args[..], &["--config", "tidings.toml"]].concat(),
        &[("TIDINGS_APP_SECRET", "a-secret-of-thirty-two-bytes-0123")],
    );
    assert!(!served, "{err}");
    assert!(
        err.contains("secret of app 7") && err.contains("tidings.toml"),
        "{err}"
    );
    // The generated one is long enough, and kept 0600.
    let (served, err) = serve(d, &args, &[]);
    assert!(served, "{err}");
    let secret = std::fs::read_to_string(d.join("data/app-secret")).expect("secret");
    assert!(secret.trim().len() >= 32, "{secret}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("data/app-secret")), 0o600);
        assert_eq!(mode(&d.join("data")), 0o700);
    }
}

#[test]
fn passwords_never_reach_the_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // A Redis that does not answer: the node serves alone after a wait,
    // printing its banner with the cluster URL.
    let (served, err) = serve(
        d,
        &[
            "--store",
            "memory:",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            "redis://:hunter2-redis@127.0.0.1:1/0",
        ],
        &[("RUST_LOG", "debug")],
    );
    assert!(served, "{err}");
    assert!(err.contains("redis://:***@127.0.0.1:1/0"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // A PostgreSQL that does not answer: the error names the URL without
    // either form of password.
    let (served, err) = serve(
        d,
        &[
            "--store",
            "postgres://u:hunter2-user@127.0.0.1:1/db?password=hunter2-query",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "debug")],
    );
    assert!(!served, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
