//! Compiled modules on disk, so loading a module a second time (a restart, a rollback,
//! another partition) skips Cranelift: 57 ms for a small Rust guest, 12-15 s for Python.
//!
//! An artifact is named by the hash of the module's bytes and a fingerprint of the
//! engine's compilation settings, so a new wasmtime or a changed `Config` never loads a
//! stale artifact. Loading an artifact means trusting it as native code, so only files
//! this cache wrote are read, and the directory must be writable by Weir alone.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{EngineError, ModuleId};

#[derive(Debug)]
pub(crate) struct CompiledCache {
    dir: PathBuf,
    fingerprint: String,
}

impl CompiledCache {
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Cache {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let fingerprint = hex(&hasher.0.finalize()[..8]);
        Ok(Self {
            dir: dir.to_path_buf(),
            fingerprint,
        })
    }

    fn path(&self, id: &ModuleId) -> PathBuf {
        self.dir.join(format!("{id}-{}.cwasm", self.fingerprint))
    }

    /// The cached artifact for `id`, if there is a usable one; an unusable one is
    /// removed, to be compiled again.
    pub(crate) fn load(&self, engine: &wasmtime::Engine, id: &ModuleId) -> Option<Component> {
        let path = self.path(id);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Engine::precompile_component`
        // output, into a directory only Weir writes; wasmtime also checks that the
        // artifact matches this engine's version and settings before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "discarding an unusable compiled module; it will be recompiled");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Hold the compile lock of `id` until the returned guard drops: processes loading
    /// the same new module at once (partitions of several daemons, parallel tests) then
    /// compile it once, the others waiting and reading the artifact it stored. An
    /// interpreter component takes seconds to compile, so this saves whole cores. `None`
    /// when the lock file cannot be made: compiling without it is merely slower.
    pub(crate) fn lock(&self, id: &ModuleId) -> Option<CompileLock> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join(format!("{id}-{}.lock", self.fingerprint));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        // SAFETY: flock on a descriptor this function owns; released when it closes.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0;
        locked.then_some(CompileLock { _file: file })
    }

    /// Keep `artifact` for `id`. Written to a temporary file and renamed, so a crash
    /// never leaves a half-written artifact under the real name.
    pub(crate) fn store(&self, id: &ModuleId, artifact: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(artifact)?;
        tmp.persist(self.path(id)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// An exclusive lock on compiling one module, released on drop (the file closes).
pub(crate) struct CompileLock {
    _file: std::fs::File,
}

/// Feeds `Hash` output into SHA-256: `DefaultHasher` is not stable across Rust releases.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is used")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
