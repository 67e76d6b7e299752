//! Broker failover: a three-broker Apache Kafka cluster of this test's own
//! (replication factor 3, min.insync.replicas 2), word count under exactly-once with
//! input arriving without pause, and the brokers leading the input, output and
//! changelog partitions SIGKILLed one after another mid-stream and started again. Each
//! broker is also a transaction and group coordinator for some ids, and every one of
//! them dies once. Weir rides through; the totals stay exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_tests::broker::Kafka;
use weir_tests::wordcount::{Setup, WAIT, wait_for_outputs};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");
const PARTITIONS: i32 = 4;

#[test]
fn killing_each_broker_mid_stream_loses_and_duplicates_nothing() {
    let cluster = Arc::new(Kafka::start(3));
    let setup = Setup::on(cluster.clone(), EXE, PARTITIONS, &["counts"]);
    let daemon = setup.start("a", None);
    daemon.wait_for("partition running", PARTITIONS as usize, WAIT);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (mut input, stop) = (setup.input(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                input.produce(PARTITIONS, 10);
                std::thread::sleep(Duration::from_millis(100));
            }
            input
        })
    };

    // One broker down at a time, and each back in sync before the next goes: with
    // min.insync.replicas 2, two down at once would stop every write, not test failover.
    let mut killed = Vec::new();
    let kill = |node: i32, why: &str| {
        cluster.wait_in_sync(3);
        std::thread::sleep(Duration::from_secs(3));
        eprintln!("killing broker {node}{why}");
        cluster.kill_node(node);
        std::thread::sleep(Duration::from_secs(8));
        cluster.start_node(node);
    };
    for topic in [
        setup.topic("text"),
        setup.topic("counts"),
        setup.changelog(),
    ] {
        let leader = cluster.leader(&topic, 0);
        // Each broker once: a leader already killed gives way to one that was not.
        let Some(node) = Some(leader)
            .filter(|n| (1..=3).contains(n) && !killed.contains(n))
            .or_else(|| (1..=3).find(|n| !killed.contains(n)))
        else {
            break;
        };
        kill(
            node,
            &format!(", leader of {topic}/0 (its leader was {leader})"),
        );
        killed.push(node);
    }
    for node in (1..=3).filter(|n| !killed.contains(n)).collect::<Vec<_>>() {
        kill(node, "");
    }
    cluster.wait_in_sync(3);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let input = producer.join().expect("the producer thread");

    wait_for_outputs(
        &cluster.bootstrap,
        &setup.topic("counts"),
        input.expected.total_outputs(),
        Some(&daemon),
    );
    assert!(daemon.terminate().success());
    setup.assert_exact(&input, "a");
}
