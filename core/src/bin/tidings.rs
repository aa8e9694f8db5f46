//! The `tidings` command line: the chat model from a terminal, and (with
//! the broker) `tidings serve`.

use std::process::ExitCode;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tidings::config::DEFAULT_STORE_URL;
use tidings::{Engine, EngineConfig, Message, PageRequest, SendRequest, TransportConfig};

#[derive(Parser)]
#[command(
    name = "tidings",
    version,
    about = "Embeddable real-time messaging engine"
)]
struct Cli {
    /// Where messages are stored: sqlite://PATH or postgres://USER@HOST/DB
    /// [default: sqlite://./tidings-data/tidings.db, or in --data-dir for serve]
    #[arg(long, global = true, env = "TIDINGS_STORE")]
    store: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// TOML file: listen, data_dir, store, [[app]] and [[transport]] entries.
    #[arg(long, global = true, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: Pusher-compatible broker, HTTP APIs and chat page.
    Serve(ServeArgs),
    /// Print a user token for the chat API and the chat page, signed with
    /// the default app's secret (as `serve` finds it).
    Token(TokenArgs),
    /// Send a message from one user to another.
    Send(SendArgs),
    /// Show a conversation's messages, newest first.
    History {
        /// Conversation id, e.g. 1-18.
        conversation: String,
        /// Only messages with a seq below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show the messages after a seq, oldest first (catch-up).
    After {
        conversation: String,
        seq: i64,
        #[arg(long, default_value_t = 100)]
        max: u32,
    },
    /// Mark a conversation read by a user up to a seq.
    Read {
        #[arg(long)]
        user: String,
        conversation: String,
        #[arg(long)]
        up_to: i64,
    },
    /// Show a user's conversations with unread counts.
    Inbox {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Search the user's conversations for messages with all the words.
    Search {
        #[arg(long)]
        user: String,
        #[arg(required = true)]
        words: Vec<String>,
        #[arg(long, default_value_t = 50)]
        max: u32,
    },
    /// Replace the text of a message you sent.
    Edit {
        #[arg(long)]
        user: String,
        id: i64,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Delete a message you sent (it stays as an empty tombstone).
    Delete {
        #[arg(long)]
        user: String,
        id: i64,
    },
    /// React to a message (one reaction per user; a new one replaces it).
    React {
        #[arg(long)]
        user: String,
        id: i64,
        emoji: String,
    },
    /// Take your reaction back.
    Unreact {
        #[arg(long)]
        user: String,
        id: i64,
    },
    /// List events still waiting for delivery, with the transports that
    /// still owe them.
    Outbox {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Stop waiting for a transport that is gone for good (its key as
        /// listed): its events are no longer kept for it.
        #[arg(long, value_name = "TRANSPORT")]
        forget: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TIDINGS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite file and the generated app secret.
    #[arg(long, env = "TIDINGS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Webhook target of the default app.
    #[arg(long, env = "TIDINGS_WEBHOOK")]
    webhook: Vec<String>,
    /// Demo mode: the chat page signs in by typing a user id, no token, so
    /// anyone who reaches the server can act as any user. Only on a
    /// loopback --listen address unless --demo-public is given too.
    #[arg(long)]
    demo: bool,
    /// With --demo: allow a --listen address other people can reach.
    #[arg(long, env = "TIDINGS_DEMO_PUBLIC", value_parser = clap::builder::FalseyValueParser::new())]
    demo_public: bool,
    /// Browser origins whose pages may call the chat API and the auth
    /// endpoints (CORS), comma-separated: https://app.example,http://localhost:3000,
    /// or * for any (not with --demo) [default: none, same origin only].
    #[arg(
        long,
        env = "TIDINGS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Load a plugin (repeatable; hooks run in this order):
    /// `PATH` or `PATH={"json":"config"}` or `PATH=@config.json`.
    #[arg(long = "plugin", value_name = "PATH[=CONFIG]", value_parser = plugin_arg)]
    plugin: Vec<tidings::PluginConfig>,
    #[arg(long, env = "TIDINGS_APP_ID", hide_env_values = true)]
    app_id: Option<String>,
    #[arg(long, env = "TIDINGS_APP_KEY", hide_env_values = true)]
    app_key: Option<String>,
    /// Join a cluster of nodes sharing fan-out and presence through Redis:
    /// redis://[:PASSWORD@]HOST[:PORT][/DB] (use a shared --store postgres://…).
    #[arg(long, env = "TIDINGS_CLUSTER", value_name = "REDIS_URL")]
    cluster: Option<String>,
    /// With --cluster: a node silent this long is taken for dead; its
    /// members leave within this plus --cluster-sweep.
    #[arg(long, env = "TIDINGS_CLUSTER_NODE_TTL", default_value = "10s", value_parser = duration_arg)]
    cluster_node_ttl: std::time::Duration,
    /// With --cluster: how often every node looks for dead nodes.
    #[arg(long, env = "TIDINGS_CLUSTER_SWEEP", default_value = "5s", value_parser = duration_arg)]
    cluster_sweep: std::time::Duration,
    /// With --cluster: how long a node holds the outbox rows it claimed; a
    /// dead node's pending deliveries go to another node after this.
    #[arg(long, env = "TIDINGS_OUTBOX_LEASE", default_value = "30s", value_parser = duration_arg)]
    outbox_lease: std::time::Duration,
    /// After SIGTERM or Ctrl-C, how long open requests may take before they
    /// are dropped; delivering what is pending (5 s at most) follows.
    #[arg(long, env = "TIDINGS_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration_arg)]
    shutdown_timeout: std::time::Duration,
    /// How long a client has to send a request's headers before its
    /// connection is closed (slow clients cannot hold connections).
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", default_value = "30s", value_parser = duration_arg)]
    header_timeout: std::time::Duration,
}

/// A duration such as `10s`, `1500ms` or `2m`.
fn duration_arg(arg: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(arg).map_err(|e| format!("{arg:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{arg:?}: must be more than zero"));
    }
    if d > std::time::Duration::from_secs(24 * 3600) {
        return Err(format!("{arg:?}: must be at most 24h"));
    }
    Ok(d)
}

#[derive(Args)]
struct TokenArgs {
    /// The user the token is for.
    #[arg(long)]
    user: String,
    /// Lifetime in seconds [default: one day].
    #[arg(long)]
    ttl: Option<u64>,
    /// Directory holding the generated app secret (as for serve), used when
    /// TIDINGS_APP_SECRET is not set.
    #[arg(long, env = "TIDINGS_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct SendArgs {
    #[arg(long)]
    from: String,
    /// The recipient's user id.
    #[arg(
        long,
        required_unless_present = "conversation",
        conflicts_with = "conversation"
    )]
    to: Option<String>,
    /// Or a conversation id such as 1-18.
    #[arg(long)]
    conversation: Option<String>,
    /// Idempotency key: sending again with it stores nothing new.
    #[arg(long = "client-id")]
    client_id: Option<String>,
    /// The message text (words are joined with spaces).
    #[arg(required = true)]
    text: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> tidings::Result<()> {
    let mut file = match &cli.config {
        Some(path) => tidings::api::apps::FileConfig::load(path)?,
        None => tidings::api::apps::FileConfig::default(),
    };
    // The URL form the official SDKs accept, as an extra transport.
    if let Ok(url) = std::env::var("TIDINGS_PUSHER_URL") {
        if !url.trim().is_empty() {
            file.transports.push(TransportConfig::pusher(url.trim()));
        }
    }
    if let Command::Serve(args) = cli.command {
        return serve(cli.store, file, args).await;
    }
    if let Command::Token(args) = cli.command {
        return token(args, cli.json);
    }
    let is_send = matches!(cli.command, Command::Send(_));
    let store = cli
        .store
        .or(file.store)
        .unwrap_or_else(|| DEFAULT_STORE_URL.to_owned());
    // Only commands that write deliver: a read never takes (and so never
    // acknowledges) an event that a server's transport still owes.
    let writes = matches!(
        cli.command,
        Command::Send(_)
            | Command::Read { .. }
            | Command::Edit { .. }
            | Command::Delete { .. }
            | Command::React { .. }
            | Command::Unreact { .. }
    );
    let engine = Engine::open(EngineConfig {
        store,
        transports: if writes { file.transports } else { Vec::new() },
        ..EngineConfig::default()
    })
    .await?;
    let result = command(&engine, cli.command, cli.json).await;
    engine.shutdown().await;
    if result.is_ok() && is_send {
        report_pending(&engine).await;
    }
    result
}

/// After a one-shot send: say on stderr when delivery is still pending (the
/// message is stored; the next start with this store delivers it).
async fn report_pending(engine: &Engine) {
    let Ok(rows) = engine.pending_deliveries(1000).await else {
        return;
    };
    let waiting: Vec<_> = rows.iter().filter(|r| !r.refused).collect();
    let refused: Vec<_> = rows.iter().filter(|r| r.refused).collect();
    if let Some(last) = waiting.last() {
        eprintln!(
            "delivery pending: the message is stored; {} event(s) wait in the outbox{} and go out \
             on the next start with this store (tidings outbox lists them)",
            waiting.len(),
            last.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    if !refused.is_empty() {
        eprintln!(
            "{} event(s) were refused by a transport for good; tidings outbox lists them with the reason",
            refused.len()
        );
    }
}

async fn command(engine: &Engine, command: Command, json: bool) -> tidings::Result<()> {
    let out = Output { json };
    match command {
        Command::Serve(_) => unreachable!("serve is handled before the engine opens"),
        Command::Token(_) => unreachable!("token is handled before the engine opens"),
        Command::Send(args) => {
            let mut request = match (args.to, args.conversation) {
                (Some(to), _) => SendRequest::to(args.from, to, args.text.join(" ")),
                (None, Some(conv)) => {
                    SendRequest::in_conversation(args.from, conv, args.text.join(" "))
                }
                (None, None) => unreachable!("clap requires --to or --conversation"),
            };
            request.client_msg_id = args.client_id;
            let sent = engine.send(request).await?;
            out.print(&sent.message, || {
                let m = &sent.message;
                let what = if sent.created {
                    "sent"
                } else {
                    "already sent (same --client-id), nothing stored"
                };
                format!(
                    "{what}: #{} in {} (message id {})",
                    m.seq, m.conversation_id, m.id
                )
            });
        }
        Command::History {
            conversation,
            before,
            limit,
        } => {
            let page = engine
                .history(&conversation, PageRequest { before, limit })
                .await?;
            out.print(&page, || {
                let mut text = lines(&page.items);
                if page.items.is_empty() {
                    text = format!("no messages in {conversation}");
                }
                if let Some(next) = page.next_before {
                    text.push_str(&format!("\n(older: --before {next})"));
                }
                text
            });
        }
        Command::After {
            conversation,
            seq,
            max,
        } => {
            let items = engine.messages_after(&conversation, seq, max).await?;
            out.print(&items, || {
                if items.is_empty() {
                    format!("nothing after #{seq} in {conversation}")
                } else {
                    lines(&items)
                }
            });
        }
        Command::Read {
            user,
            conversation,
            up_to,
        } => {
            let state = engine.mark_read(&user, &conversation, up_to).await?;
            out.print(&state, || {
                format!(
                    "{} has read {} up to #{}",
                    state.user_id, state.conversation_id, state.seq
                )
            });
        }
        Command::Inbox { user, limit } => {
            let entries = engine.inbox(&user, limit).await?;
            out.print(&entries, || {
                if entries.is_empty() {
                    return format!("{user} has no conversations");
                }
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{}  with {}  {} unread  last: {}",
                            e.conversation_id,
                            e.peer_id,
                            e.unread_count,
                            line(&e.last_message)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Search { user, words, max } => {
            let found = engine.search(&user, &words.join(" "), max).await?;
            out.print(&found, || {
                if found.is_empty() {
                    format!("no message of {user} matches {:?}", words.join(" "))
                } else {
                    found
                        .iter()
                        .map(|m| format!("{}  {}", m.conversation_id, line(m)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        Command::Edit { user, id, text } => {
            let m = engine.edit(&user, id, &text.join(" ")).await?;
            out.print(&m, || format!("edited: {}", line(&m)));
        }
        Command::Delete { user, id } => {
            let m = engine.delete(&user, id).await?;
            out.print(&m, || {
                format!(
                    "deleted message {} (#{} in {})",
                    m.id, m.seq, m.conversation_id
                )
            });
        }
        Command::React { user, id, emoji } => {
            let m = engine.react(&user, id, &emoji).await?;
            out.print(&m, || format!("reacted: {}", line(&m)));
        }
        Command::Unreact { user, id } => {
            let m = engine.unreact(&user, id).await?;
            out.print(&m, || format!("reaction removed: {}", line(&m)));
        }
        Command::Outbox { limit, forget } => {
            if let Some(key) = forget {
                if !engine.store().forget_transport(&key).await? {
                    return Err(tidings::Error::NotFound(format!(
                        "no transport {key:?} is registered (tidings outbox lists the ones events wait for)"
                    )));
                }
                eprintln!("forgot transport {key}: no event waits for it any more");
            }
            let rows = engine.pending_deliveries(limit).await?;
            out.print(&rows, || {
                if rows.is_empty() {
                    return "nothing is waiting for delivery".into();
                }
                rows.iter()
                    .map(|r| {
                        let state = if r.refused {
                            "refused".to_owned()
                        } else {
                            format!("waits for {}", r.pending_for.join(", "))
                        };
                        format!(
                            "{}  {}  {}  {state}  attempts {}{}",
                            r.id,
                            r.conversation_id,
                            r.event,
                            r.attempts,
                            r.last_error
                                .as_deref()
                                .map(|e| format!("  last error: {e}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

/// `tidings serve`: flags over environment over the config file over defaults.
async fn serve(
    store: Option<String>,
    file: tidings::api::apps::FileConfig,
    args: ServeArgs,
) -> tidings::Result<()> {
    use tidings::api::{apps, ServeConfig, Server};
    let transports = file.transports.clone();
    let data_dir = args
        .data_dir
        .or(file.data_dir.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./tidings-data"));
    let listen = match (args.listen, &file.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text.parse().map_err(|e| {
            tidings::Error::Config(format!("listen address {text:?} in the config file: {e}"))
        })?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 6001)),
    };
    let store = store
        .or(file.store)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tidings.db").display()));
    if args.demo && !listen.ip().is_loopback() && !args.demo_public {
        return Err(tidings::Error::Config(format!(
            "--demo lets anyone who reaches the server act as any user, so it listens only on a \
             loopback address (127.0.0.1, [::1]); {listen} is not one. Add --demo-public \
             (TIDINGS_DEMO_PUBLIC=1) to serve the demo there all the same"
        )));
    }
    let (mut default_app, generated) = apps::default_app(
        &data_dir,
        args.app_id,
        args.app_key,
        // Only from the environment: a flag would show in `ps`.
        std::env::var("TIDINGS_APP_SECRET").ok(),
    )?;
    default_app.webhooks.extend(args.webhook);
    let mut all_apps = vec![default_app.clone()];
    let mut allowed_origins = args.allowed_origins;
    for entry in file.apps {
        allowed_origins.extend(entry.allowed_origins);
        all_apps.push(entry.app);
    }
    let cluster = args
        .cluster
        .filter(|url| !url.trim().is_empty())
        .map(|url| {
            let mut settings = tidings::cluster::ClusterSettings::new(url.trim());
            settings.node_ttl = args.cluster_node_ttl;
            settings.sweep_interval = args.cluster_sweep;
            settings.outbox_lease = args.outbox_lease;
            settings
        });
    if cluster.is_some() && store.starts_with("sqlite") {
        eprintln!(
            "warning: --cluster with an SQLite store: every node keeps its own messages; \
             give the nodes one --store postgres://…"
        );
    }
    if args.demo {
        // On every start, whatever RUST_LOG says.
        eprintln!("warning: {}", tidings::api::DEMO_WARNING);
        if !listen.ip().is_loopback() {
            eprintln!(
                "warning: --demo-public: the demo listens on {listen}, where other people can \
                 reach it"
            );
        }
    }
    let server = Server::bind(ServeConfig {
        listen,
        data_dir: data_dir.clone(),
        store: store.clone(),
        apps: all_apps,
        demo: args.demo,
        allowed_origins,
        plugins: args.plugin,
        broker: tidings::broker::BrokerSettings::default(),
        cluster: cluster.clone(),
        transports,
        shutdown_timeout: args.shutdown_timeout,
        header_timeout: args.header_timeout,
    })
    .await?;
    let addr = server.local_addr()?;
    eprintln!("tidings serving on http://{addr}");
    eprintln!("  store     {}", tidings::store::redact_url(&store));
    if let (Some(settings), Some(joined)) = (&cluster, server.cluster()) {
        eprintln!(
            "  cluster   {} as node {} (a dead node's members leave within {})",
            tidings::store::redact_url(&settings.url),
            joined.node_id(),
            humantime::format_duration(settings.death_bound())
        );
    }
    eprintln!(
        "  app       id {}, key {}, secret {}",
        default_app.id,
        default_app.key,
        if generated {
            format!("kept in {}", data_dir.join(apps::SECRET_FILE).display())
        } else {
            "from TIDINGS_APP_SECRET".to_owned()
        }
    );
    let origins = &server.state().allowed_origins;
    eprintln!(
        "  origins   {}",
        if origins.is_any() {
            "any (*) may call the chat API from a browser".to_owned()
        } else if origins.is_empty() {
            "this server's own only (--allowed-origins adds others)".to_owned()
        } else {
            origins.origins().join(", ")
        }
    );
    eprintln!("  pusher-js new Pusher('{}', {{ cluster: 'local', wsHost: '{}', wsPort: {}, forceTLS: false, enabledTransports: ['ws'] }})", default_app.key, addr.ip(), addr.port());
    for p in server.state().engine.plugins() {
        eprintln!(
            "  plugin    {} {} ({})",
            p.name,
            p.version.as_deref().unwrap_or("-"),
            p.file
        );
    }
    if args.demo {
        eprintln!("  demo mode: open http://{addr}/ and sign in with any user id");
    }
    server.run(shutdown_signal()).await?;
    eprintln!("tidings stopped");
    Ok(())
}

/// `tidings token`: mints a user token with the default app's secret,
/// `TIDINGS_APP_SECRET` or the one `serve` generated in the data directory.
fn token(args: TokenArgs, json: bool) -> tidings::Result<()> {
    use tidings::api::{apps, token};
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from("./tidings-data"));
    let env_secret = std::env::var("TIDINGS_APP_SECRET").ok();
    let secret_file = data_dir.join(apps::SECRET_FILE);
    let fresh = env_secret.is_none() && !secret_file.exists();
    let (app, _) = apps::default_app(&data_dir, None, None, env_secret)?;
    if fresh {
        eprintln!(
            "note: generated a new app secret in {}; run serve with the same --data-dir",
            secret_file.display()
        );
    }
    let ttl = args
        .ttl
        .map_or(token::DEFAULT_TTL, std::time::Duration::from_secs);
    let minted = token::mint(&app.secret, &args.user, ttl)?;
    if json {
        let claims = token::verify(&app.secret, &minted, token::unix_now())
            .map_err(|e| tidings::Error::Config(e.to_string()))?;
        let out = serde_json::json!({
            "token": minted,
            "user": claims.user,
            "expires_at": claims.exp,
        });
        println!("{out}");
    } else {
        println!("{minted}");
    }
    Ok(())
}

/// `--plugin PATH`, `--plugin PATH={...}` or `--plugin PATH=@FILE`: the
/// configuration is JSON, inline or read from FILE.
fn plugin_arg(arg: &str) -> Result<tidings::PluginConfig, String> {
    let split = ["={", "=@"].iter().filter_map(|s| arg.find(s)).min();
    let Some(at) = split else {
        return Ok(tidings::PluginConfig::path(arg));
    };
    let (path, config) = (&arg[..at], &arg[at + 1..]);
    let json = match config.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("plugin configuration file {file}: {e}"))?,
        None => config.to_owned(),
    };
    let config = serde_json::from_str(&json)
        .map_err(|e| format!("configuration of plugin {path} is not JSON: {e}"))?;
    Ok(tidings::PluginConfig::path(path).with_config(config))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("error: cannot encode the result as JSON: {e}"),
            }
        } else {
            println!("{}", human());
        }
    }
}

fn lines(messages: &[Message]) -> String {
    messages.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// `#3  2026-11-26T05:10:11.123Z  1: text  [👍 18]`
fn line(m: &Message) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.created_at.max(0) as u64);
    let mut text = format!(
        "#{}  {}  {}: {}",
        m.seq,
        humantime::format_rfc3339_millis(when),
        m.sender_id,
        if m.deleted_at.is_some() {
            "(deleted)"
        } else {
            &m.body
        }
    );
    if m.edited_at.is_some() && m.deleted_at.is_none() {
        text.push_str("  (edited)");
    }
    for r in &m.reactions {
        text.push_str(&format!("  [{} {}]", r.emoji, r.user_id));
    }
    text
}
