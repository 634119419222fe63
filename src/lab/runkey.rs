//! One key per lab run: written to a private file (mode 600, in the lab's own temporary
//! directory) that the peers read with `--run-key-file`, so it never appears on a command
//! line; removed when the run ends (and with the directory, if the lab was killed).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct RunKeyFile(PathBuf);

impl RunKeyFile {
    pub fn create(dir: &Path, run_id: u64) -> std::io::Result<RunKeyFile> {
        let path = dir.join(format!("run-{run_id:016x}.key"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(crate::c2::key::generate().as_bytes())?;
        f.sync_all()?;
        Ok(RunKeyFile(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunKeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
