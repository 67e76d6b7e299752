//! `weir new`: scaffold a transform project in Rust, Python, JavaScript or C that builds
//! as it stands (`./build.sh`) and passes its own sample fixture with `weir test`.
//!
//! The templates live in `cli/new/` and are compiled into the binary, together with the
//! pieces a project outside this repository needs: the contract (`wit/transform.wit`),
//! the language's helper module (`sdk/python/weir.py`, `sdk/js/weir.js`) and the
//! language's build script (`scripts/build-guest-<lang>.sh`, which finds the contract and
//! helper in the project directory). Those are the repository's own files, included
//! here, so a scaffold never carries a stale second copy. A Rust project depends on the
//! Rust SDK by path, since weir-sdk is not published to a registry.

use std::borrow::Cow;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::Exit;

#[derive(Debug, clap::Args)]
pub(super) struct NewArgs {
    /// The project's directory, created; its last component names the project.
    name: PathBuf,

    /// The language to write the transform in.
    #[arg(long, value_enum)]
    lang: Lang,

    /// What the project starts from: `basic` (a stateful per-record transform) or
    /// `windowed` (a count per key in event-time windows, emitted when each closes;
    /// Rust only for now).
    #[arg(long, value_enum, default_value_t = Template::Basic)]
    template: Template,

    /// The Rust SDK (the sdk/ directory of a Weir checkout), for --lang rust
    /// [default: the one this weir was built from].
    #[arg(long, env = "WEIR_SDK_DIR", value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Template {
    Basic,
    Windowed,
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
enum NewError {
    #[error(
        "{name:?} cannot name a project: use lower-case letters, digits, '-' and '_', \
         starting with a letter, at most 64 characters"
    )]
    BadName { name: String },
    #[error("{} already exists and is not empty; pick another name or remove it", path.display())]
    Exists { path: PathBuf },
    #[error(
        "the Rust SDK is not at {}: pass --sdk-path with the sdk/ directory of a Weir \
         checkout (or set WEIR_SDK_DIR)",
        path.display()
    )]
    NoSdk { path: PathBuf },
    #[error(
        "the windowed template is Rust-only for now: use --lang rust, or the basic \
         template (Python's and JavaScript's SDKs have windows too: weir.Windows)"
    )]
    NoWindowedTemplate,
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NewError {
    fn exit(&self) -> Exit {
        match self {
            Self::Write { .. } => Exit::Failed,
            _ => Exit::Usage,
        }
    }
}

/// One file of a scaffold.
struct File {
    path: &'static str,
    contents: Cow<'static, str>,
    executable: bool,
}

impl File {
    fn new(path: &'static str, contents: &'static str) -> Self {
        Self {
            path,
            contents: Cow::Borrowed(contents),
            executable: false,
        }
    }

    fn executable(mut self) -> Self {
        self.executable = true;
        self
    }
}

/// The contract of C projects: 0.2, since the C SDK has no timers yet (Weir runs 0.2
/// components unchanged). Python and JavaScript projects get 0.3 (their SDKs have
/// timers and windows); Rust projects get theirs through the SDK.
const WIT: &str = include_str!("../../../wit/0.2/transform.wit");
const WIT_0_3: &str = include_str!("../../../wit/transform.wit");
const FIXTURE_INPUT: &str = include_str!("new/common/input.jsonl");
const FIXTURE_EXPECTED: &str = include_str!("new/common/expected.jsonl");
const WINDOWED_INPUT: &str = include_str!("new/windowed/input.jsonl");
const WINDOWED_EXPECTED: &str = include_str!("new/windowed/expected.jsonl");

/// The Rust SDK beside the sources this binary was built from.
fn built_in_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

pub(super) fn run(args: NewArgs) -> Exit {
    match create(&args) {
        Ok(dir) => {
            let name = project_name(&args.name).unwrap_or_default();
            println!(
                "created {dir}\n\nnext:\n  cd {dir}\n  ./build.sh\n  weir test {name}.wasm \
                 --input fixtures/input.jsonl --expect fixtures/expected.jsonl",
                dir = dir.display()
            );
            Exit::Success
        }
        Err(error) => {
            eprintln!("error: {error}");
            error.exit()
        }
    }
}

fn project_name(dir: &Path) -> Option<&str> {
    dir.file_name()?.to_str()
}

fn check_name(dir: &Path) -> Result<&str, NewError> {
    let bad = || NewError::BadName {
        name: dir.display().to_string(),
    };
    let name = project_name(dir).ok_or_else(bad)?;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid { Ok(name) } else { Err(bad()) }
}

fn create(args: &NewArgs) -> Result<&Path, NewError> {
    let name = check_name(&args.name)?;
    let dir = args.name.as_path();
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied || (dir.exists() && !dir.is_dir()) {
        return Err(NewError::Exists {
            path: dir.to_path_buf(),
        });
    }
    let files = files(args.lang, args.template, name, args.sdk_path.as_deref())?;
    for file in &files {
        write(&dir.join(file.path), &file.contents, file.executable)?;
    }
    Ok(dir)
}

fn write(path: &Path, contents: &str, executable: bool) -> Result<(), NewError> {
    let error = |source| NewError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    std::fs::write(path, contents).map_err(error)?;
    if executable {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(error)?;
    }
    Ok(())
}

