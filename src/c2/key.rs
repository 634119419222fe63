//! The pre-shared key file: 64 hex digits (32 bytes) and a newline, as `mpcomm c2 keygen` prints.

use anyhow::{bail, Context};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::auth::{fresh32, Key};

/// A new key as the file should contain it.
pub fn generate() -> String {
    let mut s = String::with_capacity(65);
    for b in fresh32() {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('\n');
    s
}

/// Read a key file; refuse it if anyone but its owner can read it. Files systemd hands over
/// with `LoadCredential=` (under `$CREDENTIALS_DIRECTORY`, a private ramfs) may be group-readable.
pub fn load(path: &Path) -> anyhow::Result<Key> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read key file {}: create one with `mpcomm c2 keygen > {0}` and `chmod 600 {0}`",
            path.display()
        )
    })?;
    let in_credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|d| in_credentials_dir(path, Path::new(&d)));
    let forbidden = if in_credentials { 0o007 } else { 0o077 };
    if meta.mode() & forbidden != 0 {
        bail!(
            "key file {} is readable by group or others (mode {:o}): run `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    parse(text.trim()).with_context(|| format!("key file {}", path.display()))
}

/// True when `path` really lies in the credentials directory: both resolved first, so
/// `$CREDENTIALS_DIRECTORY/../../etc/key` or a symlink out of it gets the strict check.
fn in_credentials_dir(path: &Path, dir: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(dir)) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    }
}

fn parse(hex: &str) -> anyhow::Result<Key> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a key is 64 hex digits (make one with `mpcomm c2 keygen`)");
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_loads_back_and_loose_permissions_are_refused() {
        let dir = std::env::temp_dir().join(format!("mpcomm-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let text = generate();
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = load(&path).unwrap();
        assert_eq!(parse(text.trim()).unwrap(), key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(load(&path).is_err());
        // Only what resolves into the credentials directory counts as in it.
        let creds = dir.join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("k"), &text).unwrap();
        assert!(in_credentials_dir(&creds.join("k"), &creds));
        assert!(in_credentials_dir(
            &creds.join(".").join("k"),
            &dir.join(".").join("creds")
        ));
        assert!(!in_credentials_dir(&creds.join("..").join("key"), &creds));
        std::os::unix::fs::symlink(&path, creds.join("link")).unwrap();
        assert!(!in_credentials_dir(&creds.join("link"), &creds));
        assert!(parse("abc").is_err());
        assert!(parse(&"g".repeat(64)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
