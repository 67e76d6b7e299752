//! Tables on Apache Kafka: an enrichment join (orders joined with a compacted customers
//! topic) gives exactly the reference's outputs, each order meeting its customer as of
//! the order's time, across SIGKILLs, a rebalance onto an instance with no local state
//! (which re-reads the table up to where the checkpoint had it), and a restart there.
//! A table partitioned unlike the input is refused at start, with what to do.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use weir_tests::broker::send_waiting;
use weir_tests::daemon::Daemon;
use weir_tests::wordcount::{Setup, WAIT, read_committed, wait_until};
use weir_tests::{Dice, guest};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");
const PARTITIONS: i32 = 2;
const BASE: i64 = 1_700_000_000_000;

fn producer(setup: &Setup) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.broker.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("a producer")
}

/// A record of the test: key, value (`None`: a tombstone), timestamp.
type Keyed = (String, Option<String>, i64);

/// Both topics are partitioned by customer id the same way: `c<n>` goes to `n % 2`.
fn partition_of(key: &str) -> i32 {
    key[1..].parse::<i32>().expect("keys are c<n>") % PARTITIONS
}

fn send(producer: &BaseProducer, topic: &str, records: &[Keyed]) {
    for (key, value, timestamp) in records {
        let mut record = BaseRecord::<str, str>::to(topic)
            .partition(partition_of(key))
            .key(key.as_str())
            .timestamp(*timestamp);
        if let Some(value) = value {
            record = record.payload(value.as_str());
        }
        send_waiting(producer, record);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("records acknowledged");
}

fn customer(name: &str, region: &str) -> String {
    format!(r#"{{"name":"{name}","region":"{region}"}}"#)
}

/// The customers table: 20 customers at the start, a third of them moving region
/// during the orders, a few deleted, and one unknown until late.
fn customers() -> Vec<Keyed> {
    let mut table: Vec<Keyed> = (0..20)
        .map(|n| {
            (
                format!("c{n}"),
                Some(customer(&format!("n{n}"), "eu")),
                BASE,
            )
        })
        .collect();
    for n in (0..20).step_by(3) {
        table.push((
            format!("c{n}"),
            Some(customer(&format!("n{n}"), "us")),
            BASE + 2_000 + n * 100,
        ));
    }
    for n in [4, 11] {
        table.push((format!("c{n}"), None, BASE + 6_000));
    }
    table.push(("c21".into(), Some(customer("late", "ap")), BASE + 8_000));
    table
}

/// 600 orders 15 ms apart over 24 customer ids (c20 to c23 unknown at first), in
/// timestamp order on each partition.
fn orders() -> Vec<Keyed> {
    let mut dice = Dice(0x5851_f42d_4c95_7f2d);
    (0..600)
        .map(|i| {
            let key = format!("c{}", dice.below(24));
            let value = format!(r#"{{"id":"o{i}","amount":{}.5}}"#, i % 50);
            (key, Some(value), BASE + i * 15)
        })
        .collect()
}

/// What the inner join sends for each order, by order id: the order with the
/// customer's latest row at or before the order's time, if it has one.
fn reference(table: &[Keyed], orders: &[Keyed]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (i, (key, order, at)) in orders.iter().enumerate() {
        let row = table
            .iter()
            .rfind(|(k, _, t)| k == key && t <= at)
            .and_then(|(_, value, _)| value.as_deref());
        if let Some(row) = row {
            let order: Value = serde_json::from_str(order.as_deref().unwrap()).unwrap();
            let row: Value = serde_json::from_str(row).unwrap();
            out.insert(format!("o{i}"), json!({"order": order, "customer": row}));
        }
    }
    out
}

/// The committed outputs by order id; an order sent twice fails the test.
fn enriched(setup: &Setup, topic: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (_, value) in read_committed(&setup.broker.bootstrap, topic) {
        let json: Value = serde_json::from_slice(&value.unwrap_or_default()).unwrap();
        let order = json["order"]["id"].as_str().unwrap().to_owned();
        let twice = out.insert(order.clone(), json);
        assert!(twice.is_none(), "order {order} was sent twice");
    }
    out
}

fn table_lines(setup: &Setup) -> String {
    format!(
        "[pipelines.wc.tables.customers]\ntopic = {:?}\n",
        setup.topic("customers")
    )
}

/// Wait until `daemon` (this process of it) runs every partition.
fn wait_running(daemon: &Daemon) {
    wait_until(
        || daemon.running_partitions() == PARTITIONS as usize,
        || format!("not every partition running\n{}", daemon.tail()),
    );
}

#[test]
fn an_enrichment_join_is_exact_across_sigkills_and_a_rebalance() {
    let mut setup = Setup::new(EXE, PARTITIONS, &["counts"]);
    setup.module = guest("enrich");
    setup.broker.create_topic_with(
        &setup.topic("customers"),
        PARTITIONS,
        &[("cleanup.policy", "compact")],
    );
    let producer = producer(&setup);
    let (table, orders) = (customers(), orders());
    let expected = reference(&table, &orders);
    assert!(
        (300..580).contains(&expected.len()),
        "{} orders joined",
        expected.len()
    );
    // The whole table first, later rows included: each order must meet the rows up
    // to its own time only.
    send(&producer, &setup.topic("customers"), &table);

    let lines = table_lines(&setup);
    let output = setup.topic("counts");
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let mut daemon = setup.start_with("a", &lines, None);
    wait_running(&daemon);
    let (killed, rest) = orders.split_at(400);
    for (round, chunk) in killed.chunks(100).enumerate() {
        send(&producer, &setup.topic("text"), chunk);
        std::thread::sleep(Duration::from_millis(dice.below(200 * round as u64 + 1)));
        daemon.kill();
        daemon = setup.start_with("a", &lines, None);
        wait_running(&daemon);
    }
    // A second instance joins: a partition moves to a state directory that has
    // nothing, restores from the changelog and re-reads its table rows.
    let second = setup.start_with("b", &lines, None);
    Daemon::wait_for_split(&daemon, &second, PARTITIONS as usize, WAIT);
    send(&producer, &setup.topic("text"), rest);
    wait_until(
        || enriched(&setup, &output).len() >= expected.len(),
        || {
            format!(
                "{} of {} orders joined\n{}\n{}",
                enriched(&setup, &output).len(),
                expected.len(),
                daemon.tail(),
                second.tail()
            )
        },
    );
    assert_eq!(enriched(&setup, &output), expected);
    assert!(daemon.terminate().success());
    assert!(second.terminate().success());
}

#[test]
fn a_table_partitioned_unlike_the_input_is_refused_at_start() {
    let mut setup = Setup::new(EXE, PARTITIONS, &["counts"]);
    setup.module = guest("enrich");
    setup.broker.create_topic_with(
        &setup.topic("customers"),
        3,
        &[("cleanup.policy", "compact")],
    );
    let mut daemon = setup.start_with("a", &table_lines(&setup), None);
    let status = daemon.wait(WAIT);
    assert!(!status.success());
    let log = daemon.tail();
    assert!(
        log.contains("which has 3 partitions") && log.contains("partitioned like the inputs"),
        "{log}"
    );
}
