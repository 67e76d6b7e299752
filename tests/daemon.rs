//! `weir serve` as a child process for end-to-end tests: configs written to a temp
//! directory, JSON logs captured to a file, SIGTERM for a graceful stop, SIGKILL or
//! armed failpoints for crashes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// One pipeline's settings for [`write_config`].
pub struct PipelineSpec<'a> {
    pub name: &'a str,
    pub module: &'a Path,
    pub inputs: &'a [&'a str],
    pub output: &'a str,
    /// Extra TOML lines inside the pipeline table.
    pub extra: &'a str,
}

/// The consumer group protocol the suites run under: `classic` unless
/// `WEIR_TEST_GROUP_PROTOCOL` names another (scripts/test.sh runs the Kafka suite under
/// `consumer` too).
pub fn group_protocol() -> String {
    std::env::var("WEIR_TEST_GROUP_PROTOCOL").unwrap_or_else(|_| "classic".to_owned())
}

/// Write a config for `pipelines` against `bootstrap` with its data in `data_dir`.
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    data_dir: &Path,
    pipelines: &[PipelineSpec<'_>],
) -> PathBuf {
    let protocol = group_protocol();
    // Short sessions, so a stopped or killed instance's partitions move within
    // seconds. Under KIP-848's protocol the broker sets them (scripts/kafka.sh).
    let session = if protocol == "classic" {
        "\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n"
    } else {
        ""
    };
    // Two processing threads whatever the machine's cores (the crash tests count
    // checkpoints per thread).
    let mut text = format!(
        "threads = 2\ndata_dir = {:?}\n\n[kafka]\nbrokers = {bootstrap:?}\ngroup_protocol = {protocol:?}\n\n\
         [kafka.consumer_properties]\n{session}",
        data_dir.display().to_string()
    );
    if !pipelines.iter().any(|p| p.extra.contains("[admin]")) {
        // Any free port: several instances run side by side in the tests.
        text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
    for p in pipelines {
        let inputs: Vec<String> = p.inputs.iter().map(|t| format!("{t:?}")).collect();
        text.push_str(&format!(
            "\n[pipelines.{}]\nmodule = {:?}\ninputs = [{}]\noutput = {:?}\n{}\n",
            p.name,
            p.module.display().to_string(),
            inputs.join(", "),
            p.output,
            p.extra
        ));
    }
    let path = dir.join(format!(
        "weir-{}.toml",
        data_dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// A running `weir serve`.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    /// Length of the log when this process started: the log is appended to by every
    /// process started on the same data directory.
    log_start: usize,
}

impl Daemon {
    /// Start `exe serve -c config`, with `failpoints` armed (see weir_runtime::failpoint).
    pub fn start(exe: &Path, config: &Path, log: &Path, failpoints: Option<&str>) -> Self {
        let mut command = Command::new(exe);
        command
            .args(["--log-format", "json", "serve", "-c"])
            .arg(config)
            .env(
                "WEIR_LOG",
                "info,librdkafka=warn,weir_runtime::pipeline::task=debug,weir_runtime::pipeline::thread=debug,weir_runtime::daemon::routing=debug",
            )
            .stdout(File::create(log.with_extension("out")).expect("stdout file"))
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("log file"),
            );
        if let Some(points) = failpoints {
            command.env("WEIR_FAILPOINTS", points);
        }
        let log_start = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
        let child = command.spawn().expect("weir serve starts");
        Self {
            child: Some(child),
            log: log.to_path_buf(),
            log_start,
        }
    }

    /// Log lines (JSON) whose message is `message`, in order.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }

    /// Wait until `count` events with `message` were logged.
    pub fn wait_for(&self, message: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.events(message).len() < count {
            if let Some(status) = self.exited() {
                panic!(
                    "weir exited ({status}) while waiting for {message:?}:\n{}",
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {count} x {message:?} within {timeout:?}:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Log lines (JSON) of this process (not of earlier ones on the same data
    /// directory) whose message is `message`, in order.
    pub fn own_events(&self, message: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.get(self.log_start..)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["fields"]["message"] == message)
            .collect()
    }

    /// Partitions this instance runs now: started minus released, by this process.
    pub fn running_partitions(&self) -> usize {
        self.own_events("partition running")
            .len()
            .saturating_sub(self.own_events("partition released").len())
    }

    /// Wait until `a` and `b` together run all `total` partitions, each some.
    pub fn wait_for_split(a: &Daemon, b: &Daemon, total: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (in_a, in_b) = (a.running_partitions(), b.running_partitions());
            if in_a > 0 && in_b > 0 && in_a + in_b == total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "partitions not split: a runs {in_a}, b runs {in_b}:\n{}\n{}",
                a.tail(),
                b.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        // try_wait needs &mut; a cheap /proc check keeps this usable through &self.
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        match stat {
            Some(stat) if !stat.contains(") Z ") => None,
            _ => Some(ExitStatus::default()),
        }
    }

    /// The last lines of the log, for failure messages: Weir's own events, since a
    /// broker that is down makes the Kafka clients repeat one connection error many
    /// times a second and would push everything else out of view.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (clients, own): (Vec<&str>, Vec<&str>) = text.lines().partition(|line| {
            line.contains(r#""target":"librdkafka""#)
                || line.contains(r#""message":"Kafka producer error""#)
                || line.contains(r#""message":"Kafka consumer error""#)
        });
        let mut tail = own[own.len().saturating_sub(30)..].join("\n");
        if let Some(last) = clients.last() {
            tail.push_str(&format!(
                "\n({} Kafka client error lines left out; the last: {last})",
                clients.len()
            ));
        }
        tail
    }

    /// SIGTERM, then wait for the exit (at most 60 s).
    pub fn terminate(mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        // SAFETY: kill has no preconditions; the pid is our child's.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        self.wait(Duration::from_secs(60))
    }

    /// SIGSTOP: the process stands still (heartbeats included) until [`Daemon::resume`].
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Daemon::freeze`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill has no preconditions; the pid is our child's.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }

    /// Wait until the process dies of SIGKILL at the failpoint in `points` (armed at
    /// start), and check it was that failpoint, not anything else.
    pub fn assert_killed_at(&mut self, points: &str) {
        use std::os::unix::process::ExitStatusExt;
        let status = self.wait(Duration::from_secs(120));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "weir should have died at {points}:\n{}",
            self.tail()
        );
        let point = points.split('=').next().unwrap_or_default();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let reached = text
            .get(self.log_start..)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["fields"]["message"] == "failpoint reached: killing the process")
            .filter(|e| e["fields"]["point"] == point)
            .count();
        assert_eq!(reached, 1, "{}", self.tail());
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Wait for the process to exit on its own (a failpoint fired).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for weir") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("weir did not exit within {timeout:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The admin URL a daemon with data directory `data` wrote (waits for the file).
pub fn admin_url(data: &Path) -> String {
    let file = data.join("admin-url");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // The daemon writes the file whole (by a rename); empty would mean not yet.
        match std::fs::read_to_string(&file) {
            Ok(url) if !url.trim().is_empty() => return url.trim().to_owned(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same transform with another content hash: a custom section appended to the
/// component (custom sections are allowed anywhere and change no behaviour).
pub fn variant(module: &Path, dir: &Path, tag: &str) -> PathBuf {
    let mut wasm = std::fs::read(module).unwrap();
    let mut payload = vec![tag.len() as u8];
    payload.extend_from_slice(tag.as_bytes());
    payload.extend_from_slice(b"variant");
    wasm.push(0);
    wasm.push(payload.len() as u8);
    wasm.extend_from_slice(&payload);
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

/// The `weir.module` header of every committed output, per partition in offset order.
pub fn version_headers(bootstrap: &str, topic: &str) -> Vec<Vec<String>> {
    crate::kafka_raw::read_topic(bootstrap, topic)
        .unwrap()
        .into_iter()
        .map(|log| {
            log.committed
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .find(|(k, _)| k == "weir.module")
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}
