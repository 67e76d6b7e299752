//! Every check a config must pass, collected rather than stopping at the first, so one
//! edit can fix them all.

use std::collections::BTreeMap;

use super::{
    ADMIN_TOKEN_ENV, AdminConfig, Config, EMBEDDED, ErrorPolicy, GroupProtocol, MemoryConfig,
    PipelineConfig, StateConfig,
};

/// One thing wrong with a config, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending setting, e.g. `pipelines.orders.inputs`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

pub(super) fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// librdkafka properties Weir sets itself: letting a config override them would break
/// the guarantees Weir promises.
const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "partition.assignment.strategy",
    "group.protocol",
];

const MAX_TOPIC_NAME: usize = 249;
/// The smallest disk quota a pipeline may have (`limits.max_state_bytes`).
const MIN_STATE_QUOTA_BYTES: u64 = 1 << 20;

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn fail(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }

    fn topic(&mut self, at: &str, name: &str) {
        if let Err(message) = check_topic_name(name) {
            self.fail(at, message);
        }
    }
}

/// Kafka's rule for topic names (and ours for pipeline names, which end up in topic
/// names and directory names).
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid name"));
    }
    if name.len() > MAX_TOPIC_NAME {
        return Err(format!(
            "{name:?} is longer than {MAX_TOPIC_NAME} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}; use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A key no Weir config has: a misspelling, or a setting of another version.
pub(super) fn unknown_setting(path: &str) -> Problem {
    Problem {
        at: path.to_owned(),
        message: "is not a Weir setting: check its spelling and section against the \
                  README's configuration example, or remove it"
            .to_owned(),
    }
}

/// A config that cannot be read as a Weir config (bad TOML, a value of the wrong type,
/// a required setting missing): where, by line and column, and why.
pub(super) fn unreadable(text: &str, error: &toml::de::Error) -> Problem {
    let at = match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}")
        }
        None => "the file".to_owned(),
    };
    Problem {
        at,
        message: error.message().trim_end().to_owned(),
    }
}

pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut check = Checker {
        problems: Vec::new(),
    };
    if let Some(threads) = config.threads
        && !(1..=256).contains(&threads)
    {
        check.fail("threads", "must be between 1 and 256");
    }
    let kafka = &config.kafka;
    if kafka.brokers.trim().is_empty() {
        check.fail(
            "kafka.brokers",
            format!("must list bootstrap servers (host:port,...) or be {EMBEDDED:?}"),
        );
    }
    let tables = [
        ("properties", &kafka.properties),
        ("consumer_properties", &kafka.consumer_properties),
        ("producer_properties", &kafka.producer_properties),
    ];
    for (table, properties) in tables {
        for name in properties.keys() {
            if RESERVED_PROPERTIES.contains(&name.as_str()) {
                check.fail(
                    format!("kafka.{table}.{name}"),
                    "Weir sets this property itself to keep its guarantees; remove it",
                );
            }
        }
    }
    if kafka.group_protocol == GroupProtocol::Consumer {
        // librdkafka refuses these under KIP-848's protocol: the broker owns them.
        for name in ["session.timeout.ms", "heartbeat.interval.ms"] {
            for (table, properties) in tables {
                if properties.contains_key(name) {
                    check.fail(
                        format!("kafka.{table}.{name}"),
                        format!(
                            "is a broker setting under group_protocol = \"consumer\" \
                             (group.consumer.{name}); remove it here"
                        ),
                    );
                }
            }
        }
    }
    for (table, properties) in &tables[..2] {
        if properties.contains_key("transaction.timeout.ms") {
            check.fail(
                format!("kafka.{table}.transaction.timeout.ms"),
                "is a producer setting: set it in [kafka.producer_properties], where it is \
                 checked against the commit intervals",
            );
        }
    }
    // Weir keeps a transaction open for a commit interval; a shorter timeout would
    // have the broker abort every one.
    if let Some(timeout) = kafka.producer_properties.get("transaction.timeout.ms") {
        let longest = config
            .pipelines
            .values()
            .map(|p| p.commit_interval_ms)
            .max()
            .unwrap_or(0);
        match timeout.to_string().parse::<u64>() {
            Ok(ms) if ms > longest => {}
            _ => check.fail(
                "kafka.producer_properties.transaction.timeout.ms",
                format!(
                    "must be a number of milliseconds above the longest commit_interval_ms \
                     ({longest}); the default is the commit interval plus a minute"
                ),
            ),
        }
    }
    if !(1..=1024).contains(&kafka.embedded.partitions) {
        check.fail("kafka.embedded.partitions", "must be between 1 and 1024");
    }
    state_checks(&mut check, &config.state);
    memory_checks(&mut check, &config.memory);
    admin_checks(&mut check, &config.admin);
    if config.pipelines.is_empty() {
        check.fail(
            "pipelines",
            "no pipeline is configured; add a [pipelines.NAME] table",
        );
    }

    let mut groups: BTreeMap<String, &str> = BTreeMap::new();
    let mut changelogs: BTreeMap<String, &str> = BTreeMap::new();
    let topics_in_use: Vec<&String> = config
        .pipelines
        .values()
        .flat_map(|p| {
            p.inputs
                .iter()
                .chain([&p.output])
                .chain(&p.dead_letter_topic)
        })
        .collect();
    let dead_letter_topics: Vec<&String> = config
        .pipelines
        .values()
        .filter_map(|p| p.dead_letter_topic.as_ref())
        .collect();
    let changelogs_of_all: Vec<String> = config
        .pipelines
        .iter()
        .flat_map(|(name, p)| {
            let group = p.group_id(name);
            p.inputs
                .iter()
                .map(move |input| PipelineConfig::changelog_topic(&group, input))
        })
        .collect();
    for (name, pipeline) in &config.pipelines {
        let at = |field: &str| format!("pipelines.{name}.{field}");
        if let Err(message) = check_topic_name(name) {
            check.fail(
                format!("pipelines.{name}"),
                format!("pipeline name {message}"),
            );
        }
        pipeline_checks(&mut check, name, pipeline);
        let group = pipeline.group_id(name);
        for input in &pipeline.inputs {
            let changelog = PipelineConfig::changelog_topic(&group, input);
            if let Some(other) = changelogs.insert(changelog.clone(), name) {
                check.fail(
                    at("group_id"),
                    format!("the changelog topic {changelog:?} would also be pipeline {other:?}'s; choose another group_id"),
                );
            }
            if topics_in_use.contains(&&changelog) {
                check.fail(
                    at("group_id"),
                    format!("the changelog topic {changelog:?} is also an input or output; choose another group_id"),
                );
            }
        }
        let owned = OwnedTopics {
            dead_letters: &dead_letter_topics,
            changelogs: &changelogs_of_all,
        };
        extra_output_checks(&mut check, name, pipeline, &owned);
        if let Some(other) = groups.insert(group.clone(), name) {
            check.fail(
                at("group_id"),
                format!("consumer group {group:?} is also used by pipeline {other:?}; each pipeline needs its own"),
            );
        }
    }
    check.problems
}

fn state_checks(check: &mut Checker, state: &StateConfig) {
    if state.memory_bytes < 16 << 20 {
        check.fail(
            "state.memory_bytes",
            "must be at least 16 MiB (16777216): every partition store's memtables and \
             cache share it",
        );
    }
    if state.max_open_files < 16 {
        check.fail(
            "state.max_open_files",
            "must be at least 16 (RocksDB needs a few files open per store)",
        );
    }
}

fn memory_checks(check: &mut Checker, memory: &MemoryConfig) {
    for (at, bytes) in [
        ("memory.fetch_buffer_bytes", memory.fetch_buffer_bytes),
        ("memory.output_buffer_bytes", memory.output_buffer_bytes),
        ("memory.pending_state_bytes", memory.pending_state_bytes),
    ] {
        if bytes < MIN_MEMORY_BUFFER_BYTES {
            check.fail(at, "must be at least 16 MiB (16777216)");
        }
    }
}

