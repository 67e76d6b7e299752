//! The daemon as platform teams run it, against Apache Kafka: hot swaps under
//! load with the CLI, refused versions, automatic rollback, config reload, a stop in
//! mid-stream, the admin token, and `/metrics` checked by promtool.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weir_tests::daemon::{Daemon, PipelineSpec, admin_url, variant, version_headers, write_config};
use weir_tests::guest;
use weir_tests::wordcount::{
    Input, Setup, WAIT, assert_outputs_exact, committed_count, wait_for_outputs,
};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");
const TOKEN: &str = "test-token-of-daemon-ops";

/// Admin settings appended to a pipeline's config lines: a free port and a token.
fn admin(token: Option<&str>) -> String {
    let token = token
        .map(|t| format!("token = {t:?}\n"))
        .unwrap_or_default();
    format!("\n[admin]\nlisten = \"127.0.0.1:0\"\n{token}")
}

/// Dead letters, a trial of 20 records that a version fails above half of them
/// failing, and the admin API with the token.
fn trial_with_dead_letters(setup: &Setup) -> String {
    format!(
        "on_error = \"dead-letter\"\ndead_letter_topic = {:?}\n\
         rollback = {{ trial_records = 20, max_failure_rate = 0.5 }}\n{}",
        setup.topic("dead-letters"),
        admin(Some(TOKEN))
    )
}

/// `weir deploy wc MODULE` through `url` with the token; it must succeed.
fn deploy(url: &str, module: &Path) {
    let deployed = cli(
        url,
        Some(TOKEN),
        &["deploy", "wc", module.to_str().unwrap()],
    );
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
}

/// Run the `weir` CLI against `url` with `token`.
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(EXE);
    command
        .args(args)
        .env("WEIR_ADMIN_URL", url)
        .env_remove("WEIR_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("WEIR_ADMIN_TOKEN", token);
    }
    command.output().expect("run the weir CLI")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().expect("the admin API answers");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// `weir state get wc count/WORD --partition P` through `url`: the value it prints.
fn state_get(url: &str, word: &str, partition: i32) -> String {
    let read = cli(
        url,
        None,
        &[
            "state",
            "get",
            "wc",
            &format!("count/{word}"),
            "--partition",
            &partition.to_string(),
        ],
    );
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    String::from_utf8_lossy(&read.stdout).trim().to_owned()
}

/// Sum of a counter's samples in Prometheus text (every label set).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_swap_under_load_is_exact_and_switches_the_version() {
    let setup = Setup::new(EXE, 2, &["counts"]);
    let daemon = setup.start_with("a", &admin(Some(TOKEN)), None);
    daemon.wait_for("partition running", 2, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    let v2 = variant(&setup.module, setup.dir.path(), "v2");

    let mut input = setup.input();
    input.produce(2, 100);
    // v1 has visibly run before the deploy.
    setup.wait_for_counts(&input, &daemon);
    input.produce(2, 100);
    let deployed = cli(
        &url,
        Some(TOKEN),
        &["deploy", "wc", v2.to_str().unwrap(), "--user", "alice"],
    );
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(String::from_utf8_lossy(&deployed.stdout).contains("deployed wc v2"));
    // Keep records flowing while partitions switch at their checkpoints.
    for _ in 0..5 {
        input.produce(2, 40);
        std::thread::sleep(Duration::from_millis(150));
    }
    daemon.wait_for("switched module version", 2, WAIT);
    input.produce(2, 50);
    setup.wait_for_counts(&input, &daemon);

    // Totals exact, and the header switches from v1 to v2. Outputs are partitioned by
    // key, so an output partition interleaves both input partitions' outputs, which
    // switch at their own checkpoints: each output partition starts on v1 and, after
    // both input partitions switched, carries only v2.
    assert_outputs_exact(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        &input.expected,
    );
    for headers in version_headers(&setup.broker.bootstrap, &setup.topic("counts")) {
        let is = |h: &String, v: &str| h.starts_with(&format!("{v}-"));
        assert!(
            headers.first().is_some_and(|h| is(h, "v1"))
                && headers.last().is_some_and(|h| is(h, "v2"))
                && headers.iter().all(|h| is(h, "v1") || is(h, "v2")),
            "from v1 to v2: {headers:?}"
        );
    }

    let status = json(&cli(&url, None, &["status", "wc", "--json"]));
    assert_eq!(status["version"], 2);
    assert_eq!(status["state"], "running");
    let history = json(&cli(&url, None, &["history", "wc", "--json"]));
    let actions: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["action"].as_str().unwrap().to_owned(),
                e["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (1, "config".to_owned(), "config".to_owned()),
            (2, "deploy".to_owned(), "alice".to_owned())
        ]
    );

    // A state read reaches the partition that owns it.
    let (word, expected) = input.expected.state[&0].iter().next().unwrap();
    assert_eq!(state_get(&url, word, 0), expected.to_string());
    let missing = cli(
        &url,
        None,
        &["state", "get", "wc", "no-such-word", "--partition", "0"],
    );
    assert_eq!(missing.status.code(), Some(1));

    // Rollback on command: back to v1.
    let rolled = cli(&url, Some(TOKEN), &["rollback", "wc"]);
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    input.produce(2, 20);
    setup.wait_for_counts(&input, &daemon);
    assert_eq!(
        json(&cli(&url, None, &["status", "wc", "--json"]))["version"],
        1
    );

    // Metrics: promtool accepts them and they agree with what was sent.
    let (status, metrics) = http_get(&format!("{url}/metrics"));
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let sent: usize = input.next.values().sum();
    assert_eq!(
        metric_sum(&metrics, "weir_records_in_total"),
        sent as f64,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "weir_records_out_total"),
        input.expected.total_outputs() as f64
    );
    assert_eq!(metric_sum(&metrics, "weir_module_swaps_total"), 1.0);
    assert_eq!(metric_sum(&metrics, "weir_module_rollbacks_total"), 1.0);
    assert!(metrics.contains("weir_swap_pause_seconds_count"));
    assert!(metrics.contains("weir_consumer_lag{"));
    assert!(metrics.contains("weir_state_size_bytes{"));
    assert!(daemon.terminate().success());
}

