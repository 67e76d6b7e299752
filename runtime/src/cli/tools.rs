//! Small Kafka and state tools for trying Weir without other software: `weir produce`
//! (lines from stdin), `weir consume` (records as JSON lines) and `weir state dump`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::engine::{Header, OutputRecord};
use crate::jsonl;
use crate::state::{RocksStore, StateStore};

use super::Exit;

#[derive(Debug, clap::Args)]
pub(super) struct BrokerArgs {
    /// Bootstrap servers (host:port,...).
    #[arg(long, env = "WEIR_BROKERS")]
    brokers: String,
    /// The topic.
    #[arg(long)]
    topic: String,
}

impl BrokerArgs {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ProduceArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Key of every record; by default records have no key.
    #[arg(long)]
    key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct ConsumeArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Stop when no record arrives for this long, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    idle_ms: u64,
}

#[derive(Debug, clap::Args)]
pub(super) struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StateCommand {
    /// Read one key's committed value from a running daemon (admin API).
    Get(super::admin::StateGetArgs),
    /// Print every key and value of a partition's state store as JSON lines.
    Dump {
        /// The partition's state directory (DATA_DIR/pipelines/NAME/state/TOPIC-PARTITION).
        dir: PathBuf,
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// Counts records the broker refused, which `flush` alone does not report.
#[derive(Default)]
struct Refusals(std::sync::Mutex<(u64, Option<String>)>);

impl rdkafka::ClientContext for Refusals {}

impl rdkafka::producer::ProducerContext for Refusals {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut refusals = self.0.lock().unwrap_or_else(|p| p.into_inner());
            refusals.0 += 1;
            refusals.1.get_or_insert_with(|| error.to_string());
        }
    }
}

pub(super) fn produce(args: ProduceArgs) -> Exit {
    let producer: BaseProducer<Refusals> = match args
        .broker
        .client_config()
        .set("enable.idempotence", "true")
        .create_with_context(Refusals::default())
    {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot create a producer: {e}")),
    };
    let mut sent = 0_u64;
    for line in std::io::stdin().lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return fail(format!("cannot read stdin: {e}")),
        };
        let mut record = BaseRecord::<str, str>::to(&args.broker.topic).payload(&line);
        if let Some(key) = &args.key {
            record = record.key(key);
        }
        let mut record = Some(record);
        while let Some(r) = record.take() {
            if let Err((error, back)) = producer.send(r) {
                if !matches!(
                    error,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ) {
                    return fail(format!(
                        "cannot produce to {:?}: {error}",
                        args.broker.topic
                    ));
                }
                producer.poll(Duration::from_millis(10));
                record = Some(back);
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    if let Err(e) = producer.flush(Duration::from_secs(30)) {
        return fail(format!("records were not acknowledged: {e}"));
    }
    let (refused, first) = producer
        .context()
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if refused > 0 {
        return fail(format!(
            "the broker refused {refused} of {sent} records to {}: {}",
            args.broker.topic,
            first.unwrap_or_default()
        ));
    }
    eprintln!("produced {sent} records to {}", args.broker.topic);
    Exit::Success
}

pub(super) fn consume(args: ConsumeArgs) -> Exit {
    let consumer: BaseConsumer = match args
        .broker
        .client_config()
        .set("group.id", "weir-consume")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot create a consumer: {e}")),
    };
    // Read every partition directly: no group to join, so the first record comes at once.
    let topic = &args.broker.topic;
    let metadata = match consumer.fetch_metadata(Some(topic), Duration::from_secs(30)) {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot read metadata of {topic:?}: {e}")),
    };
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        if let Err(e) = assignment.add_partition_offset(topic, partition.id(), Offset::Beginning) {
            return fail(format!("cannot assign {topic:?}: {e}"));
        }
    }
    if assignment.count() == 0 {
        return fail(format!("topic {topic:?} does not exist"));
    }
    if let Err(e) = consumer.assign(&assignment) {
        return fail(format!("cannot read {topic:?}: {e}"));
    }
    let idle = Duration::from_millis(args.idle_ms);
    let mut last = Instant::now();
    let mut seen = 0;
    let mut out = std::io::stdout().lock();
    while args.max.is_none_or(|max| seen < max) && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let record = OutputRecord {
                    topic: Some(message.topic().to_owned()),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| Header {
                                    key: h.key.to_owned(),
                                    value: h.value.unwrap_or_default().to_vec(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: None,
                };
                if writeln!(out, "{}", jsonl::render_output(&record)).is_err() {
                    return Exit::Success;
                }
                seen += 1;
                last = Instant::now();
            }
            Some(Err(e)) => return fail(format!("cannot consume {:?}: {e}", args.broker.topic)),
            None => {}
        }
    }
    eprintln!("consumed {seen} records from {}", args.broker.topic);
    Exit::Success
}

pub(super) fn state(args: StateArgs) -> Exit {
    match args.command {
        StateCommand::Get(args) => super::admin::state_get(args),
        StateCommand::Dump { dir, prefix } => {
            if !dir.is_dir() {
                return fail(format!("{} is not a state directory", dir.display()));
            }
            let store = match RocksStore::open(&dir) {
                Ok(store) => store,
                Err(e) => return fail(e.to_string()),
            };
            let mut out = std::io::stdout().lock();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = match store.scan(prefix.as_bytes(), after.as_deref(), 1024) {
                    Ok(page) => page,
                    Err(e) => return fail(e.to_string()),
                };
                for entry in &page {
                    let record = OutputRecord {
                        topic: None,
                        key: Some(entry.key.clone()),
                        value: Some(entry.value.clone()),
                        headers: Vec::new(),
                        timestamp: None,
                    };
                    if writeln!(out, "{}", jsonl::render_output(&record)).is_err() {
                        return Exit::Success;
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 1024 => after = Some(last.key.clone()),
                    _ => return Exit::Success,
                }
            }
        }
    }
}

fn fail(message: String) -> Exit {
    eprintln!("error: {message}");
    Exit::Failed
}
