//! Commands over a running daemon's admin API: `weir deploy`, `rollback`, `status`,
//! `history`, `pause`, `resume`, `state get`; and `weir validate`, which needs no
//! daemon. Human output by default, `--json` prints the API's JSON as it is.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Exit;
use crate::config::{ADMIN_TOKEN_ENV, Config};

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct Connection {
    /// The daemon's admin API.
    #[arg(long, env = "WEIR_ADMIN_URL", default_value = "http://127.0.0.1:9464")]
    url: String,
    /// Bearer token for calls that change something.
    #[arg(long, env = ADMIN_TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Bearer token for state reads, when the daemon sets admin.read_token (the admin
    /// token serves too).
    #[arg(long, env = "WEIR_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// PEM certificate(s) to trust for an https:// URL, when the daemon's certificate
    /// is not signed by a public CA (its own, or a private CA's).
    #[arg(long, env = "WEIR_ADMIN_CA", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    json: bool,
    /// Set when the URL was not given but advertised by another instance (a state
    /// read's owner), so that an error says where it came from.
    #[arg(skip)]
    advertised: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct DeployArgs {
    /// The pipeline to deploy to.
    pipeline: String,
    /// The new module (.wasm component).
    module: PathBuf,
    /// Recorded in the version history as who deployed [default: $USER].
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(super) struct PipelineArgs {
    pipeline: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(super) struct StatusArgs {
    /// One pipeline; all of them when left out.
    pipeline: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(super) struct StateGetArgs {
    pipeline: String,
    /// The state key (UTF-8, or base64 with --base64).
    key: String,
    /// The key is base64, and the value is printed as base64.
    #[arg(long)]
    base64: bool,
    /// The input topic whose state to read (needed when the pipeline has several).
    #[arg(long)]
    topic: Option<String>,
    /// The partition to read; by default the one Kafka's default partitioner gives
    /// the key.
    #[arg(long)]
    partition: Option<i32>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, clap::Args)]
pub(super) struct ValidateArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Also load every module (compile and check it against the contract).
    #[arg(long)]
    modules: bool,
}

/// An answer from the API: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

/// TLS settings that trust the certificates in the PEM file `ca` (and no others).
fn trusting(ca: &Path) -> Result<ureq::tls::TlsConfig, Exit> {
    let refuse = |why: String| {
        fail(
            Exit::Usage,
            format!("cannot use --ca-cert {}: {why}", ca.display()),
        )
    };
    let pem = std::fs::read(ca).map_err(|e| refuse(e.to_string()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(e.to_string()))?;
    if certs.is_empty() {
        return Err(refuse("it holds no PEM certificate".to_owned()));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

impl Connection {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        user: Option<&str>,
    ) -> Result<Answer, Exit> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(ca) = &self.ca_cert {
            config = config.tls_config(trusting(ca)?);
        }
        let agent: ureq::Agent = config.build().into();
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(user) = user {
            request = request.header("X-Weir-User", user);
        }
        if body.is_some_and(|b| !b.is_empty()) {
            // The daemon answers a refused call (no token, a wrong one) before reading
            // the body; this waits for its go-ahead before sending a module.
            request = request.header("Expect", "100-continue");
        }
        let request = request
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .map_err(|e| fail(Exit::Usage, format!("bad request to {url}: {e}")))?;
        let mut response = agent.run(request).map_err(|e| {
            let hint = if self.advertised {
                "the partition's owner advertises this address: set [admin] advertised_url on that instance to one this machine can reach"
            } else {
                "is `weir serve` running, and is --url (WEIR_ADMIN_URL) right?"
            };
            fail(
                Exit::Unavailable,
                format!("cannot reach the Weir daemon at {url}: {e}; {hint}"),
            )
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }
}

impl Connection {
    /// Make a request and report its answer: `human` prints a success, `--json` prints
    /// the answer as it is, and a refusal prints the API's reason.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        user: Option<&str>,
        human: impl FnOnce(&Value),
    ) -> Exit {
        match self.request(method, path, body, user) {
            Ok(answer) => finish(self, answer, human),
            Err(exit) => exit,
        }
    }
}

fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    eprintln!("error: {message}");
    exit
}

/// The exit code for a refused call, after printing the API's reason.
fn refused(answer: &Answer) -> Exit {
    let message = answer
        .body
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.to_string());
    fail(exit_for(answer.status), message)
}

/// Print `answer` as JSON, or with `human` when it is a success.
fn finish(connection: &Connection, answer: Answer, human: impl FnOnce(&Value)) -> Exit {
    let ok = (200..300).contains(&answer.status);
    if connection.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer.body).unwrap_or_default()
        );
        return if ok {
            Exit::Success
        } else {
            exit_for(answer.status)
        };
    }
    if ok {
        human(&answer.body);
        Exit::Success
    } else {
        refused(&answer)
    }
}

