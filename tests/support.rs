//! Helpers shared by the integration tests and the benchmarks: building the guest
//! examples, finding fixtures, and one engine per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

use weir_runtime::engine::{Engine, EngineConfig, Limits};

pub mod broker;
pub mod daemon;
pub mod kafka_raw;
pub mod languages;
pub mod windows;
pub mod wordcount;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file under `guest-examples/fixtures/`.
pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("guest-examples/fixtures").join(path)
}

/// The Cargo target directory the tests were built in.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // <target>/<profile>/deps/<test>
    exe.ancestors()
        .nth(3)
        .expect("test executables live in <target>/<profile>/deps")
        .to_path_buf()
}

/// Where guest components are built: a target directory of their own beside the
/// host's, so building them never waits on the lock of the build running the tests.
pub fn guest_target_dir() -> PathBuf {
    target_dir().join("guests")
}

/// A compiled-module cache shared by every test process: modules compile once per
/// build, not once per test. Safe to share: artifacts are named by module hash and
/// engine settings, and written atomically.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("weir-test-compiled")
}

/// Run the `weir` binary `exe` with `args` as a user runs it, with the shared
/// compiled-module cache and info logs.
pub fn run_weir(exe: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    Command::new(exe)
        .args(args.iter().map(|a| a.as_ref()))
        .env("WEIR_CACHE_DIR", shared_cache_dir())
        .env("WEIR_LOG", "info")
        .output()
        .expect("weir runs")
}

/// `weir test MODULE --input INPUT EXTRA...` with [`run_weir`].
pub fn run_weir_test(
    exe: &str,
    module: &Path,
    input: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> std::process::Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"test", &module, &"--input", &input];
    args.extend_from_slice(extra);
    run_weir(exe, &args)
}

/// A process's stderr as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The component of the Rust guest example `name` (e.g. "word-count"), built once
/// per process with `cargo build --release --target wasm32-wasip2`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build_guests)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(format!("weir_example_{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "no guest example named {name} at {}",
        path.display()
    );
    path
}

fn build_guests() -> Result<PathBuf, String> {
    let target_dir = guest_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root().join("guest-examples"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .map_err(|e| format!("cannot run cargo to build the guest examples: {e}"))?;
    if !status.success() {
        return Err("building the guest examples failed (see above). Is the wasm32-wasip2 target installed? \
                    `rustup target add wasm32-wasip2`, or run scripts/test.sh, which sets everything up"
            .into());
    }
    Ok(target_dir.join("wasm32-wasip2/release"))
}

/// Every way the `misbehave` guest fails a record, as the commands it takes: an endless
/// loop, a memory bomb, a panic, deep recursion, a 60 s sleep, a 40 MiB state bomb, a
/// 5 MB output, a log flood, and a write into `changelog` (another pipeline's). The
/// hostile suite and the neighbour bench feed them beside a healthy pipeline.
pub fn hostile_commands(changelog: &str) -> [String; 9] {
    [
        "loop".to_owned(),
        "alloc".to_owned(),
        "panic".to_owned(),
        "recurse".to_owned(),
        "sleep:60000".to_owned(),
        "state-bomb:40".to_owned(),
        "send-bytes:5000000".to_owned(),
        "log-flood:2000".to_owned(),
        format!("send-to:{changelog}"),
    ]
}

/// Limits that make the limit tests quick: a 500 ms call timeout, 64 MiB of memory.
pub fn test_limits() -> Limits {
    Limits {
        call_timeout_ms: 500,
        memory_limit_bytes: 64 << 20,
        ..Limits::default()
    }
}

/// One engine per test process, as in the daemon.
pub fn engine() -> &'static Engine {
    static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
        Engine::new(EngineConfig {
            limits: test_limits(),
            cache_dir: Some(shared_cache_dir()),
        })
        .expect("engine starts")
    });
    &ENGINE
}

/// A transform compiled natively, run through the same host path as a Wasm instance:
/// the same batch runner, write buffer and state store. Records are copied in and
/// outputs copied out, as the Wasm boundary does, so comparing the two isolates
/// what Wasm itself costs.
pub mod native {
    use weir_runtime::engine::{Header, InputRecord, OutputRecord};
    use weir_runtime::pipeline::{ProcessError, Processor};
    use weir_runtime::state::PartitionState;
    use weir_sdk::{Config, StateBackend, Transform};

    pub struct NativeProcessor<T> {
        transform: T,
        state: PartitionState,
    }

