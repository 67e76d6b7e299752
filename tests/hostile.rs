//! Hostile guests under `weir serve` on Apache Kafka: each is contained, with an error
//! that names the limit it hit and the setting that moves it, and no data is lost.

use std::time::Duration;

use rdkafka::producer::Producer;

use weir_tests::daemon::{Daemon, PipelineSpec, write_config};
use weir_tests::guest;
use weir_tests::kafka_raw::{self, CommittedRecord};
use weir_tests::wordcount::{Setup, WAIT, committed_count, wait_until};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");

/// Every committed record of `topic`, from the raw log.
fn committed(setup: &Setup, topic: &str) -> Vec<CommittedRecord> {
    kafka_raw::read_topic(&setup.broker.bootstrap, topic)
        .unwrap()
        .into_iter()
        .flat_map(|log| log.committed)
        .collect()
}

/// A test of the `misbehave` guest as pipeline `wc` from `text` to `counts`, with
/// `topics` besides, running with the lines `extra` gives in its table.
fn misbehaving(topics: &[&str], extra: impl FnOnce(&Setup) -> String) -> (Setup, Daemon) {
    let mut setup = Setup::new(EXE, 1, topics);
    setup.module = guest("misbehave");
    let daemon = setup.start_with("a", &extra(&setup), None);
    daemon.wait_for("partition running", 1, WAIT);
    (setup, daemon)
}

/// Lines that dead-letter failed records into the test's `dead-letters` topic.
fn dead_lettering(setup: &Setup) -> String {
    let dead = setup.topic("dead-letters");
    format!("on_error = \"dead-letter\"\ndead_letter_topic = {dead:?}\n")
}

/// Send `commands` to partition 0 of the test's input, then wait until `topic` holds
/// `outputs` committed records, and stop the daemon.
fn run_commands(setup: &Setup, daemon: Daemon, commands: &[&str], topic: &str, outputs: usize) {
    let input = setup.input();
    for command in commands {
        input.send(0, command.as_bytes());
    }
    input.producer.flush(Duration::from_secs(30)).unwrap();
    wait_until(
        || committed_count(&setup.broker.bootstrap, topic) >= outputs,
        || format!("the outputs never arrived:\n{}", daemon.tail()),
    );
    assert!(daemon.terminate().success());
}

