//! `tidings serve`: the engine, the broker, the Pusher HTTP API, the chat
//! HTTP API, the channel-auth endpoints and the chat page on one port.
//! This is the one place that composes [`Engine`] and [`Broker`]; the
//! broker never calls the engine.

pub mod apps;
pub mod auth;
pub mod chat;
pub mod cors;
mod listen;
pub mod page;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::broker::{AppConfig, Broker, BrokerSettings, BrokerTransport};
use crate::cluster::ClusterSettings;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::{EngineConfig, TransportConfig};

/// What a server in demo mode says on every start (the binary on stderr,
/// the C ABI through `tracing`).
pub const DEMO_WARNING: &str = "demo mode: anyone who can reach this server can act as any \
user (the chat page and /v1/ take X-Tidings-User: ID without a token); never use it with real users";

/// How long a clustered node waits for Redis before it serves alone.
const CLUSTER_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything `tidings serve` needs, after flags, env and file are merged.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: String,
    /// The first app is the default one the engine publishes to.
    pub apps: Vec<AppConfig>,
    /// Sign in by typing a user id on the chat page (no token needed): any
    /// caller can act as any user. Hosts should say so ([`DEMO_WARNING`]).
    pub demo: bool,
    /// Browser origins (`https://app.example`) whose pages may call the
    /// chat API and the auth endpoints (CORS, see [`cors`]); empty: only
    /// the server's own origin. `*` allows every origin, but not in demo
    /// mode.
    pub allowed_origins: Vec<String>,
    pub broker: BrokerSettings,
    /// Share fan-out and presence with other nodes through Redis
    /// (`tidings serve --cluster`); `None`: a single node. The server
    /// attaches the cluster to the broker, which knows only its port.
    pub cluster: Option<ClusterSettings>,
    /// Plugins, in the order their hooks run.
    pub plugins: Vec<crate::plugin::PluginConfig>,
    /// Transports besides the in-process broker (e.g. a Pusher HTTP API to
    /// mirror events to); the broker is always there.
    pub transports: Vec<TransportConfig>,
    /// After the shutdown signal, how long requests still open (a body that
    /// never ends, a long-poll) may take before the server stops serving
    /// them; the engine's delivery drain (5 s at most) follows. Default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: std::time::Duration,
    /// How long a client has to send a request's headers before its
    /// connection is closed. Default [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: std::time::Duration,
}

pub use listen::DEFAULT_HEADER_TIMEOUT;

/// How long open requests may take after the shutdown signal: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl ServeConfig {
    /// A server for `apps` on `listen`, keeping its data in `data_dir` and
    /// `store`; no demo sign-in, no other origins, default broker settings,
    /// no cluster, no plugins, no transports besides the broker. Set the
    /// other fields with `..`.
    pub fn new(
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        store: impl Into<String>,
        apps: Vec<AppConfig>,
    ) -> ServeConfig {
        ServeConfig {
            listen,
            data_dir: data_dir.into(),
            store: store.into(),
            apps,
            demo: false,
            allowed_origins: Vec::new(),
            broker: BrokerSettings::default(),
            cluster: None,
            plugins: Vec::new(),
            transports: Vec::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// What every route of the server can reach.
#[derive(Clone)]
pub struct ServerState {
    pub engine: Engine,
    pub broker: Arc<Broker>,
    pub demo: bool,
    /// Who may call the chat API and the auth endpoints from a browser.
    pub allowed_origins: Arc<cors::AllowedOrigins>,
}

impl ServerState {
    /// The app the engine publishes to and the chat API signs with.
    pub fn app(&self) -> &Arc<crate::broker::App> {
        self.broker.apps.default_app()
    }
}

/// A server that is listening; [`Server::run`] serves until `shutdown`.
pub struct Server {
    listener: TcpListener,
    router: Router,
    state: ServerState,
    cluster: Option<crate::cluster::Cluster>,
    timeouts: listen::Timeouts,
}

impl Server {
    /// Opens the store, starts the engine and binds the port.
    pub async fn bind(config: ServeConfig) -> Result<Server> {
        let allowed_origins = cors::AllowedOrigins::parse(&config.allowed_origins)?;
        if config.demo && allowed_origins.is_any() {
            return Err(Error::Config(
                "allowed origin `*` is refused in demo mode: any web page could then act as \
                 any user of this server; list the origins of your own pages instead"
                    .into(),
            ));
        }
        let broker = Broker::new(config.apps.clone(), config.broker.clone())?;
        let handle = tokio::runtime::Handle::current();
        // Before the webhooks: in a cluster their leave delay is kept in Redis.
        let cluster = match &config.cluster {
            Some(settings) => Some(crate::cluster::start(&broker, settings.clone(), &handle)?),
            None => None,
        };
        crate::broker::webhook::start_all(&broker, &handle);
        if let (Some(cluster), Some(settings)) = (&cluster, &config.cluster) {
            // Serve once the other nodes can be reached, or alone if Redis
            // does not answer soon (it is retried in the background).
            if !cluster.wait_connected(CLUSTER_CONNECT_WAIT).await {
                tracing::warn!(
                    redis = %crate::store::redact_url(&settings.url),
                    "Redis did not answer within {CLUSTER_CONNECT_WAIT:?}; serving this node's \
                     subscribers alone until it does"
                );
            }
        }
        let mut transports = config.transports.clone();
        if !transports.contains(&TransportConfig::Broker) {
            transports.insert(0, TransportConfig::Broker);
        }
        let mut builder = Engine::builder();
        if let Some(settings) = &config.cluster {
            builder = builder.outbox_lease(settings.outbox_lease);
        }
        let engine = builder
            .config(EngineConfig {
                store: config.store.clone(),
                transports,
                plugins: config.plugins.clone(),
                ..EngineConfig::default()
            })
            .broker(Arc::new(BrokerTransport::new(
                broker.apps.default_app().clone(),
            )))
            .build()
            .await?;
        let state = ServerState {
            engine,
            broker: broker.clone(),
            demo: config.demo,
            allowed_origins: Arc::new(allowed_origins),
        };
        let router = routes(&state);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.listen)))?;
        Ok(Server {
            listener,
            router,
            state,
            cluster,
            timeouts: listen::Timeouts {
                header: config.header_timeout,
                shutdown: config.shutdown_timeout,
            },
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Config(format!("listening address: {e}")))
    }

    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// The cluster this node joined (`--cluster`), if any.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes every
    /// WebSocket with 4200 (clients reconnect), lets in-flight requests
    /// finish (for the shutdown timeout at most: then the requests still
    /// open are dropped) and delivers what the outbox holds; in a cluster
    /// it then takes its share out of Redis, so its members leave at once.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let broker = self.state.broker.clone();
        let signal = async move {
            shutdown.await;
            broker.close_all();
        };
        listen::serve(self.listener, self.router, signal, self.timeouts).await;
        self.state.engine.shutdown().await;
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        Ok(())
    }
}

/// Every route of the server.
pub fn routes(state: &ServerState) -> Router {
    state
        .broker
        .websocket_routes()
        .merge(state.broker.xhr_routes())
        .merge(crate::broker::http_api::routes(state.broker.clone()))
        .merge(chat::routes(state.clone()))
        .merge(auth::routes(state.clone()))
        .merge(page::routes(state.clone()))
}
