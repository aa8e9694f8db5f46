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

/// The `--config` file, shared by every command: `listen`, `data_dir`,
/// `store`, `[[app]]` and `[[transport]]` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub store: Option<String>,
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    /// `[[transport]]` entries: where events go besides the broker.
    #[serde(default, rename = "transport")]
    pub transports: Vec<crate::TransportConfig>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

/// The default app: `TIDINGS_APP_ID`, `TIDINGS_APP_KEY`, `TIDINGS_APP_SECRET`
/// when set; otherwise id 1, key `tidings-key` and a secret generated once
/// and kept in `data_dir/app-secret` (mode 0600).
pub fn default_app(
    data_dir: &Path,
    id: Option<String>,
    key: Option<String>,
    secret: Option<String>,
) -> Result<(AppConfig, bool)> {
    let id = id.unwrap_or_else(|| DEFAULT_APP_ID.to_owned());
    let key = key.unwrap_or_else(|| DEFAULT_APP_KEY.to_owned());
    let (secret, generated) = match secret {
        Some(s) => (s, false),
        None => (stored_secret(data_dir)?, true),
    };
    let app = AppConfig::new(id, key, secret);
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
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", data_dir.display())))?;
    let secret: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
        .collect();
    write_private(&path, &secret)
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_secret_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, generated) = default_app(dir.path(), None, None, None).unwrap();
        assert!(generated);
        assert_eq!(a.secret.len(), 32);
        let (b, _) = default_app(dir.path(), None, None, None).unwrap();
        assert_eq!(a.secret, b.secret);
        let (c, generated) = default_app(
            dir.path(),
            Some("42".into()),
            Some("k".into()),
            Some("s3cret-value".into()),
        )
        .unwrap();
        assert!(!generated);
        assert_eq!((c.id.as_str(), c.secret.as_str()), ("42", "s3cret-value"));
        assert!(default_app(dir.path(), Some("abc".into()), None, None).is_err());
    }

    #[test]
    fn apps_from_toml() {
        let f: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:7000"
            [[app]]
            id = "7"
            key = "seven"
            secret = "seven-secret"
            webhooks = ["http://127.0.0.1:9/hook"]
            "#,
        )
        .unwrap();
        assert_eq!(f.apps[0].webhooks.len(), 1);
        assert!(f.apps[0].client_events);
        assert!(toml::from_str::<FileConfig>("lisen = 1").is_err());
    }
}