/// The smallest of each `[memory]` buffer.
const MIN_MEMORY_BUFFER_BYTES: u64 = 16 << 20;

/// The shortest admin token accepted: guessing one must not be an option.
const MIN_TOKEN_CHARS: usize = 16;

fn admin_checks(check: &mut Checker, admin: &AdminConfig) {
    if !admin.disabled() && admin.listen.parse::<std::net::SocketAddr>().is_err() {
        check.fail(
            "admin.listen",
            format!(
                "{:?} is not an address to listen on; write IP:PORT (e.g. \"127.0.0.1:9464\", \
                 port 0 for any free port) or \"off\"",
                admin.listen
            ),
        );
    }
    if admin.token.as_ref().is_some_and(|t| t.trim().is_empty()) {
        check.fail(
            "admin.token",
            format!(
                "must not be empty; remove it to disable mutating calls, or set {ADMIN_TOKEN_ENV}"
            ),
        );
    } else if let Some(token) = admin.resolved_token()
        && token.chars().count() < MIN_TOKEN_CHARS
    {
        let at = if admin.token.is_some() {
            "admin.token".to_owned()
        } else {
            ADMIN_TOKEN_ENV.to_owned()
        };
        check.fail(
            at,
            format!(
                "is {} characters; an admin token needs at least {MIN_TOKEN_CHARS} (make one \
                 with `openssl rand -hex 16`)",
                token.chars().count()
            ),
        );
    }
    if let Some(token) = &admin.read_token
        && token.chars().count() < MIN_TOKEN_CHARS
    {
        check.fail(
            "admin.read_token",
            format!(
                "is {} characters; a token needs at least {MIN_TOKEN_CHARS} (make one with \
                 `openssl rand -hex 16`)",
                token.chars().count()
            ),
        );
    }
    match (&admin.tls_cert, &admin.tls_key) {
        (Some(_), None) => check.fail("admin.tls_key", "is needed with admin.tls_cert"),
        (None, Some(_)) => check.fail("admin.tls_cert", "is needed with admin.tls_key"),
        _ => {}
    }
    for (at, path) in [
        ("admin.tls_cert", &admin.tls_cert),
        ("admin.tls_key", &admin.tls_key),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            check.fail(
                at,
                format!("{} does not exist or is not a file", path.display()),
            );
        }
    }
    if admin.max_upload_bytes < 1024 {
        check.fail("admin.max_upload_bytes", "must be at least 1024");
    }
    if let Some(url) = &admin.advertised_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        check.fail("admin.advertised_url", "must be an http:// or https:// URL");
    }
    for (i, origin) in admin.peer_urls.iter().enumerate() {
        let plain = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '@']));
        if !plain {
            check.fail(
                format!("admin.peer_urls[{i}]"),
                format!(
                    "{origin:?} is not an origin: write http(s)://host or http(s)://host:port \
                     (no path, no user)"
                ),
            );
        }
    }
}

/// Topics whose records Weir writes for every pipeline of the config.
struct OwnedTopics<'a> {
    dead_letters: &'a [&'a String],
    changelogs: &'a [String],
}

/// A transform may be allowed extra topics, but none whose records Weir or Kafka own.
fn extra_output_checks(
    check: &mut Checker,
    name: &str,
    pipeline: &PipelineConfig,
    owned: &OwnedTopics<'_>,
) {
    for (i, extra) in pipeline.extra_outputs.iter().enumerate() {
        let at = format!("pipelines.{name}.extra_outputs[{i}]");
        check.topic(&at, extra);
        let why = if pipeline.inputs.contains(extra) {
            "is an input of this pipeline: it would consume its own outputs"
        } else if owned.dead_letters.contains(&extra) {
            "is a dead-letter topic: only Weir writes failed records there"
        } else if owned.changelogs.contains(extra) || extra.ends_with("-changelog") {
            "is a changelog topic (its name ends in -changelog): a transform writing there \
             would corrupt the state restored from it"
        } else if extra.starts_with("__") {
            "is one of Kafka's internal topics"
        } else {
            continue;
        };
        check.fail(at, format!("{extra:?} {why}; remove it from extra_outputs"));
    }
}

