//! Guest examples in Python, JavaScript and C, built with the repository's build
//! scripts (`scripts/build-guest-<lang>.sh`), which install each toolchain from the
//! registries on first use and rebuild a component only when its sources changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::repo_root;

/// A guest language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Python,
    Js,
    C,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Python, Lang::Js, Lang::C];

    /// The name used in paths and `weir new --lang`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    /// The build script for this language.
    pub fn build_script(self) -> PathBuf {
        repo_root().join(format!("scripts/build-guest-{}.sh", self.name()))
    }
}

/// The component of the example `guest-examples/<lang>/<name>`, built once per process
/// into the guests' target directory.
pub fn lang_guest(lang: Lang, name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(Lang, String), PathBuf>>> = Mutex::new(None);
    // Held across the build: two tests asking for one guest must not build it twice
    // into the same file.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(&(lang, name.to_owned())) {
        return path.clone();
    }
    let source = repo_root()
        .join("guest-examples")
        .join(lang.name())
        .join(name);
    assert!(
        source.is_dir(),
        "no {} guest example named {name}",
        lang.name()
    );
    let out = crate::guest_target_dir()
        .join(lang.name())
        .join(format!("{name}.wasm"));
    run_build(lang, &source, &out);
    built.insert((lang, name.to_owned()), out.clone());
    out
}

/// Build the project in `source` into `out` with the language's build script.
fn run_build(lang: Lang, source: &std::path::Path, out: &std::path::Path) {
    let script = lang.build_script();
    let status = Command::new(&script)
        .arg(source)
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "building {} with {} failed (see above). The script installs its toolchain \
         (componentize-py, componentize-js, or clang + wasi-libc + wit-bindgen + \
         wasm-tools) when missing; scripts/test.sh runs scripts/setup.sh first, which \
         installs the system packages",
        source.display(),
        script.display()
    );
}
