//! The apps `tidings serve` runs: the default app from the environment (or
//! generated once and kept in the data directory) and more from a TOML file.

use std::path::Path;

use serde::Deserialize;

use crate::broker::AppConfig;
use crate::error::{Error, Result};

/// The default app's id and key when the environment sets none.
pub const DEFAULT_APP_ID: &str = "1";
pub const DEFAULT_APP_KEY: &str = "tidings-key";
/// Where the generated secret of the default app is kept.
pub const SECRET_FILE: &str = "app-secret";
/// Shortest app secret accepted from a config file, the environment or a
/// host: 32 bytes, such as 32 random hex digits (`openssl rand -hex 32`
/// gives 64).
pub const MIN_SECRET_LEN: usize = 32;
/// Random bytes of a generated secret (written as twice as many hex digits).
const GENERATED_SECRET_BYTES: usize = 32;

/// The `--config` file, shared by every command: `listen`, `data_dir`,
/// `store`, `[[app]]` and `[[transport]]` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub store: Option<String>,
    #[serde(default, rename = "app")]
    pub apps: Vec<FileApp>,
    /// `[[transport]]` entries: where events go besides the broker.
    #[serde(default, rename = "transport")]
    pub transports: Vec<crate::TransportConfig>,
}

/// An `[[app]]` entry: the app's settings and `allowed_origins`, the
/// browser origins whose pages may call the chat API and the auth
/// endpoints (see [`super::cors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileApp {
    pub app: AppConfig,
    pub allowed_origins: Vec<String>,
}

impl<'de> Deserialize<'de> for FileApp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        // `AppConfig` refuses unknown fields: take ours out first.
        let mut table = toml::Table::deserialize(d)?;
        let allowed_origins = match table.remove("allowed_origins") {
            Some(value) => value
                .try_into()
                .map_err(|e| D::Error::custom(format!("allowed_origins: {e}")))?,
            None => Vec::new(),
        };
        let app = toml::Value::Table(table)
            .try_into()
            .map_err(D::Error::custom)?;
        Ok(FileApp {
            app,
            allowed_origins,
        })
    }
}

impl FileConfig {
    /// Reads and checks the file: every `[[app]]` valid, with a secret of
    /// at least [`MIN_SECRET_LEN`] bytes and well-formed origins.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: FileConfig =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        for entry in &config.apps {
            let place = format!("[[app]] in {}", path.display());
            check_secret(&entry.app, &place)?;
            entry.app.validate()?;
            super::cors::AllowedOrigins::parse(&entry.allowed_origins)
                .map_err(|e| Error::Config(format!("app {} ({place}): {e}", entry.app.id)))?;
        }
        Ok(config)
    }
}

/// Refuses a secret under [`MIN_SECRET_LEN`] bytes, naming the app and
/// where its secret comes from (`place`).
pub fn check_secret(app: &AppConfig, place: &str) -> Result<()> {
    if app.secret.len() < MIN_SECRET_LEN {
        return Err(Error::Config(format!(
            "the secret of app {} ({place}) is {} bytes long; at least {MIN_SECRET_LEN} are \
             required, so that it cannot be guessed: make one with `openssl rand -hex 32`",
            app.id,
            app.secret.len()
        )));
    }
    Ok(())
}

/// The default app: `TIDINGS_APP_ID`, `TIDINGS_APP_KEY`, `TIDINGS_APP_SECRET`
/// when set; otherwise id 1, key `tidings-key` and a secret generated once
/// and kept in `data_dir/app-secret` (mode 0600, in a directory created
/// 0700). Secrets under [`MIN_SECRET_LEN`] bytes are refused.
pub fn default_app(
    data_dir: &Path,
    id: Option<String>,
    key: Option<String>,
    secret: Option<String>,
) -> Result<(AppConfig, bool)> {
    let id = id.unwrap_or_else(|| DEFAULT_APP_ID.to_owned());
    let key = key.unwrap_or_else(|| DEFAULT_APP_KEY.to_owned());
    let (secret, generated, place) = match secret {
        Some(s) => (s, false, "TIDINGS_APP_SECRET".to_owned()),
        None => (
            stored_secret(data_dir)?,
            true,
            data_dir.join(SECRET_FILE).display().to_string(),
        ),
    };
    let app = AppConfig::new(id, key, secret);
    check_secret(&app, &place)?;
    app.validate()?;
    Ok((app, generated))
}