fn header(record: &CommittedRecord, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[test]
fn outputs_to_topics_the_pipeline_may_not_write_fail_their_records() {
    // A guest names its outputs' topics. Into the changelog it would inject state at
    // the next restore; into its input, a loop; into the dead-letter or an internal
    // topic, forged records. Only `output` and the listed `extra_outputs` are allowed;
    // any other target fails its record under on_error (here: dead-lettered).
    let (setup, daemon) = misbehaving(&["counts", "side", "dead-letters"], |setup| {
        let side = setup.topic("side");
        format!("{}extra_outputs = [{side:?}]\n", dead_lettering(setup))
    });
    let (counts, side, dead) = (
        setup.topic("counts"),
        setup.topic("side"),
        setup.topic("dead-letters"),
    );

    let forbidden = [
        setup.changelog(),
        setup.topic("text"),
        dead.clone(),
        "__consumer_offsets".to_owned(),
    ];
    let input = setup.input();
    for target in forbidden.iter().chain([&side, &counts]) {
        input.send(0, format!("send-to:{target}").as_bytes());
    }
    input.send(0, b"hello");
    input.producer.flush(Duration::from_secs(30)).unwrap();
    wait_until(
        || committed_count(&setup.broker.bootstrap, &counts) >= 2,
        || format!("the allowed outputs never arrived:\n{}", daemon.tail()),
    );
    assert!(daemon.terminate().success());

    let dead_letters = committed(&setup, &dead);
    let refused: Vec<String> = dead_letters
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = forbidden.iter().map(|t| format!("send-to:{t}")).collect();
    assert_eq!(
        refused, expected,
        "each forbidden target dead-lettered once"
    );
    for record in &dead_letters {
        assert_eq!(header(record, "weir.dlq.kind"), "forbidden_output");
        let error = header(record, "weir.dlq.error");
        assert!(error.contains("extra_outputs"), "{error}");
    }
    let to_side = committed(&setup, &side);
    assert_eq!(to_side.len(), 1, "the listed extra output is written");
    let keys = |records: &[CommittedRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
            .collect()
    };
    assert_eq!(keys(&committed(&setup, &counts)), ["injected", "hello"]);
    assert!(
        !keys(&committed(&setup, &setup.changelog())).contains(&"injected".to_owned()),
        "nothing the guest sent reached the changelog"
    );
    assert!(
        !keys(&committed(&setup, &setup.topic("text"))).contains(&"injected".to_owned()),
        "nothing the guest sent reached its input"
    );
}

#[test]
fn oversized_outputs_and_rejections_are_bounded_per_record() {
    // An output over the producer's message.max.bytes used to fail the whole thread's
    // transaction and restart the pipeline onto the same record, forever. Now it fails
    // its record under on_error (a batch's outputs past their bound too: unit tests);
    // a rejection message is cut to 4 KiB before it is logged or dead-lettered.
    let (setup, daemon) = misbehaving(&["counts", "dead-letters"], |setup| {
        let limits = "max_output_bytes = 2000\nmax_batch_output_bytes = 4000\n";
        format!("{}[pipelines.wc.limits]\n{limits}", dead_lettering(setup))
    });
    let (counts, dead) = (setup.topic("counts"), setup.topic("dead-letters"));

    let commands = [
        "send-bytes:1500",
        "send-bytes:5000000",
        "send-bytes:1500",
        "reject-bytes:100000",
        "send-bytes:10",
    ];
    run_commands(&setup, daemon, &commands, &counts, 3);

    let sizes: Vec<usize> = committed(&setup, &counts)
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .collect();
    assert_eq!(
        sizes,
        [1500, 1500, 10],
        "every output under the bounds, once"
    );
    let dead_letters = committed(&setup, &dead);
    let kinds: Vec<String> = dead_letters
        .iter()
        .map(|r| header(r, "weir.dlq.kind"))
        .collect();
    assert_eq!(kinds, ["output_too_large", "rejected"]);
    let too_large = header(&dead_letters[0], "weir.dlq.error");
    assert!(
        too_large.contains("limits.max_output_bytes (2000)"),
        "{too_large}"
    );
    let rejection = header(&dead_letters[1], "weir.dlq.error");
    assert!(rejection.len() < 5000, "{} bytes", rejection.len());
    assert!(
        rejection.ends_with("more bytes cut)"),
        "{}",
        &rejection[4000..]
    );
}

#[test]
fn a_state_bomb_is_stopped_at_the_partition_buffer_bound() {
    // Writes within every per-value limit used to pile up in the host until the next
    // checkpoint (4.6 GB in a minute, measured). A partition now checkpoints as soon as
    // its buffered writes pass half of limits.max_pending_state_bytes, and a write past
    // the whole fails its record.
    let (setup, daemon) = misbehaving(&["counts", "dead-letters"], |setup| {
        let table = "batch_size = 1\ncommit_interval_ms = 5000\n\
                     [pipelines.wc.limits]\nmax_pending_state_bytes = 4194304\n";
        format!("{}{table}", dead_lettering(setup))
    });
    let (counts, dead) = (setup.topic("counts"), setup.topic("dead-letters"));

    // 1.5 MiB each, well within one commit interval: the third fits only because the
    // second took the partition past half the bound, and it checkpointed then.
    let commands = [
        "state-bomb:3",
        "state-bomb:3",
        "state-bomb:3",
        "state-bomb:20",
        "hello",
    ];
    run_commands(&setup, daemon, &commands, &counts, 4);

    let values: Vec<String> = committed(&setup, &counts)
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        values,
        ["3", "3", "3", "1"],
        "the bombs within bounds, then hello"
    );
    let dead_letters = committed(&setup, &dead);
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(
        header(&dead_letters[0], "weir.dlq.kind"),
        "state_buffer_full"
    );
    let error = header(&dead_letters[0], "weir.dlq.error");
    assert!(
        error.contains("limits.max_pending_state_bytes (4194304"),
        "{error}"
    );
}

