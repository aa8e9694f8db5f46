//! `tidings_server`: `tidings serve` (the Pusher-protocol broker, the Pusher
//! HTTP API, the chat API and the auth endpoints) started in process, with
//! its engine reachable through `tidings_server_engine`. Needs the `broker`
//! feature; without it these functions answer `CONFIG`.

use std::ffi::c_char;
use std::sync::Arc;

use crate::boundary::{self, ArcHandle, Out};
use crate::engine::{tidings_engine, EngineHandle};
use crate::status::tidings_status;
use crate::string::json_arg;

/// A running (or stopped) in-process server. Thread-safe.
pub struct tidings_server {
    _private: [u8; 0],
}

impl ArcHandle for tidings_server {
    type Rust = imp::ServerHandle;
    const NAME: &'static str = "server";
}

/// Starts a server from `config_json`, every field optional:
/// `{"listen": "127.0.0.1:6001", "data_dir": "./tidings-data",
/// "store": "sqlite://./tidings-data/tidings.db",
/// "apps": [{"id": "1", "key": "tidings-key", "secret": "at least 32 bytes"}],
/// "demo": false, "allowed_origins": [], "transports": [...], "plugins": [...]}`
/// (`transports` and `plugins` as in the engine config). Without `apps`, the
/// default app (id 1, key `tidings-key`) gets a secret generated once and
/// kept in `data_dir`; a secret under 32 bytes is refused (`CONFIG`).
/// `"listen": "127.0.0.1:0"` picks a free port. `"demo": true` lets any
/// caller act as any user and logs a warning saying so. `allowed_origins`
/// lists the browser origins (`"https://app.example"`) whose pages may call
/// the chat API and the auth endpoints; by default only the server's own.
///
/// On `OK`, `*server_out` is a new handle (release with
/// `tidings_server_free`) and `*address_out` the address it listens on
/// (`"127.0.0.1:43615"`, free with `tidings_string_free`).
#[no_mangle]
pub unsafe extern "C" fn tidings_server_start(
    config_json: *const c_char,
    server_out: *mut *mut tidings_server,
    address_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_server_start", error_out, || {
        let server_out = Out::new(server_out, "server_out")?;
        let address_out = Out::new(address_out, "address_out")?;
        // SAFETY: the caller passes a NUL-terminated string.
        let config = unsafe { json_arg(config_json, "config_json", tidings_status::Config) }?;
        let server = imp::start(config)?;
        address_out.write_str(&server.address())?;
        server_out.write(tidings_server::into_ptr(Arc::new(server)));
        Ok(())
    })
}

/// What a host needs to point clients at the server and sign for its app:
/// `{"address": "127.0.0.1:43615", "running": true, "app": {"id": "1",
/// "key": "tidings-key", "secret": "..."}}`.
#[no_mangle]
pub unsafe extern "C" fn tidings_server_info(
    server: *const tidings_server,
    info_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_server_info", error_out, || {
        // SAFETY: the caller passes a live handle.
        let server = unsafe { tidings_server::clone_from(server, tidings_server::NAME) }?;
        let out = Out::new(info_json_out, "info_json_out")?;
        out.write_json(&server.info())
    })
}

/// A new handle to the server's engine: messages sent through it reach the
/// server's WebSocket clients. Release it with `tidings_engine_free`, which
/// does not shut the server's engine down (`tidings_server_stop` does).
#[no_mangle]
pub unsafe extern "C" fn tidings_server_engine(
    server: *const tidings_server,
    engine_out: *mut *mut tidings_engine,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_server_engine", error_out, || {
        // SAFETY: the caller passes a live handle.
        let server = unsafe { tidings_server::clone_from(server, tidings_server::NAME) }?;
        let out = Out::new(engine_out, "engine_out")?;
        let handle = EngineHandle {
            engine: server.engine()?,
            owned: false,
        };
        out.write(tidings_engine::into_ptr(Arc::new(handle)));
        Ok(())
    })
}

/// Stops the server gracefully and waits for it: no new connections,
/// WebSockets closed with code 4200 (clients reconnect elsewhere), in-flight
/// requests finished, pending events delivered, the engine shut down.
/// Idempotent. The handle stays valid until `tidings_server_free`.
#[no_mangle]
pub unsafe extern "C" fn tidings_server_stop(
    server: *const tidings_server,
    error_out: *mut *mut c_char,
) -> tidings_status {
    boundary::call("tidings_server_stop", error_out, || {
        // SAFETY: the caller passes a live handle.
        let server = unsafe { tidings_server::clone_from(server, tidings_server::NAME) }?;
        server.stop()
    })
}

/// Stops the server if it still runs (see `tidings_server_stop`) and
/// releases the handle. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn tidings_server_free(server: *mut tidings_server) {
    boundary::infallible("tidings_server_free", (), || {
        // SAFETY: the caller passes NULL or a live handle, never used again.
        if let Some(server) = unsafe { tidings_server::take(server) } {
            if let Err(err) = server.stop() {
                tracing::warn!(error = %err.message, "tidings_server_free: stopping failed");
            }
        }
    });
}

#[cfg(feature = "broker")]
mod imp {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::time::Duration;

