//! The module registry in the data directory: every module version a pipeline has run,
//! stored by content hash, their compiled artifacts, and each pipeline's deployment
//! history. It survives restarts, so a daemon comes back on the version it last ran.
//!
//! ```text
//! <data_dir>/registry/
//!   modules/<sha256>.wasm          every uploaded or configured module, once
//!   compiled/                      the engine's compiled-artifact cache
//!   history/<pipeline>.jsonl       one deployment event per line, append-only
//!   paused/<pipeline>              present while an operator has the pipeline paused
//! ```
//!
//! What the history means (current version, rollback target, what to run at start) is
//! pure logic in [`history`].

pub mod history;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use history::{Action, Event};

use crate::engine::ModuleId;

/// The registry could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("module registry: cannot {doing} {}: {source}", path.display())]
pub struct RegistryError {
    doing: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl RegistryError {
    fn new(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self {
            doing,
            path,
            source,
        }
    }
}

/// The registry under one data directory.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// Open (creating when missing) the registry in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        let root = data_dir.join("registry");
        for dir in ["modules", "compiled", "history", "paused"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(RegistryError::new("create", &path))?;
        }
        Ok(Self { root })
    }

    /// Where compiled artifacts are cached.
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    fn module_path(&self, id: &ModuleId) -> PathBuf {
        self.root.join("modules").join(format!("{id}.wasm"))
    }

    fn history_path(&self, pipeline: &str) -> PathBuf {
        self.root.join("history").join(format!("{pipeline}.jsonl"))
    }

    fn paused_path(&self, pipeline: &str) -> PathBuf {
        self.root.join("paused").join(pipeline)
    }

    /// Whether an operator paused `pipeline` (and has not resumed it since). A pause
    /// outlives restarts: a daemon restarted during an incident must not quietly
    /// resume what someone stopped on purpose.
    pub fn is_paused(&self, pipeline: &str) -> bool {
        let path = self.paused_path(pipeline);
        path.try_exists().unwrap_or_else(|error| {
            // Unreadable: paused is the safe reading (nothing runs that was stopped).
            tracing::warn!(file = %path.display(), %error, "cannot tell whether the pipeline is paused; keeping it paused");
            true
        })
    }

    /// Record that `pipeline` is paused, or no longer is.
    pub fn set_paused(&self, pipeline: &str, paused: bool) -> Result<(), RegistryError> {
        let path = self.paused_path(pipeline);
        let result = if paused {
            File::create(&path).and_then(|file| file.sync_all())
        } else {
            match fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                other => other,
            }
        };
        // The directory entry too, or a crash could forget the change.
        result
            .and_then(|()| File::open(self.root.join("paused"))?.sync_all())
            .map_err(RegistryError::new("record the pause in", &path))
    }

    /// Keep `wasm` under its hash (a no-op when it is already there).
    pub fn put_module(&self, wasm: &[u8]) -> Result<ModuleId, RegistryError> {
        let id = ModuleId::of(wasm);
        let path = self.module_path(&id);
        if path.is_file() {
            return Ok(id);
        }
        // Write then rename, so a crash never leaves a truncated module under a hash.
        let partial = path.with_extension("wasm.partial");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&partial)?;
            file.write_all(wasm)?;
            file.sync_all()?;
            fs::rename(&partial, &path)
        };
        write().map_err(RegistryError::new("write", &path))?;
        Ok(id)
    }

    /// The bytes of a stored module.
    pub fn module(&self, id: &ModuleId) -> Result<Vec<u8>, RegistryError> {
        let path = self.module_path(id);
        fs::read(&path).map_err(RegistryError::new("read", &path))
    }

    /// Every deployment event of `pipeline`, oldest first. A line torn by a crash
    /// during its append (always the last one) is skipped.
    pub fn history(&self, pipeline: &str) -> Result<Vec<Event>, RegistryError> {
        let path = self.history_path(pipeline);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::new("read", &path)(e)),
        };
        let mut events = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(RegistryError::new("read", &path))?;
            match serde_json::from_str(&line) {
                Ok(event) => events.push(event),
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error, "skipping an unreadable history line");
                }
            }
        }
        Ok(events)
    }

    /// Append one event to `pipeline`'s history, durably.
    pub fn append(&self, pipeline: &str, event: &Event) -> Result<(), RegistryError> {
        let path = self.history_path(pipeline);
        let mut line = serde_json::to_vec(event).expect("an event serializes");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(RegistryError::new("open", &path))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(RegistryError::new("append to", &path))
    }
}

/// Now, as the history writes it.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u32, action: Action, hash: &str) -> Event {
        Event {
            version,
            action,
            hash: hash.to_owned(),
            size: 4,
            at: timestamp(),
            by: "test".to_owned(),
            reason: None,
        }
    }

    #[test]
    fn modules_and_history_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let id = registry.put_module(b"\0asm-one").unwrap();
        assert_eq!(registry.put_module(b"\0asm-one").unwrap(), id);
        registry
            .append("wc", &event(1, Action::Config, &id.to_string()))
            .unwrap();
        registry
            .append("wc", &event(2, Action::Deploy, "other"))
            .unwrap();

        let reopened = Registry::open(dir.path()).unwrap();
        assert_eq!(reopened.module(&id).unwrap(), b"\0asm-one");
        let history = reopened.history("wc").unwrap();
        assert_eq!(
            history.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(reopened.history("other").unwrap().is_empty());
    }

    #[test]
    fn a_pause_is_remembered_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        assert!(!registry.is_paused("wc"));
        registry.set_paused("wc", true).unwrap();
        assert!(Registry::open(dir.path()).unwrap().is_paused("wc"));
        assert!(!registry.is_paused("other"));
        registry.set_paused("wc", false).unwrap();
        registry.set_paused("wc", false).unwrap();
        assert!(!registry.is_paused("wc"));
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        registry
            .append("wc", &event(1, Action::Config, "a"))
            .unwrap();
        let path = registry.history_path("wc");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"version\":2,\"act").unwrap();
        assert_eq!(registry.history("wc").unwrap().len(), 1);
    }
}