/// The files of a `lang` project called `name`, placeholders filled in.
fn files(
    lang: Lang,
    template: Template,
    name: &str,
    sdk_path: Option<&Path>,
) -> Result<Vec<File>, NewError> {
    let windowed = template == Template::Windowed;
    if windowed && lang != Lang::Rust {
        return Err(NewError::NoWindowedTemplate);
    }
    let (input, expected) = if windowed {
        (WINDOWED_INPUT, WINDOWED_EXPECTED)
    } else {
        (FIXTURE_INPUT, FIXTURE_EXPECTED)
    };
    let mut files = vec![
        File::new("fixtures/input.jsonl", input),
        File::new("fixtures/expected.jsonl", expected),
        File::new("README.md", include_str!("new/common/README.md")),
        File::new(
            ".gitignore",
            "*.wasm\n*.wasm.inputs\n/target\n__pycache__/\n",
        ),
    ];
    match lang {
        Lang::Rust => {
            let sdk = sdk_path.map_or_else(built_in_sdk_path, Path::to_path_buf);
            let sdk = sdk
                .canonicalize()
                .ok()
                .filter(|p| p.join("Cargo.toml").is_file())
                .ok_or(NewError::NoSdk { path: sdk })?;
            let mut manifest = File::new("Cargo.toml", include_str!("new/rust/Cargo.toml"));
            manifest.contents = Cow::Owned(
                manifest
                    .contents
                    .replace("{{sdk_path}}", &sdk.display().to_string()),
            );
            files.extend([
                manifest,
                if windowed {
                    File::new("src/lib.rs", include_str!("new/rust-windowed/src/lib.rs"))
                } else {
                    File::new("src/lib.rs", include_str!("new/rust/src/lib.rs"))
                },
                File::new("build.sh", include_str!("new/rust/build.sh")).executable(),
                File::new(
                    ".cargo/config.toml",
                    include_str!("../../../guest-examples/.cargo/config.toml"),
                ),
            ]);
        }
        Lang::Python => files.extend([
            File::new("app.py", include_str!("new/python/app.py")),
            File::new("weir.py", include_str!("../../../sdk/python/weir.py")),
            File::new("wit/transform.wit", WIT_0_3),
            File::new(
                "build.sh",
                include_str!("../../../scripts/build-guest-python.sh"),
            )
            .executable(),
        ]),
        Lang::Js => files.extend([
            File::new("app.js", include_str!("new/js/app.js")),
            File::new("weir.js", include_str!("../../../sdk/js/weir.js")),
            File::new("wit/transform.wit", WIT_0_3),
            File::new(
                "build.sh",
                include_str!("../../../scripts/build-guest-js.sh"),
            )
            .executable(),
        ]),
        Lang::C => files.extend([
            File::new("app.c", include_str!("new/c/app.c")),
            File::new("weir.h", include_str!("../../../sdk/c/weir.h")),
            File::new("wit/transform.wit", WIT),
            File::new(
                "build.sh",
                include_str!("../../../scripts/build-guest-c.sh"),
            )
            .executable(),
        ]),
    }
    let lang_name = match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
        Lang::C => "C",
    };
    for file in &mut files {
        if file.contents.contains("{{") {
            file.contents = Cow::Owned(
                file.contents
                    .replace("{{name}}", name)
                    .replace("{{crate_name}}", &name.replace('-', "_"))
                    .replace("{{lang}}", lang_name),
            );
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name(Path::new("dir/my-transform_2")).is_ok());
        for bad in ["", "My", "1st", "a b", "x".repeat(65).as_str(), "é"] {
            let err = check_name(Path::new(bad)).unwrap_err();
            assert!(matches!(err, NewError::BadName { .. }), "{bad:?}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let sdk = built_in_sdk_path();
        let choices = Lang::value_variants()
            .iter()
            .map(|lang| (*lang, Template::Basic))
            .chain([(Lang::Rust, Template::Windowed)]);
        for (lang, template) in choices {
            for file in files(lang, template, "my-app", Some(sdk.as_path())).unwrap() {
                assert!(
                    !file.contents.contains("{{name}}")
                        && !file.contents.contains("{{crate_name}}")
                        && !file.contents.contains("{{sdk_path}}")
                        && !file.contents.contains("{{lang}}"),
                    "{lang:?} {}",
                    file.path
                );
            }
        }
    }

    #[test]
    fn an_occupied_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("taken");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("x"), "").unwrap();
        let args = NewArgs {
            name: project,
            lang: Lang::Python,
            template: Template::Basic,
            sdk_path: None,
        };
        assert!(matches!(create(&args), Err(NewError::Exists { .. })));
    }

    #[test]
    fn a_missing_rust_sdk_is_reported() {
        let err = files(
            Lang::Rust,
            Template::Basic,
            "x",
            Some(Path::new("/nonexistent/sdk")),
        )
        .err();
        assert!(matches!(err, Some(NewError::NoSdk { .. })), "{err:?}");
    }

    #[test]
    fn the_windowed_template_is_rust_only() {
        let err = files(Lang::C, Template::Windowed, "x", None).err();
        assert!(matches!(err, Some(NewError::NoWindowedTemplate)), "{err:?}");
    }
}