/// A table is read, never written: not an input, nor anything the pipeline writes.
/// Each input partition is a task of its own, which reads the table partition of its
/// number: with two inputs, two tasks would read one table partition (and one task
/// would read a topic twice under two names). Tasks that read co-partitioned inputs
/// together lift that.
fn table_checks(check: &mut Checker, name: &str, pipeline: &PipelineConfig) {
    if !pipeline.tables.is_empty() && pipeline.inputs.len() > 1 {
        check.fail(
            format!("pipelines.{name}.tables"),
            "a pipeline with tables reads one input topic (it has several): give each \
             input a pipeline of its own with the tables it joins",
        );
    }
    let mut topics = std::collections::BTreeMap::new();
    for (table, config) in &pipeline.tables {
        if let Some(other) = topics.insert(&config.topic, table) {
            check.fail(
                format!("pipelines.{name}.tables.{table}.topic"),
                format!(
                    "{:?} is table {other:?} already: declare a topic as one table",
                    config.topic
                ),
            );
        }
    }
    for (table, config) in &pipeline.tables {
        let at = format!("pipelines.{name}.tables.{table}");
        if let Err(message) = check_topic_name(table) {
            check.fail(&at, format!("a table's name {message}"));
        }
        check.topic(&format!("{at}.topic"), &config.topic);
        let topic = &config.topic;
        let why = if pipeline.inputs.contains(topic) {
            "is also an input: a topic is read as a stream or as a table, not both"
        } else if topic == &pipeline.output
            || pipeline.extra_outputs.contains(topic)
            || pipeline.dead_letter_topic.as_ref() == Some(topic)
        {
            "is also written by this pipeline: a table is read only (send the updates \
             to its topic from another pipeline)"
        } else if topic.starts_with("__") {
            "is one of Kafka's internal topics"
        } else {
            continue;
        };
        check.fail(format!("{at}.topic"), format!("{topic:?} {why}"));
    }
}