fn stored_secret(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the app secret {}: {e}",
                path.display()
            )))
        }
    }
    create_private_dir(data_dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", data_dir.display())))?;
    let secret: String = (0..GENERATED_SECRET_BYTES)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    write_private(&path, &secret)
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(secret)
}

/// Creates `dir` and its missing parents with mode 0700; existing
/// directories keep theirs.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new file readable by its owner only (0600 whatever the umask).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_SECRET: &str = "s3cret-value-0123456789abcdef-xyz";

    #[test]
    fn the_generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, generated) = default_app(dir.path(), None, None, None).unwrap();
        assert!(generated);
        assert_eq!(a.secret.len(), 2 * GENERATED_SECRET_BYTES);
        assert!(a.secret.len() >= MIN_SECRET_LEN);
        assert!(a.secret.bytes().all(|b| b.is_ascii_hexdigit()));
        let (b, _) = default_app(dir.path(), None, None, None).unwrap();
        assert_eq!(a.secret, b.secret);
        let (c, generated) = default_app(
            dir.path(),
            Some("42".into()),
            Some("k".into()),
            Some(LONG_SECRET.into()),
        )
        .unwrap();
        assert!(!generated);
        assert_eq!((c.id.as_str(), c.secret.as_str()), ("42", LONG_SECRET));
        assert!(default_app(dir.path(), Some("abc".into()), None, None).is_err());
    }

    #[test]
    fn short_secrets_are_refused_naming_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let err = default_app(
            dir.path(),
            Some("42".into()),
            None,
            Some("s3cret-value".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("app 42"), "{err}");
        assert!(err.contains("TIDINGS_APP_SECRET"), "{err}");
        assert!(err.contains("12 bytes") && err.contains("32"), "{err}");
        // A secret file written by hand is held to the same rule.
        std::fs::write(dir.path().join(SECRET_FILE), "short\n").unwrap();
        let err = default_app(dir.path(), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(SECRET_FILE), "{err}");
        // 32 bytes is enough.
        let secret = "x".repeat(MIN_SECRET_LEN);
        assert!(default_app(dir.path(), None, None, Some(secret)).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_and_secret_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/tidings-data");
        default_app(&data, None, None, None).unwrap();
        assert_eq!(mode(&data.join(SECRET_FILE)), 0o600);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
    }

    #[test]
    fn apps_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidings.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(&format!(
            r#"
            listen = "127.0.0.1:7000"
            [[app]]
            id = "7"
            key = "seven"
            secret = "{LONG_SECRET}"
            webhooks = ["http://127.0.0.1:9/hook"]
            allowed_origins = ["https://app.example"]
            [[app]]
            id = "8"
            key = "eight"
            secret = "{LONG_SECRET}"
            "#
        ));
        let f = FileConfig::load(&path).unwrap();
        assert_eq!(f.apps[0].app.webhooks.len(), 1);
        assert!(f.apps[0].app.client_events);
        assert_eq!(f.apps[0].allowed_origins, ["https://app.example"]);
        assert!(f.apps[1].allowed_origins.is_empty());
        assert!(toml::from_str::<FileConfig>("lisen = 1").is_err());

        // Unknown fields of an app are still refused.
        write(&format!(
            "[[app]]\nid = \"7\"\nkey = \"k\"\nsecret = \"{LONG_SECRET}\"\nwebhok = []\n"
        ));
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("webhok"), "{err}");
        // Short secrets name the app and the file.
        write("[[app]]\nid = \"7\"\nkey = \"k\"\nsecret = \"seven-secret\"\n");
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("app 7") && err.contains("tidings.toml"),
            "{err}"
        );
        // So do bad origins.
        write(&format!(
            "[[app]]\nid = \"7\"\nkey = \"k\"\nsecret = \"{LONG_SECRET}\"\n\
             allowed_origins = [\"https://app.example/chat\"]\n"
        ));
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("app 7") && err.contains("/chat"), "{err}");
    }
}