#[test]
fn a_broken_version_is_refused_and_the_old_keeps_serving() {
    let setup = Setup::new(EXE, 1, &["counts"]);
    let daemon = setup.start_with("a", &admin(Some(TOKEN)), None);
    daemon.wait_for("partition running", 1, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    let mut input = setup.input();
    input.produce(1, 20);

    let garbage = setup.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a module").unwrap();
    let refused = cli(
        &url,
        Some(TOKEN),
        &["deploy", "wc", garbage.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(3), "module refused");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("cannot be loaded"), "{message}");

    // No token, a wrong token: refused, and nothing changed.
    let v2 = variant(&setup.module, setup.dir.path(), "v2");
    for token in [None, Some("wrong")] {
        let denied = cli(&url, token, &["deploy", "wc", v2.to_str().unwrap()]);
        assert_eq!(denied.status.code(), Some(6), "{token:?}");
    }
    let (status, _) = http_get(&format!("{url}/health"));
    assert_eq!(status, 200);

    input.produce(1, 20);
    setup.wait_for_counts(&input, &daemon);
    assert_eq!(
        json(&cli(&url, None, &["status", "wc", "--json"]))["version"],
        1
    );
    assert_eq!(
        json(&cli(&url, None, &["history", "wc", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");

    // Without a token configured, mutating calls are disabled, not open.
    let daemon = setup.start_with("b", &admin(None), None);
    let url = admin_url(&setup.data_dir("b"));
    let disabled = cli(&url, Some(TOKEN), &["rollback", "wc"]);
    assert_eq!(disabled.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&disabled.stderr).contains("disabled"));
    assert!(daemon.terminate().success());
}

#[test]
fn a_failing_version_is_rolled_back_automatically() {
    let setup = Setup::new(EXE, 1, &["counts", "dead-letters"]);
    let extra = trial_with_dead_letters(&setup);
    let daemon = setup.start_with("a", &extra, None);
    daemon.wait_for("partition running", 1, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    let mut input = setup.input();
    input.produce(1, 10);
    setup.wait_for_counts(&input, &daemon);

    // Paused, so the bad version's first batch holds every record sent meanwhile.
    assert!(cli(&url, Some(TOKEN), &["pause", "wc"]).status.success());
    daemon.wait_for("partition paused or resumed", 1, WAIT);
    // json-filter rejects every record that is not JSON: all of word count's input.
    let bad = guest("json-filter");
    deploy(&url, &bad);
    input.produce(1, 30);
    assert!(cli(&url, Some(TOKEN), &["resume", "wc"]).status.success());

    daemon.wait_for(
        "rolled back; partitions switch at their next checkpoint",
        1,
        WAIT,
    );
    input.produce(1, 10);
    setup.wait_for_counts(&input, &daemon);
    let history = json(&cli(&url, None, &["history", "wc", "--json"]));
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "auto-rollback");
    assert_eq!(last["version"], 1);
    assert!(
        last["reason"].as_str().unwrap().contains("failed"),
        "{last}"
    );
    assert!(daemon.terminate().success());

    // The failing interval was redone by v1: every record counted, none dead-lettered.
    setup.assert_exact(&input, "a");
    let dead = committed_count(&setup.broker.bootstrap, &setup.topic("dead-letters"));
    assert_eq!(dead, 0);
}

#[test]
fn a_rollback_before_the_first_checkpoint_redoes_the_interval_from_the_log_start() {
    // The group has committed no offset when the failing version's interval is
    // rewound: the rewind must go back to where processing began (the log start), not
    // leave the fetch past the records the failed version read.
    let setup = Setup::new(EXE, 1, &["counts", "dead-letters"]);
    let extra = trial_with_dead_letters(&setup);
    let daemon = setup.start_with("a", &extra, None);
    daemon.wait_for("partition running", 1, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    let bad = guest("json-filter");
    deploy(&url, &bad);
    daemon.wait_for("switched module version", 1, WAIT);

    let mut input = setup.input();
    input.produce(1, 30);
    daemon.wait_for(
        "rolled back; partitions switch at their next checkpoint",
        1,
        WAIT,
    );
    input.produce(1, 10);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");
    let dead = committed_count(&setup.broker.bootstrap, &setup.topic("dead-letters"));
    assert_eq!(
        dead, 0,
        "the failed version's dead letters were aborted with it"
    );
}

#[test]
fn a_config_reload_touches_only_the_changed_pipeline() {
    let setup = Setup::new(EXE, 1, &["counts", "text2", "counts2"]);
    let data = setup.data_dir("a");
    let module = setup.module.clone();
    let (text, text2) = ([setup.topic("text")], [setup.topic("text2")]);
    let text = text.each_ref().map(String::as_str);
    let text2 = text2.each_ref().map(String::as_str);
    let (counts, counts2) = (setup.topic("counts"), setup.topic("counts2"));
    let group_one = setup.group_line("one");
    let two_plain = setup.group_line("two");
    let two_batched = format!("{two_plain}batch_size = 7");
    let pipelines = |batched: bool| -> Vec<PipelineSpec<'_>> {
        vec![
            PipelineSpec {
                name: "one",
                module: &module,
                inputs: &text,
                output: &counts,
                extra: &group_one,
            },
            PipelineSpec {
                name: "two",
                module: &module,
                inputs: &text2,
                output: &counts2,
                extra: if batched { &two_batched } else { &two_plain },
            },
        ]
    };
    let config = write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &data,
        &pipelines(false),
    );
    let log = setup.dir.path().join("a.log");
    let daemon = Daemon::start(Path::new(EXE), &config, &log, None);
    daemon.wait_for("partition running", 2, WAIT);

    // An invalid config is refused whole; both keep running.
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        valid.replace(
            &format!("output = {counts2:?}"),
            &format!("output = {:?}", text2[0]),
        ),
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("config reload refused")
    {
        assert!(Instant::now() < deadline, "{}", daemon.tail());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Only `two` changes: it restarts, `one` keeps its partition.
    write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &data,
        &pipelines(true),
    );
    daemon.wait_for("config reload applied", 1, WAIT);
    daemon.wait_for("partition running", 3, WAIT);
    let assigned = |pipeline: &str| {
        daemon
            .events("partition assigned")
            .iter()
            .filter(|e| e["fields"]["pipeline"] == pipeline)
            .count()
    };
    assert_eq!(assigned("one"), 1, "{}", daemon.tail());
    assert_eq!(assigned("two"), 2, "{}", daemon.tail());

    // Both still count exactly.
    let mut one = setup.input();
    let mut two = Input::new(&setup.broker.bootstrap, &setup.topic("text2"));
    one.produce(1, 30);
    two.produce(1, 30);
    wait_for_outputs(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        one.expected.total_outputs(),
        Some(&daemon),
    );
    wait_for_outputs(
        &setup.broker.bootstrap,
        &setup.topic("counts2"),
        two.expected.total_outputs(),
        Some(&daemon),
    );
    // An identical config restarts nothing.
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + "\n").unwrap();
    daemon.wait_for("config reloaded: nothing changed", 1, WAIT);
    assert_eq!(assigned("two"), 2);
    assert!(daemon.terminate().success());
    assert_outputs_exact(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        &one.expected,
    );
    assert_outputs_exact(
        &setup.broker.bootstrap,
        &setup.topic("counts2"),
        &two.expected,
    );
}

#[test]
fn sigterm_mid_stream_stops_in_bounded_time_and_a_restart_is_exact() {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 4, WAIT);
    input.produce(4, 400);
    // Stop while the backlog is being worked through.
    daemon.wait_for("checkpoint committed", 4, WAIT);
    let stopping = Instant::now();
    assert!(daemon.terminate().success());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(30), "stopped in {took:?}");

    let daemon = setup.start("a", None);
    input.produce(4, 50);
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");
}

