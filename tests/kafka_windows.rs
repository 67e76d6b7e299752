//! Event time under `weir serve` on Apache Kafka: a windowed count killed with SIGKILL
//! again and again emits every window exactly once with its right count, its
//! watermark shows in the status, a hot swap keeps the open windows, and a
//! processing-time timer fires on a partition that receives nothing more.

use std::process::Command;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_tests::broker::send_waiting;
use weir_tests::daemon::{Daemon, admin_url, variant, version_headers};
use weir_tests::windows::{closed_window, reference};
use weir_tests::wordcount::{Setup, WAIT, read_committed, wait_until};
use weir_tests::{Dice, guest};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// 10 s windows with a 1 s grace, records up to 2 s out of order.
const WINDOW_MS: i64 = 10_000;
const GRACE_MS: i64 = 1_000;
const OUT_OF_ORDERNESS_MS: i64 = 2_000;

fn event_time_lines() -> String {
    format!(
        "max_out_of_orderness_ms = {OUT_OF_ORDERNESS_MS}\n\
         [pipelines.wc.config]\nwindow_ms = \"{WINDOW_MS}\"\ngrace_ms = \"{GRACE_MS}\"\n"
    )
}

fn producer(setup: &Setup) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.broker.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("a producer")
}

/// Send `records` (key, timestamp) with value "click" to `topic`'s partition 0.
fn send(producer: &BaseProducer, topic: &str, records: &[(String, i64)]) {
    for (key, timestamp) in records {
        let record = BaseRecord::<str, str>::to(topic)
            .partition(0)
            .key(key.as_str())
            .payload("click")
            .timestamp(*timestamp);
        send_waiting(producer, record);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("inputs acknowledged");
}

/// The committed outputs of `topic`, as closed windows, in order.
fn windows(setup: &Setup, topic: &str) -> Vec<(String, i64, u64)> {
    read_committed(&setup.broker.bootstrap, topic)
        .into_iter()
        .map(|(key, value)| closed_window(&key.unwrap_or_default(), &value.unwrap_or_default()))
        .collect()
}

/// Wait for `expected.len()` windows in `output`, then check they are `expected`.
fn assert_windows(setup: &Setup, output: &str, expected: &[(String, i64, u64)], daemon: &Daemon) {
    wait_until(
        || windows(setup, output).len() >= expected.len(),
        || {
            format!(
                "{} of {} windows emitted\n{}",
                windows(setup, output).len(),
                expected.len(),
                daemon.tail()
            )
        },
    );
    assert_eq!(windows(setup, output), expected);
}

#[test]
fn every_window_is_emitted_once_with_its_count_across_sigkills() {
    let mut setup = Setup::new(EXE, 1, &["counts"]);
    setup.module = guest("tumbling-count");
    let input = setup.topic("text");
    let output = setup.topic("counts");
    let producer = producer(&setup);

    // 1,200 clicks 100 ms apart (two minutes of event time, twelve windows), some up
    // to 1.5 s behind (on time), a few 30 s behind (late).
    let base = 1_700_000_000_000_i64;
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let mut roll = |n: u64| dice.below(n);
    let records: Vec<(String, i64)> = (0..1_200)
        .map(|i| {
            let behind = match roll(50) {
                0 => 30_000,
                1..=9 => roll(1_500) as i64,
                _ => 0,
            };
            (format!("k{}", roll(5)), base + i * 100 - behind)
        })
        .collect();
    let expected = reference(&records, WINDOW_MS, GRACE_MS, OUT_OF_ORDERNESS_MS);
    assert!(expected.len() >= 50, "{} windows", expected.len());

    let lines = event_time_lines();
    let mut daemon = setup.start_with("a", &lines, None);
    daemon.wait_for("partition running", 1, WAIT);
    for (round, chunk) in records.chunks(200).enumerate() {
        send(&producer, &input, chunk);
        // Kill the daemon wherever it is: at once in the first round (records
        // arriving, maybe none processed yet), later in mid-stream or past a checkpoint.
        std::thread::sleep(Duration::from_millis(roll(150 * round as u64 + 1)));
        daemon.kill();
        daemon = setup.start_with("a", &lines, None);
        daemon.wait_for("partition running", 1, WAIT);
    }
    assert_windows(&setup, &output, &expected, &daemon);

    // The watermark is in the status: the newest timestamp less the allowance.
    let newest = records.iter().map(|(_, t)| *t).max().unwrap();
    let status = Command::new(EXE)
        .args(["status", "wc", "--json"])
        .env("WEIR_ADMIN_URL", admin_url(&setup.data_dir("a")))
        .output()
        .expect("run weir status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["partitions"][0]["watermark"].as_i64(),
        Some(newest - OUT_OF_ORDERNESS_MS),
        "{status}"
    );
    assert!(
        status["partitions"][0]["watermark_lag_ms"]
            .as_i64()
            .is_some()
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_hot_swap_keeps_the_open_windows() {
    const TOKEN: &str = "token-of-the-window-swap";
    let mut setup = Setup::new(EXE, 1, &["counts"]);
    setup.module = guest("tumbling-count");
    let input = setup.topic("text");
    let output = setup.topic("counts");
    let producer = producer(&setup);

    // 400 clicks 100 ms apart (four windows), a tenth up to 1.5 s behind.
    let base = 1_700_000_000_000_i64;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let records: Vec<(String, i64)> = (0..400)
        .map(|i| {
            let behind = if dice.below(10) == 0 {
                dice.below(1_500) as i64
            } else {
                0
            };
            (format!("k{}", dice.below(3)), base + i * 100 - behind)
        })
        .collect();
    let expected = reference(&records, WINDOW_MS, GRACE_MS, OUT_OF_ORDERNESS_MS);
    let (before, after) = records.split_at(250);

    let lines = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {TOKEN:?}\n",
        event_time_lines()
    );
    let daemon = setup.start_with("a", &lines, None);
    daemon.wait_for("partition running", 1, WAIT);
    send(&producer, &input, before);
    // v1 closed the first windows: the one with the last records sent is open.
    wait_until(
        || windows(&setup, &output).len() >= 3,
        || format!("v1 closed no windows\n{}", daemon.tail()),
    );
    let v2 = variant(&setup.module, setup.dir.path(), "v2");
    let deployed = Command::new(EXE)
        .args(["deploy", "wc", v2.to_str().unwrap()])
        .env("WEIR_ADMIN_URL", admin_url(&setup.data_dir("a")))
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run weir deploy");
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    daemon.wait_for("switched module version", 1, WAIT);
    send(&producer, &input, after);
    // Every count exact: the windows open at the swap kept what v1 had counted.
    assert_windows(&setup, &output, &expected, &daemon);
    let spanning: Vec<_> = expected
        .iter()
        .enumerate()
        .filter(|(_, (key, start, _))| {
            let has = |part: &[(String, i64)]| {
                part.iter()
                    .any(|(k, t)| k == key && (*start..start + WINDOW_MS).contains(t))
            };
            has(before) && has(after)
        })
        .collect();
    assert!(
        !spanning.is_empty(),
        "windows with records from both sides of the swap"
    );
    let headers = version_headers(&setup.broker.bootstrap, &output).concat();
    for (index, window) in spanning {
        assert!(
            headers[index].starts_with("v2-"),
            "{window:?} closed by {}",
            headers[index]
        );
    }
    assert!(daemon.terminate().success());
}

#[test]
fn a_processing_time_timer_fires_on_a_partition_that_receives_nothing_more() {
    let mut setup = Setup::new(EXE, 1, &["counts"]);
    setup.module = guest("misbehave");
    let producer = producer(&setup);
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", 1, WAIT);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let command = format!("ptimer:{}:later", now + 2_000);
    let input = setup.topic("text");
    let record = BaseRecord::<str, str>::to(&input)
        .partition(0)
        .payload(&command);
    send_waiting(&producer, record);
    producer.flush(Duration::from_secs(30)).unwrap();
    let output = setup.topic("counts");
    let fired = || {
        read_committed(&setup.broker.bootstrap, &output)
            .iter()
            .any(|(key, _)| key.as_deref() == Some(b"fired"))
    };
    wait_until(fired, || format!("no timer fired\n{}", daemon.tail()));
    assert!(daemon.terminate().success());
}