    use serde::Deserialize;
    use serde_json::json;
    use tidings::api::{apps, ServeConfig, Server};
    use tidings::broker::AppConfig;
    use tidings::config::TransportConfig;
    use tidings::plugin::PluginConfig;
    use tidings::Engine;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use crate::runtime;
    use crate::status::{tidings_status, FfiError, FfiResult};

    /// How long `stop` waits for the server to wind down.
    const STOP_DEADLINE: Duration = Duration::from_secs(30);

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ServerConfig {
        #[serde(default)]
        listen: Option<String>,
        #[serde(default)]
        data_dir: Option<String>,
        #[serde(default)]
        store: Option<String>,
        #[serde(default)]
        apps: Vec<AppConfig>,
        #[serde(default)]
        demo: bool,
        /// Browser origins allowed to call the chat API (CORS).
        #[serde(default)]
        allowed_origins: Vec<String>,
        /// Transports besides the in-process broker (`EngineConfig` form).
        #[serde(default)]
        transports: Vec<TransportConfig>,
        /// Plugins, in the order their hooks run (`EngineConfig` form).
        #[serde(default)]
        plugins: Vec<PluginConfig>,
    }

    struct Running {
        stop: oneshot::Sender<()>,
        task: JoinHandle<tidings::Result<()>>,
    }

    pub struct ServerHandle {
        address: SocketAddr,
        app: AppConfig,
        engine: Engine,
        running: Mutex<Option<Running>>,
    }

    pub fn start(config: ServerConfig) -> FfiResult<ServerHandle> {
        let listen: SocketAddr = match &config.listen {
            Some(text) => text.parse().map_err(|e| {
                FfiError::new(
                    tidings_status::Config,
                    format!("listen address {text:?}: {e}"),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 6001)),
        };
        let data_dir = PathBuf::from(config.data_dir.as_deref().unwrap_or("./tidings-data"));
        let store = config
            .store
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tidings.db").display()));
        for app in &config.apps {
            apps::check_secret(app, "apps of the server config")?;
        }
        let mut all_apps = config.apps;
        if all_apps.is_empty() {
            all_apps.push(apps::default_app(&data_dir, None, None, None)?.0);
        }
        let app = all_apps[0].clone();
        if config.demo {
            tracing::warn!(%listen, "{}", tidings::api::DEMO_WARNING);
        }
        let serve = ServeConfig {
            demo: config.demo,
            allowed_origins: config.allowed_origins,
            transports: config.transports,
            plugins: config.plugins,
            ..ServeConfig::new(listen, data_dir, store, all_apps)
        };
        let rt = runtime::get()?;
        let server = runtime::block_on("tidings_server_start", Server::bind(serve))??;
        let address = server.local_addr()?;
        let engine = server.state().engine.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = rt.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(ServerHandle {
            address,
            app,
            engine,
            running: Mutex::new(Some(Running { stop, task })),
        })
    }

    impl ServerHandle {
        pub fn address(&self) -> String {
            self.address.to_string()
        }

        fn is_running(&self) -> bool {
            self.running
                .lock()
                .map(|r| r.as_ref().is_some_and(|r| !r.task.is_finished()))
                .unwrap_or(false)
        }

        pub fn info(&self) -> serde_json::Value {
            json!({
                "address": self.address(),
                "running": self.is_running(),
                "app": { "id": self.app.id, "key": self.app.key, "secret": self.app.secret },
            })
        }

        pub fn engine(&self) -> FfiResult<Engine> {
            Ok(self.engine.clone())
        }

        pub fn stop(&self) -> FfiResult<()> {
            let running = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(running) = running else {
                return Ok(());
            };
            let _ = running.stop.send(());
            let result = runtime::block_on("tidings_server_stop", async move {
                tokio::time::timeout(STOP_DEADLINE, running.task).await
            })?;
            match result {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(err))) => Err(err.into()),
                Ok(Err(join)) => Err(FfiError::new(
                    tidings_status::Panic,
                    format!("the server task failed: {join}"),
                )),
                Err(_) => Err(FfiError::new(
                    tidings_status::Unknown,
                    format!(
                        "the server did not stop within {} s",
                        STOP_DEADLINE.as_secs()
                    ),
                )),
            }
        }
    }
}

#[cfg(not(feature = "broker"))]
mod imp {
    use serde::Deserialize;
    use tidings::Engine;

    use crate::status::{tidings_status, FfiError, FfiResult};

    /// Accepts any JSON object, then refuses: no server in this build.
    #[derive(Deserialize)]
    pub struct ServerConfig {}

    /// Never created in a build without the broker.
    pub struct ServerHandle {
        _never: std::convert::Infallible,
    }

    fn missing() -> FfiError {
        FfiError::new(
            tidings_status::Config,
            "this build of tidings-ffi has no server (the `broker` feature is off)",
        )
    }

    pub fn start(_: ServerConfig) -> FfiResult<ServerHandle> {
        Err(missing())
    }

    impl ServerHandle {
        pub fn address(&self) -> String {
            match self._never {}
        }
        pub fn info(&self) -> serde_json::Value {
            match self._never {}
        }
        pub fn engine(&self) -> FfiResult<Engine> {
            match self._never {}
        }
        pub fn stop(&self) -> FfiResult<()> {
            match self._never {}
        }
    }
}