#[test]
fn a_state_read_through_either_instance_reaches_the_owner() {
    let setup = Setup::new(EXE, 4, &["counts"]);
    let mut input = setup.input();
    let (a, b) = setup.start_two(&mut input, 40);

    // Every partition's state answers through either instance: the one that does not
    // own it names the owner (421), and the CLI asks the owner.
    let urls = [
        admin_url(&setup.data_dir("a")),
        admin_url(&setup.data_dir("b")),
    ];
    let mut misdirected = 0;
    for partition in 0..4 {
        let (word, count) = input.expected.state[&partition].iter().next().unwrap();
        let path = format!("/v1/pipelines/wc/state?key=count/{word}&partition={partition}");
        let answers: Vec<(u16, String)> = urls
            .iter()
            .map(|url| http_get(&format!("{url}{path}")))
            .collect();
        let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        assert!(
            statuses.contains(&200) && statuses.contains(&421),
            "partition {partition}: {answers:?}"
        );
        for (url, (status, body)) in urls.iter().zip(&answers) {
            if *status == 421 {
                misdirected += 1;
                let body: serde_json::Value = serde_json::from_str(body).unwrap();
                let owner = body["owner"]["admin_url"].as_str().unwrap_or_default();
                assert!(urls.contains(&owner.to_owned()) && owner != url, "{body}");
            }
            assert_eq!(state_get(url, word, partition), count.to_string());
        }
    }
    assert_eq!(misdirected, 4);
    assert!(b.terminate().success());
    assert!(a.terminate().success());
}