/// What an error status means as an exit code.
fn exit_for(status: u16) -> Exit {
    match status {
        401 | 403 => Exit::Unauthorized,
        404 => Exit::NOT_FOUND,
        422 => Exit::Module,
        400 | 409 | 413 | 421 => Exit::Refused,
        _ => Exit::Unavailable,
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn u64_of(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub(super) fn deploy(args: DeployArgs) -> Exit {
    let wasm = match std::fs::read(&args.module) {
        Ok(wasm) => wasm,
        Err(e) => {
            return fail(
                Exit::Usage,
                format!("cannot read {}: {e}", args.module.display()),
            );
        }
    };
    let user = args
        .user
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned());
    let path = format!("/v1/pipelines/{}/deploy", args.pipeline);
    args.connection.call("POST", &path, Some(&wasm), Some(&user), |body| {
        let version = u64_of(body, "version");
        if body.get("changed") == Some(&Value::Bool(false)) {
            println!(
                "{} already runs this module (v{version}); nothing changed",
                args.pipeline
            );
        } else {
            println!(
                "deployed {} v{version} ({}, {} bytes); partitions switch at their next checkpoint",
                args.pipeline,
                short(str_of(&body["event"], "hash")),
                wasm.len()
            );
        }
    })
}

pub(super) fn rollback(args: PipelineArgs) -> Exit {
    let path = format!("/v1/pipelines/{}/rollback", args.pipeline);
    args.connection.call("POST", &path, None, None, |body| {
        println!(
            "rolled {} back to v{}; partitions switch at their next checkpoint",
            args.pipeline,
            u64_of(body, "version")
        );
    })
}

pub(super) fn pause(args: PipelineArgs, paused: bool) -> Exit {
    let verb = if paused { "pause" } else { "resume" };
    let path = format!("/v1/pipelines/{}/{verb}", args.pipeline);
    args.connection.call("POST", &path, None, None, |_| {
        let done = if paused { "paused" } else { "resumed" };
        println!("{} {done}", args.pipeline);
    })
}

pub(super) fn status(args: StatusArgs) -> Exit {
    let path = match &args.pipeline {
        Some(name) => format!("/v1/pipelines/{name}"),
        None => "/v1/pipelines".to_owned(),
    };
    args.connection.call("GET", &path, None, None, |body| {
        let pipelines = match body {
            Value::Array(all) => all.clone(),
            one => vec![one.clone()],
        };
        println!(
            "{:<20} {:<9} {:>7} {:<13} {:>10} {:>8}",
            "PIPELINE", "STATE", "VERSION", "MODULE", "PARTITIONS", "LAG"
        );
        for p in &pipelines {
            let partitions = p["partitions"].as_array().cloned().unwrap_or_default();
            let lag: u64 = partitions.iter().map(|q| u64_of(q, "lag")).sum();
            let running = partitions
                .iter()
                .filter(|q| str_of(q, "phase") == "running")
                .count();
            println!(
                "{:<20} {:<9} {:>7} {:<13} {:>10} {:>8}",
                str_of(p, "name"),
                str_of(p, "state"),
                format!("v{}", u64_of(p, "version")),
                short(str_of(p, "module")),
                format!("{running}/{}", partitions.len()),
                lag
            );
            if let Some(error) = p.get("error").and_then(Value::as_str) {
                println!("  error: {error}");
            }
            let restoring: Vec<u64> = partitions
                .iter()
                .filter(|q| str_of(q, "phase") == "restoring")
                .map(|q| u64_of(q, "restore_remaining"))
                .collect();
            if !restoring.is_empty() {
                println!(
                    "  restoring {} partition(s): {} changelog records left",
                    restoring.len(),
                    restoring.iter().sum::<u64>()
                );
            }
            let watermark_lags: Vec<i64> = partitions
                .iter()
                .filter_map(|q| q.get("watermark_lag_ms").and_then(Value::as_i64))
                .collect();
            if let Some(most) = watermark_lags.iter().max() {
                println!(
                    "  event time: watermark {:.1} s behind the clock at most, over {} partition(s)",
                    *most as f64 / 1000.0,
                    watermark_lags.len()
                );
            }
            if let Some([seen, failed]) = p
                .get("trial")
                .and_then(|t| Some([t.get(0)?.as_u64()?, t.get(1)?.as_u64()?]))
            {
                println!("  on trial: {failed} of {seen} records failed so far");
            }
        }
    })
}

pub(super) fn history(args: PipelineArgs) -> Exit {
    let path = format!("/v1/pipelines/{}/history", args.pipeline);
    args.connection.call("GET", &path, None, None, |body| {
        println!(
            "{:>7}  {:<13} {:<24} {:<12} {:>10}  {:<13} REASON",
            "VERSION", "ACTION", "AT", "BY", "BYTES", "MODULE"
        );
        for e in body.as_array().into_iter().flatten() {
            println!(
                "{:>7}  {:<13} {:<24} {:<12} {:>10}  {:<13} {}",
                format!("v{}", u64_of(e, "version")),
                str_of(e, "action"),
                str_of(e, "at"),
                str_of(e, "by"),
                u64_of(e, "size"),
                short(str_of(e, "hash")),
                str_of(e, "reason")
            );
        }
    })
}

pub(super) fn state_get(args: StateGetArgs) -> Exit {
    let encoding = if args.base64 { "base64" } else { "utf8" };
    let mut query = vec![
        format!("key={}", encode_query(&args.key)),
        format!("encoding={encoding}"),
    ];
    if let Some(topic) = &args.topic {
        query.push(format!("topic={}", encode_query(topic)));
    }
    if let Some(partition) = args.partition {
        query.push(format!("partition={partition}"));
    }
    let path = format!("/v1/pipelines/{}/state?{}", args.pipeline, query.join("&"));
    // A read carries the read token if one is given, else the admin token.
    let reader = Connection {
        token: args
            .connection
            .read_token
            .clone()
            .or(args.connection.token.clone()),
        ..args.connection.clone()
    };
    let mut answer = match reader.request("GET", &path, None, None) {
        Ok(answer) => answer,
        Err(exit) => return exit,
    };
    // Another instance owns the key's partition: ask it, once. (Partitions may move
    // again in between; a second 421 is reported rather than chased.)
    let owner_url = (answer.status == 421)
        .then(|| {
            answer.body["owner"]
                .get("admin_url")?
                .as_str()
                .map(str::to_owned)
        })
        .flatten();
    let followed = owner_url.is_some();
    if let Some(url) = owner_url {
        eprintln!("reading from the partition's owner, {url}");
        // The owner's address came from the group, not from the user, but the
        // instance asked gives out only peers its [admin] peer_urls trusts: the read
        // token goes along (the admin token does not).
        let owner = Connection {
            url,
            token: args.connection.read_token.clone(),
            advertised: true,
            ..args.connection.clone()
        };
        answer = match owner.request("GET", &path, None, None) {
            Ok(answer) => answer,
            Err(exit) => return exit,
        };
    }
    if answer.status == 421 && !args.connection.json {
        let owner = &answer.body["owner"];
        let hint = if followed {
            "the partition moved while asking; try again after the rebalance".to_owned()
        } else if let Some(url) = owner.get("disallowed_url").and_then(|u| u.as_str()) {
            format!(
                "its owner advertises {url}, which the instance asked does not trust: add a \
                 prefix of it to that instance's [admin] peer_urls, or ask {url} yourself"
            )
        } else if owner.is_object() {
            format!(
                "its owner, client {:?} on {:?}, advertises no admin API; give it one with [admin] listen",
                str_of(owner, "client_id"),
                str_of(owner, "host")
            )
        } else {
            "no instance says it owns the partition (a rebalance may be under way); try again, and check `weir status` on each instance".to_owned()
        };
        return fail(
            Exit::Refused,
            format!("{} ({hint})", str_of(&answer.body, "error")),
        );
    }
    finish(&args.connection, answer, |body| {
        println!("{}", str_of(body, "value"));
    })
}

/// Percent-encode a query value (everything but unreserved characters).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn validate(args: ValidateArgs) -> Exit {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => return fail(Exit::Usage, e),
    };
    if args.modules {
        let engine = match crate::engine::Engine::new(crate::engine::EngineConfig::default()) {
            Ok(engine) => engine,
            Err(e) => return fail(Exit::Failed, e),
        };
        for (name, pipeline) in &config.pipelines {
            if let Err(e) = engine.load_file(&pipeline.module) {
                return fail(Exit::Module, format!("pipeline {name:?}: {e}"));
            }
        }
    }
    println!(
        "{} is valid: {} pipeline(s){}",
        args.config.display(),
        config.pipelines.len(),
        if args.modules {
            ", every module loads"
        } else {
            ""
        }
    );
    Exit::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode_query("oak-1_2.3~"), "oak-1_2.3~");
    }
}