fn pipeline_checks(check: &mut Checker, name: &str, pipeline: &PipelineConfig) {
    let at = |field: &str| format!("pipelines.{name}.{field}");
    if !pipeline.module.is_file() {
        check.fail(
            at("module"),
            format!(
                "{} does not exist or is not a file; build the transform first",
                pipeline.module.display()
            ),
        );
    }
    if pipeline.inputs.is_empty() {
        check.fail(at("inputs"), "must name at least one input topic");
    }
    for (i, topic) in pipeline.inputs.iter().enumerate() {
        check.topic(&format!("pipelines.{name}.inputs[{i}]"), topic);
        if topic == &pipeline.output {
            check.fail(
                at("output"),
                format!("{topic:?} is also an input: a pipeline would consume its own outputs"),
            );
        }
    }
    check.topic(&at("output"), &pipeline.output);
    table_checks(check, name, pipeline);
    if pipeline.output.starts_with("__") {
        check.fail(
            at("output"),
            format!("{:?} is one of Kafka's internal topics", pipeline.output),
        );
    }
    if pipeline
        .group_id
        .as_ref()
        .is_some_and(|g| g.trim().is_empty())
    {
        check.fail(at("group_id"), "must not be empty");
    }
    // A transaction lasts a commit interval; brokers cap transactions at 15 minutes by
    // default (transaction.max.timeout.ms), and Weir adds a minute of slack.
    if !(1..=600_000).contains(&pipeline.commit_interval_ms) {
        check.fail(
            at("commit_interval_ms"),
            "must be between 1 and 600000 (ten minutes)",
        );
    }
    if pipeline.threads.is_some() {
        check.fail(
            at("threads"),
            "is a daemon setting now (one pool of processing threads serves every \
             pipeline): move `threads = N` to the top of the file, before any [section]",
        );
    }
    if !(1..=65_536).contains(&pipeline.batch_size) {
        check.fail(at("batch_size"), "must be between 1 and 65536");
    }
    match (&pipeline.on_error, &pipeline.dead_letter_topic) {
        (ErrorPolicy::DeadLetter, None) => check.fail(
            at("dead_letter_topic"),
            "on_error = \"dead-letter\" needs a dead_letter_topic",
        ),
        (ErrorPolicy::DeadLetter, Some(topic)) => {
            check.topic(&at("dead_letter_topic"), topic);
            if pipeline.inputs.contains(topic) {
                check.fail(at("dead_letter_topic"), "must not be an input topic");
            }
        }
        (_, Some(_)) => check.fail(
            at("dead_letter_topic"),
            "is set but on_error is not \"dead-letter\"; set on_error = \"dead-letter\" or remove it",
        ),
        (_, None) => {}
    }
    let limits = &pipeline.limits;
    if limits.memory_limit_bytes < 1 << 20 {
        check.fail(at("limits.memory_limit_bytes"), "must be at least 1 MiB");
    }
    if limits.call_timeout_ms == 0 {
        check.fail(at("limits.call_timeout_ms"), "must be at least 1");
    }
    let largest_write =
        u64::from(limits.max_state_key_bytes) + u64::from(limits.max_state_value_bytes);
    // A write is held twice (the log and the read cache): the largest must fit in the
    // half left after the early checkpoint.
    if limits.max_pending_state_bytes < 4 * largest_write {
        check.fail(
            at("limits.max_pending_state_bytes"),
            format!(
                "must be at least four times the largest state write (max_state_key_bytes + \
                 max_state_value_bytes = {largest_write}): a write is held twice, and must fit \
                 in the half left after the early checkpoint"
            ),
        );
    }
    if limits.max_scan_bytes < largest_write {
        check.fail(
            at("limits.max_scan_bytes"),
            format!(
                "must be at least the largest state write (max_state_key_bytes + \
                 max_state_value_bytes = {largest_write}), so that any entry can be scanned"
            ),
        );
    }
    if limits
        .max_state_bytes
        .is_some_and(|quota| quota < MIN_STATE_QUOTA_BYTES)
    {
        check.fail(
            at("limits.max_state_bytes"),
            format!(
                "must be at least {MIN_STATE_QUOTA_BYTES} (1 MiB): RocksDB's own files take \
                 tens of KiB per partition before any state, so a smaller quota refuses \
                 every write"
            ),
        );
    }
    if limits.max_log_lines_per_second == 0 {
        check.fail(at("limits.max_log_lines_per_second"), "must be at least 1");
    }
    let longest_line = crate::engine::MAX_LOG_LINE_BYTES as u64;
    if limits.max_log_bytes_per_second < longest_line {
        check.fail(
            at("limits.max_log_bytes_per_second"),
            format!(
                "must be at least {longest_line}, the longest guest log line, or long lines \
                 would never pass"
            ),
        );
    }
    if limits.max_output_bytes == 0 {
        check.fail(at("limits.max_output_bytes"), "must be at least 1");
    }
    if limits.max_batch_output_bytes < limits.max_output_bytes {
        check.fail(
            at("limits.max_batch_output_bytes"),
            format!(
                "must be at least limits.max_output_bytes ({}): one output would be \
                 refused for the call's total",
                limits.max_output_bytes
            ),
        );
    }
    if !(0.0..=1.0).contains(&pipeline.rollback.max_failure_rate) {
        check.fail(
            at("rollback.max_failure_rate"),
            "must be between 0.0 and 1.0 (a share of the trial's records)",
        );
    }
    if pipeline.changelog_replication_factor == 0 || pipeline.changelog_replication_factor < -1 {
        check.fail(
            at("changelog_replication_factor"),
            "must be -1 (the broker's default) or at least 1",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ChangelogFormat, Config, Guarantee, ParseError};

    fn module_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.wasm"), b"\0asm").unwrap();
        dir
    }

    fn problems(text: &str, base: &Path) -> Vec<String> {
        match Config::parse(text, base) {
            Ok(_) => Vec::new(),
            Err(ParseError(problems)) => problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Each of `expected` is in one of the problems `found`, and nothing else is.
    fn assert_problems(found: &[String], expected: &[&str]) {
        let text = found.join("\n");
        for part in expected {
            assert!(text.contains(part), "{part} not reported in:\n{text}");
        }
        assert_eq!(found.len(), expected.len(), "{text}");
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let dir = module_dir();
        let config = Config::parse(
            r#"
            [kafka]
            brokers = "embedded"
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            "#,
            dir.path(),
        )
        .unwrap();
        let wc = &config.pipelines["wc"];
        assert_eq!(wc.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(wc.changelog_format, ChangelogFormat::Marker);
        assert_eq!(wc.group_id("wc"), "weir.wc");
        assert_eq!(wc.module, dir.path().join("t.wasm"));
        assert_eq!(config.data_dir, dir.path().join("weir-data"));
        assert!(config.embedded());
    }

    #[test]
    fn the_shared_state_memory_is_checked_and_an_old_instance_count_still_loads() {
        let dir = module_dir();
        let text = |state: &str| {
            format!(
                r#"
                [kafka]
                brokers = "embedded"
                [state]
                {state}
                [pipelines.wc]
                module = "t.wasm"
                inputs = ["text"]
                output = "counts"
                [pipelines.wc.limits]
                max_instances = 512
                "#
            )
        };
        let found = problems(
            &text("memory_bytes = 1048576\nmax_open_files = 4"),
            dir.path(),
        );
        let all = found.join("\n");
        assert!(all.contains("state.memory_bytes"), "{all}");
        assert!(all.contains("state.max_open_files"), "{all}");
        assert_eq!(found.len(), 2, "{all}");
        let config = Config::parse(&text("memory_bytes = 536870912"), dir.path()).unwrap();
        assert_eq!(config.state.memory_bytes, 512 << 20);
        assert_eq!(config.state.max_open_files, 64);
    }

    #[test]
    fn a_disk_quota_too_small_to_hold_a_store_is_refused() {
        let dir = module_dir();
        let text = |quota: u64| {
            format!(
                "[kafka]\nbrokers = \"embedded\"\n[pipelines.wc]\nmodule = \"t.wasm\"\n\
                 inputs = [\"text\"]\noutput = \"counts\"\n[pipelines.wc.limits]\n\
                 max_state_bytes = {quota}\n"
            )
        };
        assert_problems(
            &problems(&text(65_536), dir.path()),
            &["pipelines.wc.limits.max_state_bytes: must be at least 1048576"],
        );
        let config = Config::parse(&text(1 << 30), dir.path()).unwrap();
        assert_eq!(config.pipelines["wc"].limits.max_state_bytes, Some(1 << 30));
    }

    #[test]
    fn a_short_admin_token_is_refused() {
        let dir = module_dir();
        let text = |token: &str| {
            format!(
                "[kafka]\nbrokers = \"embedded\"\n[admin]\ntoken = {token:?}\n\
                 [pipelines.wc]\nmodule = \"t.wasm\"\ninputs = [\"text\"]\noutput = \"counts\"\n"
            )
        };
        let found = problems(&text("secret"), dir.path()).join("\n");
        assert!(
            found.contains("admin.token") && found.contains("at least 16"),
            "{found}"
        );
        assert!(problems(&text("a-token-of-24-characters"), dir.path()).is_empty());
    }

    #[test]
    fn group_protocol_and_transaction_timeout_are_checked() {
        let dir = module_dir();
        let found = problems(
            r#"
            [kafka]
            brokers = "kafka:9092"
            group_protocol = "consumer"
            [kafka.consumer_properties]
            "session.timeout.ms" = 6000
            "transaction.timeout.ms" = 60000
            [kafka.producer_properties]
            "transaction.timeout.ms" = 100
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            commit_interval_ms = 100
            "#,
            dir.path(),
        );
        let text = found.join("\n");
        for path in [
            "kafka.consumer_properties.session.timeout.ms",
            "kafka.consumer_properties.transaction.timeout.ms",
            "kafka.producer_properties.transaction.timeout.ms",
        ] {
            assert!(text.contains(path), "{path} not reported in:\n{text}");
        }
        assert_eq!(found.len(), 3, "{text}");
    }

    /// `threads` is the daemon's (one pool serves every pipeline): out of range at the
    /// top, and anywhere in a pipeline, it is reported with what to do.
    #[test]
    fn threads_belong_to_the_daemon() {
        let dir = module_dir();
        let found = problems(
            r#"
            threads = 0
            [kafka]
            brokers = "kafka:9092"
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            threads = 2
            "#,
            dir.path(),
        );
        let text = found.join("\n");
        assert_eq!(found.len(), 2, "{text}");
        assert!(
            text.contains("threads: must be between 1 and 256"),
            "{text}"
        );
        assert!(text.contains("pipelines.wc.threads"), "{text}");
        assert!(text.contains("move `threads = N` to the top"), "{text}");
    }

    /// A transform may be allowed extra output topics, but never one whose records
    /// Weir or Kafka own: changelogs, the pipeline's inputs, its dead-letter topic,
    /// internal topics.
    #[test]
    fn extra_outputs_exclude_topics_weir_or_kafka_own() {
        let dir = module_dir();
        let found = problems(
            r#"
            [kafka]
            brokers = "kafka:9092"
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            on_error = "dead-letter"
            dead_letter_topic = "bad"
            extra_outputs = ["alerts", "text", "bad", "__consumer_offsets",
                             "weir.other-words-changelog", "weir.wc-text-changelog",
                             "no spaces"]
            [pipelines.other]
            module = "t.wasm"
            inputs = ["words"]
            output = "__transaction_state"
            "#,
            dir.path(),
        );
        assert_problems(
            &found,
            &[
                "pipelines.wc.extra_outputs[1]: \"text\" is an input",
                "pipelines.wc.extra_outputs[2]: \"bad\" is a dead-letter topic",
                "pipelines.wc.extra_outputs[3]: \"__consumer_offsets\" is one of Kafka's internal",
                "pipelines.wc.extra_outputs[4]: \"weir.other-words-changelog\" is a changelog",
                "pipelines.wc.extra_outputs[5]: \"weir.wc-text-changelog\" is a changelog",
                "pipelines.wc.extra_outputs[6]: \"no spaces\" contains",
                "pipelines.other.output: \"__transaction_state\" is one of Kafka's internal",
            ],
        );
    }

    /// Tables are read only, one table per topic, in pipelines of one input.
    #[test]
    fn tables_are_read_only_topics_of_one_input_pipelines() {
        let dir = module_dir();
        let found = problems(
            r#"
            [kafka]
            brokers = "kafka:9092"
            [pipelines.enrich]
            module = "t.wasm"
            inputs = ["orders"]
            output = "enriched"
            [pipelines.enrich.tables]
            customers = { topic = "customers" }
            again = { topic = "customers" }
            orders = { topic = "orders" }
            mine = { topic = "enriched" }
            "no/slash" = { topic = "x" }
            [pipelines.two]
            module = "t.wasm"
            inputs = ["a", "b"]
            output = "out"
            tables = { customers = { topic = "customers" } }
            "#,
            dir.path(),
        );
        assert_problems(
            &found,
            &[
                "pipelines.enrich.tables.customers.topic: \"customers\" is table \"again\" already",
                "pipelines.enrich.tables.mine.topic: \"enriched\" is also written by this pipeline",
                "pipelines.enrich.tables.no/slash: a table's name \"no/slash\" contains",
                "pipelines.enrich.tables.orders.topic: \"orders\" is also an input",
                "pipelines.two.tables: a pipeline with tables reads one input topic",
            ],
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = module_dir();
        let found = problems(
            r#"
            [kafka]
            brokers = ""
            [kafka.properties]
            "group.id" = "mine"
            "security.protocol" = "SASL_SSL"
            [pipelines.wc]
            module = "missing.wasm"
            inputs = ["text", "bad topic"]
            output = "text"
            commit_interval_ms = 0
            on_error = "dead-letter"
            [pipelines.other]
            module = "t.wasm"
            inputs = ["a"]
            output = "b"
            group_id = "weir.wc"
            dead_letter_topic = "dlq"
            "#,
            dir.path(),
        );
        let expected = [
            "kafka.brokers:",
            "kafka.properties.group.id:",
            "pipelines.wc.module:",
            "pipelines.wc.inputs[1]:",
            "pipelines.wc.output:",
            "pipelines.wc.commit_interval_ms:",
            "pipelines.wc.dead_letter_topic: on_error",
            "pipelines.other.dead_letter_topic: is set",
            "pipelines.wc.group_id: consumer group",
        ];
        for prefix in expected {
            assert!(
                found.iter().any(|p| p.starts_with(prefix)),
                "no problem starting {prefix:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn unknown_settings_are_refused_with_their_name() {
        let dir = module_dir();
        let found = problems(
            r#"
            [kafka]
            brokers = "embedded"
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            comit_interval_ms = 5
            "#,
            dir.path(),
        );
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("comit_interval_ms"), "{found:?}");
    }

    /// An unknown setting used to hide every other problem (serde stopped at it);
    /// now it is one problem among the rest, each named where it is.
    #[test]
    fn unknown_settings_are_reported_with_every_other_problem() {
        let dir = module_dir();
        let found = problems(
            r#"
            threads = 0
            [kafka]
            brokers = "embedded"
            [admin]
            lisen = "127.0.0.1:9464"
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "text"
            comit_interval_ms = 5
            [pipelines.wc.limits]
            memory_limit = 5
            "#,
            dir.path(),
        );
        assert_problems(
            &found,
            &[
                "admin.lisen: is not a Weir setting",
                "pipelines.wc.comit_interval_ms: is not a Weir setting",
                "pipelines.wc.limits.memory_limit: is not a Weir setting",
                "threads: must be between 1 and 256",
                "pipelines.wc.output: \"text\" is also an input",
            ],
        );

        // A value that cannot be read stops the reading: the unknown settings before
        // it are reported with it, and where it is.
        let found = problems(
            "[kafka]\nbrokers = \"embedded\"\nbroker = 1\n[pipelines.wc]\nmodule = \"t.wasm\"\n\
             inputs = \"text\"\noutput = \"counts\"\n",
            dir.path(),
        );
        let text = found.join("\n");
        assert!(
            text.contains("kafka.broker: is not a Weir setting"),
            "{text}"
        );
        assert!(text.contains("line 6, column 10:"), "{text}");
        assert_eq!(found.len(), 2, "{text}");
    }

    #[test]
    fn the_changelog_format_is_one_of_two_names() {
        let dir = module_dir();
        let text = |format: &str| {
            format!(
                "[kafka]\nbrokers = \"embedded\"\n[pipelines.wc]\nmodule = \"t.wasm\"\n\
                 inputs = [\"text\"]\noutput = \"counts\"\nchangelog_format = \"{format}\"\n"
            )
        };
        let config = Config::parse(&text("every-record"), dir.path()).unwrap();
        assert_eq!(
            config.pipelines["wc"].changelog_format,
            ChangelogFormat::EveryRecord
        );
        let found = problems(&text("headers"), dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("every-record"), "{found:?}");
    }

    #[test]
    fn property_values_may_be_numbers_and_booleans() {
        let dir = module_dir();
        let config = Config::parse(
            r#"
            [kafka]
            brokers = "localhost:9092"
            properties = { "socket.keepalive.enable" = true, "message.max.bytes" = 2000000 }
            [pipelines.wc]
            module = "t.wasm"
            inputs = ["text"]
            output = "counts"
            "#,
            dir.path(),
        )
        .unwrap();
        let values: Vec<String> = config
            .kafka
            .properties
            .values()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(values, ["2000000", "true"]);
    }
}