#[test]
fn state_past_the_disk_quota_is_refused_and_deletes_still_work() {
    // Each bomb writes 512 KiB that the store's WAL keeps uncompressed (the values are
    // all `x`, which a flush to a table would compress away, but a memtable flushes at
    // 16 MiB): a few take the pipeline past its 4 MiB quota, measured every second, and
    // from then on a write that sets a value fails its record, while a delete succeeds.
    let (setup, daemon) = misbehaving(&["counts", "dead-letters"], |setup| {
        let table = "batch_size = 1\ncommit_interval_ms = 200\n\
                     [pipelines.wc.limits]\nmax_state_bytes = 4194304\n";
        format!("{}{table}", dead_lettering(setup))
    });
    let (counts, dead) = (setup.topic("counts"), setup.topic("dead-letters"));
    let input = setup.input();
    let mut bombs = 0;
    while committed(&setup, &dead).is_empty() {
        assert!(
            bombs < 60,
            "60 bombs of 512 KiB and no record refused under a 4 MiB quota:\n{}",
            daemon.tail()
        );
        input.send(0, b"state-bomb:1");
        input.producer.flush(Duration::from_secs(30)).unwrap();
        bombs += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    // Processing is in order: once the delete's output commits, every bomb's has.
    input.send(0, b"del:a");
    input.producer.flush(Duration::from_secs(30)).unwrap();
    let deleted =
        |outputs: &[CommittedRecord]| outputs.iter().any(|r| r.key.as_deref() == Some(b"del:a"));
    wait_until(
        || deleted(&committed(&setup, &counts)),
        || {
            format!(
                "a delete past the quota never committed:\n{}",
                daemon.tail()
            )
        },
    );
    assert!(daemon.terminate().success());

    let outputs = committed(&setup, &counts);
    let bombs_kept = outputs
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"state-bomb"))
        .count();
    assert!(
        bombs_kept >= 6,
        "the quota refused writes well under it: {bombs_kept} of 512 KiB kept"
    );
    assert!(
        bombs_kept < 30,
        "the quota let {bombs_kept} writes of 512 KiB pass a 4 MiB quota"
    );
    let dead_letters = committed(&setup, &dead);
    let kinds: Vec<String> = dead_letters
        .iter()
        .map(|r| header(r, "weir.dlq.kind"))
        .collect();
    assert!(kinds.iter().all(|k| k == "state_quota"), "{kinds:?}");
    let error = header(&dead_letters[0], "weir.dlq.error");
    assert!(
        error.contains("limits.max_state_bytes (4194304 bytes)"),
        "{error}"
    );
}

#[test]
fn a_sleeping_guest_does_not_hold_up_shutdown() {
    // A guest that sleeps waits inside the host, out of the epoch deadline's reach; it
    // held its processing thread, and with it shutdown, for as long as it asked. Its
    // wait now ends with the call's time (3 s here): the record fails as a timeout,
    // and SIGTERM completes within that bound.
    let (setup, daemon) = misbehaving(&["counts"], |_| {
        "on_error = \"skip\"\n[pipelines.wc.limits]\ncall_timeout_ms = 3000\n".to_owned()
    });

    let input = setup.input();
    input.send(0, b"sleep:600000");
    input.producer.flush(Duration::from_secs(30)).unwrap();
    // Let the guest fall asleep: the record is fetched and the call begins.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = std::time::Instant::now();
    assert!(daemon.terminate().success());
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?} with a sleeping guest"
    );
}