#[test]
fn a_pause_outlives_a_restart() {
    let setup = Setup::new(EXE, 1, &["counts"]);
    let extra = admin(Some(TOKEN));
    let daemon = setup.start_with("a", &extra, None);
    daemon.wait_for("partition running", 1, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    assert!(cli(&url, Some(TOKEN), &["pause", "wc"]).status.success());
    daemon.wait_for("partition paused or resumed", 1, WAIT);
    assert!(daemon.terminate().success());
    assert!(
        !setup.data_dir("a").join("admin-url").exists(),
        "a stopped daemon leaves no admin-url behind"
    );
    let daemon = setup.start_with("a", &extra, None);
    // The log is appended to: the first run logged one pause already.
    daemon.wait_for("partition paused or resumed", 2, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    let status = json(&cli(&url, None, &["status", "wc", "--json"]));
    assert_eq!(status["state"], "paused");
    assert_eq!(status["partitions"][0]["phase"], "paused", "{status}");
    // Records sent while paused wait: nothing comes out until `weir resume`.
    let mut input = setup.input();
    input.produce(1, 20);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        weir_tests::wordcount::committed_outputs(&setup.broker.bootstrap, &setup.topic("counts"))
            .is_empty(),
        "a paused pipeline produced outputs:\n{}",
        daemon.tail()
    );
    assert!(cli(&url, Some(TOKEN), &["resume", "wc"]).status.success());
    setup.wait_for_counts(&input, &daemon);
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");
}

#[test]
fn a_read_token_guards_state_reads() {
    // With admin.read_token set, a state read needs it (or the admin token); status
    // and metrics stay open.
    const READ: &str = "read-token-of-daemon-ops";
    let setup = Setup::new(EXE, 1, &["counts"]);
    let extra = format!("{}read_token = {READ:?}\n", admin(Some(TOKEN)));
    let daemon = setup.start_with("a", &extra, None);
    let mut input = setup.input();
    input.produce(1, 10);
    setup.wait_for_counts(&input, &daemon);
    let url = admin_url(&setup.data_dir("a"));
    let (word, count) = input.expected.state[&0].iter().next().unwrap();
    let path = format!("{url}/v1/pipelines/wc/state?key=count/{word}&partition=0");

    let (status, body) = http_get(&path);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin.read_token"), "{body}");
    assert_eq!(http_get(&format!("{url}/v1/pipelines")).0, 200);
    let read = |token: (&str, &str)| {
        let mut command = Command::new(EXE);
        command
            .args([
                "state",
                "get",
                "wc",
                &format!("count/{word}"),
                "--partition",
                "0",
            ])
            .env("WEIR_ADMIN_URL", &url)
            .env_remove("WEIR_ADMIN_TOKEN")
            .env_remove("WEIR_READ_TOKEN")
            .env(token.0, token.1);
        command.output().expect("run the weir CLI")
    };
    for token in [("WEIR_READ_TOKEN", READ), ("WEIR_ADMIN_TOKEN", TOKEN)] {
        let output = read(token);
        assert!(output.status.success(), "{token:?}: {output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            count.to_string()
        );
    }
    let refused = read(("WEIR_READ_TOKEN", "wrong-token-of-sixteen"));
    assert!(!refused.status.success());
    assert!(daemon.terminate().success());
}

#[test]
fn the_admin_api_serves_tls_with_the_configured_certificate() {
    let setup = Setup::new(EXE, 1, &["counts"]);
    let (cert, key) = (
        setup.dir.path().join("cert.pem"),
        setup.dir.path().join("key.pem"),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=weir-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA's: webpki refuses a CA as the end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (scripts/setup.sh installs it)");
    assert!(made.status.success(), "{made:?}");
    let extra = format!(
        "{}tls_cert = {:?}\ntls_key = {:?}\n",
        admin(Some(TOKEN)),
        cert.display().to_string(),
        key.display().to_string()
    );
    let daemon = setup.start_with("a", &extra, None);
    daemon.wait_for("partition running", 1, WAIT);
    let url = admin_url(&setup.data_dir("a"));
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let status = |ca: Option<&Path>| {
        let mut command = Command::new(EXE);
        command
            .args(["status", "wc", "--json"])
            .env("WEIR_ADMIN_URL", &url)
            .env_remove("WEIR_ADMIN_CA");
        if let Some(ca) = ca {
            command.env("WEIR_ADMIN_CA", ca);
        }
        command.output().expect("run the weir CLI")
    };
    let trusted = status(Some(&cert));
    assert!(trusted.status.success(), "{trusted:?}");
    assert_eq!(json(&trusted)["state"], "running");
    // Without the certificate to trust, the CLI refuses the connection.
    let untrusted = status(None);
    assert!(!untrusted.status.success(), "{untrusted:?}");
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("cannot reach"),
        "{untrusted:?}"
    );
    // Plain HTTP gets no answer from a TLS port.
    let plain = url.replacen("https://", "http://", 1);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    assert!(agent.get(format!("{plain}/health")).call().is_err());
    assert!(daemon.terminate().success());
}

#[test]
fn callers_that_send_nothing_or_half_a_request_are_disconnected() {
    // Each such connection used to stay open for ever, holding one of the daemon's file
    // descriptors: half a request's headers until hyper's header timeout had a timer,
    // and silence (or a trickle of "PRI * HTTP/2" bytes) while the server detected the
    // protocol with no deadline at all. Now each is closed 10 s after the server began
    // waiting for headers, and a crowd of them past the connection limit only delays
    // other callers.
    use std::io::{Read, Write};
    let setup = Setup::new(EXE, 1, &["counts"]);
    let daemon = setup.start_with("a", &admin(Some(TOKEN)), None);
    let url = admin_url(&setup.data_dir("a"));
    let address = url.trim_start_matches("http://").to_owned();
    let connect = |first_bytes: &[u8]| {
        let mut stream = std::net::TcpStream::connect(&address).expect("connect to the admin API");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(first_bytes).unwrap();
        stream
    };
    let began = Instant::now();
    let callers = [
        connect(b""),
        connect(b"PRI * HTTP/2"),
        connect(b"GET /health HTTP/1.1\r\nHost: weir\r\n"),
    ];
    // More silent connections than the server serves at once.
    let crowd: Vec<_> = (0..150).map(|_| connect(b"")).collect();
    for mut caller in callers.into_iter().chain(crowd) {
        let mut answer = Vec::new();
        let read = caller.read_to_end(&mut answer);
        assert!(read.is_ok(), "the connection was not closed: {read:?}");
    }
    assert!(
        began.elapsed() < Duration::from_secs(40),
        "closed after {:?}",
        began.elapsed()
    );
    // The server itself goes on.
    assert_eq!(http_get(&format!("{url}/health")).0, 200);
    assert!(daemon.terminate().success());
}
