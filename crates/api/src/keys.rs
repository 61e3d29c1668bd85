//! The key that encrypts upstream secrets at rest: from configuration, from
//! its key file, or (development only) a new one written on first start.

use std::io::Write;

use anyhow::{bail, Context};
use link_store::SecretKey;

use crate::config::{Mode, Settings};

pub fn load_or_create(settings: &Settings) -> anyhow::Result<SecretKey> {
    let inline = settings.secrets.encryption_key.trim();
    if !inline.is_empty() {
        return SecretKey::from_base64(inline)
            .map_err(|e| anyhow::anyhow!("secrets.encryption_key is not valid: {e}"));
    }
    let path = &settings.secrets.key_file;
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read secrets.key_file {}", path.display()))?;
        return SecretKey::from_base64(text.trim())
            .map_err(|e| anyhow::anyhow!("secrets.key_file {} is not valid: {e}", path.display()));
    }
    if settings.mode == Mode::Production {
        bail!(
            "no encryption key: set secrets.encryption_key (CROSSLINK__SECRETS__ENCRYPTION_KEY, base64 of 32 random bytes) or point secrets.key_file at an existing key file; production mode never makes one"
        );
    }
    let key = SecretKey::generate();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    writeln!(file, "{}", key.to_base64())?;
    tracing::warn!(
        key_file = %path.display(),
        "created a new encryption key for stored secrets (development mode); keep this file: without it stored passwords cannot be read"
    );
    Ok(key)
}

/// What [`load_or_create`] would say, without creating anything
/// (`crosslink config check`): the key in force reads, or production has one.
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    let inline = settings.secrets.encryption_key.trim();
    let path = &settings.secrets.key_file;
    if !inline.is_empty() || path.exists() || settings.mode == Mode::Production {
        load_or_create(settings).map(drop)
    } else {
        Ok(())
    }
}