#[test]
fn a_looping_partition_does_not_hold_up_its_thread() {
    // One processing thread for a word count taking 10 lines a batch and a transform
    // looping to its 2 s call timeout on every record. Each looping batch used to be
    // followed by one word-count batch, then the next loop: 10 lines every 2 s, so 300
    // lines waited for the 25 loops to run out (50 s; 30.7 s measured with 15). A slow
    // batch now makes its partition wait (four times as long as it took, since its
    // call timed out), and the word count runs meanwhile.
    let setup = Setup::new(EXE, 1, &["counts", "hostile", "hostile-out"]);
    let hostile = setup.topic("hostile");
    let misbehave = guest("misbehave");
    let wc_extra = format!("{}batch_size = 10\n", setup.group_line("wc"));
    let bad_extra = format!(
        "{}on_error = \"skip\"\nbatch_size = 1\n[pipelines.bad.limits]\ncall_timeout_ms = 2000\n",
        setup.group_line("bad")
    );
    let config = write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &setup.data_dir("a"),
        &[
            PipelineSpec {
                name: "wc",
                module: &setup.module,
                inputs: &[&setup.topic("text")],
                output: &setup.topic("counts"),
                extra: &wc_extra,
            },
            PipelineSpec {
                name: "bad",
                module: &misbehave,
                inputs: &[&hostile],
                output: &setup.topic("hostile-out"),
                extra: &bad_extra,
            },
        ],
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("threads = 2\n", "threads = 1\n")).unwrap();
    let daemon = Daemon::start(
        std::path::Path::new(EXE),
        &config,
        &setup.dir.path().join("a.log"),
        None,
    );
    daemon.wait_for("partition running", 2, WAIT);

    let attacker = weir_tests::wordcount::Input::new(&setup.broker.bootstrap, &hostile);
    for _ in 0..25 {
        attacker.send(0, b"loop");
    }
    attacker.producer.flush(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let began = std::time::Instant::now();
    let mut input = setup.input();
    input.produce(1, 300);
    setup.wait_for_counts(&input, &daemon);
    let took = began.elapsed();
    eprintln!("300 lines beside a looping partition: {took:?}");
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");
    assert!(
        took < Duration::from_secs(20),
        "300 lines in batches of 10 took {took:?} beside a looping partition"
    );
}

#[test]
fn a_healthy_neighbour_keeps_exact_totals_while_a_hostile_pipeline_fails() {
    // One daemon, two pipelines on the same processing threads: a word count, and a
    // transform fed every kind of misbehaviour at once. Each hostile record fails on
    // its own (dead-lettered, with its kind); the word count's outputs and state stay
    // exactly what its input implies.
    let setup = Setup::new(
        EXE,
        2,
        &["counts", "hostile", "hostile-out", "dead-letters"],
    );
    let (hostile, dead) = (setup.topic("hostile"), setup.topic("dead-letters"));
    let hostile_extra = format!(
        "{}on_error = \"dead-letter\"\ndead_letter_topic = {dead:?}\n\
         [pipelines.bad.limits]\ncall_timeout_ms = 1000\nmax_pending_state_bytes = 8388608\n",
        setup.group_line("bad")
    );
    let misbehave = guest("misbehave");
    let config = write_config(
        setup.dir.path(),
        &setup.broker.bootstrap,
        &setup.data_dir("a"),
        &[
            PipelineSpec {
                name: "wc",
                module: &setup.module,
                inputs: &[&setup.topic("text")],
                output: &setup.topic("counts"),
                extra: &setup.group_line("wc"),
            },
            PipelineSpec {
                name: "bad",
                module: &misbehave,
                inputs: &[&hostile],
                output: &setup.topic("hostile-out"),
                extra: &hostile_extra,
            },
        ],
    );
    let daemon = Daemon::start(
        std::path::Path::new(EXE),
        &config,
        &setup.dir.path().join("a.log"),
        None,
    );
    daemon.wait_for("partition running", 4, WAIT);

    let mut input = setup.input();
    input.produce(2, 50);
    let attacks = weir_tests::hostile_commands(&setup.changelog());
    let attacker = weir_tests::wordcount::Input::new(&setup.broker.bootstrap, &hostile);
    for attack in &attacks {
        attacker.send(0, attack.as_bytes());
    }
    attacker.producer.flush(Duration::from_secs(30)).unwrap();
    input.produce(2, 50);
    setup.wait_for_counts(&input, &daemon);
    wait_until(
        || committed_count(&setup.broker.bootstrap, &dead) >= attacks.len() - 1,
        || format!("the attacks were not all dead-lettered:\n{}", daemon.tail()),
    );
    assert!(daemon.terminate().success());

    setup.assert_exact(&input, "a");
    let mut kinds: Vec<String> = committed(&setup, &dead)
        .iter()
        .map(|r| header(r, "weir.dlq.kind"))
        .collect();
    kinds.sort();
    // A panic and a stack overflow are traps. The log flood is not a failure: its lines over the rate are dropped, and the
    // record succeeds.
    let expected = [
        "forbidden_output",
        "memory_limit",
        "output_too_large",
        "state_buffer_full",
        "timeout",
        "timeout",
        "trap",
        "trap",
    ];
    assert_eq!(kinds, expected);
}