    impl<T: Transform> NativeProcessor<T> {
        pub fn new(config: &[(&str, &str)], state: PartitionState) -> Self {
            let config: Config = config.iter().copied().collect();
            let transform = T::init(&config).unwrap_or_else(|e| panic!("init failed: {e}"));
            Self { transform, state }
        }
    }

    impl<T: Transform> Processor for NativeProcessor<T> {
        fn process(&mut self, records: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError> {
            // One topic string per run of records, as the Wasm SDK shares it per batch.
            let mut topic: std::sync::Arc<str> = std::sync::Arc::from("");
            let records = records
                .iter()
                .map(|r| {
                    if *topic != *r.topic {
                        topic = r.topic.as_str().into();
                    }
                    to_sdk(r, topic.clone())
                })
                .collect();
            match weir_sdk::run_batch(&mut self.transform, records, &mut Backend(&mut self.state)) {
                Ok(outputs) => Ok(outputs.into_iter().map(from_sdk).collect()),
                Err(e) => Err(ProcessError::Rejected {
                    index: e.index as usize,
                    message: e.message,
                }),
            }
        }

        fn state(&mut self) -> &mut PartitionState {
            &mut self.state
        }
    }

    struct Backend<'a>(&'a mut PartitionState);

    impl StateBackend for Backend<'_> {
        fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.get(key).expect("state read")
        }

        fn put(&mut self, key: &[u8], value: &[u8]) {
            self.0.put(key.to_vec(), value.to_vec());
        }

        fn delete(&mut self, key: &[u8]) {
            self.0.delete(key.to_vec());
        }

        fn scan(
            &mut self,
            prefix: &[u8],
            start_after: Option<&[u8]>,
            limit: u32,
        ) -> Vec<(Vec<u8>, Vec<u8>)> {
            let entries = self
                .0
                .scan(prefix, start_after, limit as usize)
                .expect("state scan");
            entries.into_iter().map(|e| (e.key, e.value)).collect()
        }

        /// Read as the host reads them, from the rows it keeps.
        fn table_get(&mut self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
            let row = weir_runtime::table::keys::row_key(table, key);
            self.0.get(&row).expect("state read")
        }

        fn table_scan(
            &mut self,
            table: &str,
            prefix: &[u8],
            start_after: Option<&[u8]>,
            limit: u32,
        ) -> Vec<(Vec<u8>, Vec<u8>)> {
            let rows = weir_runtime::table::keys::rows_prefix(table);
            let within = |key: &[u8]| [&rows[..], key].concat();
            let entries = self
                .0
                .scan(
                    &within(prefix),
                    start_after.map(within).as_deref(),
                    limit as usize,
                )
                .expect("state scan");
            entries
                .into_iter()
                .map(|e| (e.key[rows.len()..].to_vec(), e.value))
                .collect()
        }

        /// Kept as the host keeps them (the native processor fires none).
        fn set_timer(&mut self, timer: &weir_sdk::Timer) {
            self.0.put(host_timer(timer).state_key(), Vec::new());
        }

        fn delete_timer(&mut self, timer: &weir_sdk::Timer) {
            self.0.delete(host_timer(timer).state_key());
        }
    }

    fn host_timer(timer: &weir_sdk::Timer) -> weir_runtime::time::Timer {
        let domain = match timer.domain {
            weir_sdk::TimeDomain::EventTime => weir_runtime::time::TimeDomain::Event,
            weir_sdk::TimeDomain::ProcessingTime => weir_runtime::time::TimeDomain::Processing,
        };
        weir_runtime::time::Timer::new(domain, timer.at, timer.key.clone())
    }

    fn to_sdk(r: &InputRecord, topic: std::sync::Arc<str>) -> weir_sdk::Record {
        weir_sdk::Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|h| weir_sdk::Header {
                    key: h.key.clone(),
                    value: h.value.clone(),
                })
                .collect(),
            timestamp: r.timestamp,
            topic,
            partition: r.partition,
            offset: r.offset,
        }
    }

    fn from_sdk(o: weir_sdk::Output) -> OutputRecord {
        OutputRecord {
            key: o.key,
            value: o.value,
            headers: o
                .headers
                .into_iter()
                .map(|h| Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
            topic: o.topic,
            timestamp: o.timestamp,
        }
    }
}

/// A small deterministic generator (xorshift), so a failing run can be repeated.
pub struct Dice(pub u64);

impl Dice {
    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
