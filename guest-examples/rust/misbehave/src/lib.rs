//! A deliberately badly behaved transform, for Weir's own sandbox and limit tests.
//! Each record's value names what to do:
//!
//! * `loop`: spin forever (the call timeout must stop it)
//! * `alloc`: allocate without bound (the memory limit must stop it)
//! * `panic`: panic (a trap)
//! * `recurse`: recurse without end (the guest's stack overflows: a trap)
//! * `reject`: return an error for the record
//! * `open-file`: try to read `/etc/passwd` (the sandbox has no filesystem)
//! * `connect`: try to open a TCP connection to 127.0.0.1:9 (no sockets)
//! * `env`: report how many environment variables it can see (none)
//! * `put-huge`: write a 2 MiB state value (over the state value limit)
//! * `state-round-trip`: write values of 0, 16, 17 and 300 bytes and read them back;
//!   `state-read`: read them back only
//! * `state-scan`: write three keys under `scan/`, delete one, and emit what a scan sees
//! * `log`: write to stdout, stderr and the log import
//! * `set:KEY=VALUE`, `del:KEY`: write or delete state key `kv/KEY` and echo the
//!   command (the changelog compaction test)
//! * `send-to:TOPIC`: write state key `sent`, then send an output to topic `TOPIC`
//!   (the host refuses topics the pipeline may not write)
//! * `send-bytes:N`: send an output whose value is N bytes (the host bounds outputs)
//! * `reject-bytes:N`: reject the record with a message of N bytes
//! * `clock-random`: emit the wall clock's seconds, the monotonic clock's reading and a
//!   hash under a new `RandomState` (seeded from WASI's random bytes)
//! * `log-flood:N`: write N lines to stdout (the host rate-limits guest logs)
//! * `sleep:MS`: sleep MS milliseconds (a clock subscription and a poll), then echo
//!   how long it slept by the monotonic clock
//! * `state-bomb:N`: write N new state values of 512 KiB (the host bounds buffered
//!   state)
//! * `timer:AT:KEY`, `ptimer:AT:KEY`: set an event-time (processing-time) timer for KEY
//!   at AT ms. When a timer fires, its key says what to do: `reject`, `panic` and
//!   `loop` fail as the commands of those names do; any other emits `fired` with
//!   `KEY@AT` and the watermark
//! * `scan-all`: emit how many keys a scan of the whole state sees, and how many of
//!   them start with 0xFF 0xFF (the host's reserved range must stay hidden)
//! * `put-reserved`: write a key in the host's reserved range (refused)
//! * anything else: count it in state (`seen`) and echo it

use weir_sdk::{Config, Context, Error, Output, Record, Timer, Transform};

pub struct Misbehave;

impl Transform for Misbehave {
    fn init(config: &Config) -> Result<Self, Error> {
        if config.get("fail_init").is_some() {
            return Err(Error::msg("init refused: fail_init is set"));
        }
        Ok(Misbehave)
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let command = record.value_str()?.to_owned();
        match command.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("the record asked for a panic"),
            "recurse" => {
                ctx.send("recurse", recurse(1).to_string());
            }
            "reject" => return Err(Error::msg("the record asked to be rejected")),
            "open-file" => {
                let outcome = match std::fs::read_to_string("/etc/passwd") {
                    Ok(text) => format!("opened: {} bytes", text.len()),
                    Err(e) => format!("refused: {e}"),
                };
                ctx.send("open-file", outcome);
            }
            "connect" => {
                let outcome = match std::net::TcpStream::connect("127.0.0.1:9") {
                    Ok(_) => "connected".to_owned(),
                    Err(e) => format!("refused: {e}"),
                };
                ctx.send("connect", outcome);
            }
            "env" => ctx.send("env", std::env::vars().count().to_string()),
            "put-huge" => ctx.state().put("huge", vec![0u8; 2 << 20]),
            "state-round-trip" => {
                // Values around `get-small`'s 16 bytes, read back in the same batch
                // (from the SDK's own write buffer); `state-read` reads them from the
                // host in a later one.
                let values: [(&str, &[u8]); 4] = [
                    ("empty", b""),
                    ("sixteen", b"0123456789abcdef"),
                    ("seventeen", b"0123456789abcdefg"),
                    ("long", &[b'x'; 300]),
                ];
                for (key, value) in values {
                    ctx.state().put(key, value);
                }
                send_round_trip_values(ctx);
            }
            "state-read" => send_round_trip_values(ctx),
            "state-scan" => {
                // A scan sees the batch's own writes and deletes.
                for (key, value) in [("scan/a", "1"), ("scan/b", "2"), ("scan/c", "3")] {
                    ctx.state().put(key, value);
                }
                ctx.state().delete("scan/b");
                let seen: Vec<String> = ctx
                    .state()
                    .scan("scan/")
                    .map(|(k, v)| format!("{}={}", lossy(&k), lossy(&v)))
                    .collect();
                ctx.send("state-scan", seen.join(","));
            }
            "log" => {
                println!("hello from stdout");
                eprintln!("hello from stderr");
                weir_sdk::log::info("hello from the log import");
                ctx.send("log", "logged");
            }
            command if command.starts_with("send-to:") => {
                let topic = &command["send-to:".len()..];
                ctx.state().put("sent", topic);
                ctx.emit(Output::new(topic).with_key("injected").to_topic(topic));
            }
            command
                if command.starts_with("send-bytes:") || command.starts_with("reject-bytes:") =>
            {
                let (what, n) = command.split_once(':').expect("prefix has a colon");
                let n: usize = n.parse().map_err(|_| Error::msg("N must be a number"))?;
                if what == "reject-bytes" {
                    return Err(Error::msg("r".repeat(n)));
                }
                ctx.send(what, vec![b'b'; n]);
            }
            "clock-random" => {
                use std::hash::BuildHasher;
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let started = std::time::Instant::now();
                let monotonic = started.elapsed().as_nanos();
                let hash = std::collections::hash_map::RandomState::new().hash_one(42u64);
                ctx.send("clock-random", format!("{wall} {monotonic} {hash}"));
            }
            command if command.starts_with("log-flood:") => {
                let n: usize = command["log-flood:".len()..]
                    .parse()
                    .map_err(|_| Error::msg("N must be a number"))?;
                for i in 0..n {
                    println!("flood line {i}");
                }
                ctx.send("log-flood", n.to_string());
            }
            command if command.starts_with("sleep:") => {
                let ms: u64 = command["sleep:".len()..]
                    .parse()
                    .map_err(|_| Error::msg("MS must be a number"))?;
                let started = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                ctx.send("slept", started.elapsed().as_millis().to_string());
            }
            command if command.starts_with("state-bomb:") => {
                let n: usize = command["state-bomb:".len()..]
                    .parse()
                    .map_err(|_| Error::msg("N must be a number"))?;
                for i in 0..n {
                    let key = format!("bomb/{}/{i}", record.offset);
                    ctx.state().put(key, vec![b'x'; 512 << 10]);
                }
                ctx.send("state-bomb", n.to_string());
            }
            command if command.starts_with("set:") || command.starts_with("del:") => {
                let (op, rest) = command.split_at(4);
                match (op, rest.split_once('=')) {
                    ("set:", Some((key, value))) => {
                        ctx.state().put(format!("kv/{key}"), value);
                    }
                    ("del:", None) => ctx.state().delete(format!("kv/{rest}")),
                    _ => return Err(Error::msg("use set:KEY=VALUE or del:KEY")),
                }
                ctx.send(command, "done");
            }
            command if command.starts_with("timer:") || command.starts_with("ptimer:") => {
                let (kind, rest) = command.split_once(':').expect("prefix has a colon");
                let (at, key) = rest
                    .split_once(':')
                    .ok_or_else(|| Error::msg("use timer:AT:KEY"))?;
                let at: i64 = at.parse().map_err(|_| Error::msg("AT must be a number"))?;
                let timer = match kind {
                    "timer" => Timer::event(at, key),
                    _ => Timer::processing(at, key),
                };
                ctx.set_timer(&timer);
                ctx.send(command, "set");
            }
            "scan-all" => {
                let keys: Vec<Vec<u8>> = ctx.state().scan("").map(|(key, _)| key).collect();
                let host = keys.iter().filter(|k| k.starts_with(b"\xff\xff")).count();
                ctx.send("scan-all", format!("{} {host}", keys.len()));
            }
            "put-reserved" => ctx.state().put(b"\xff\xffweir\x00mine", "x"),
            other => {
                let seen = ctx
                    .table::<u64>("")
                    .update("seen", |n| n.unwrap_or(0) + 1)?;
                ctx.send(other, seen.to_string());
            }
        }
        Ok(())
    }

    /// What a fired timer does, by its key.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let key = String::from_utf8_lossy(&timer.key).into_owned();
        match key.as_str() {
            "reject" => return Err(Error::msg("the timer asked to be rejected")),
            "panic" => panic!("the timer asked for a panic"),
            "loop" => loop {
                std::hint::black_box(0);
            },
            _ => {
                let watermark = ctx.watermark();
                ctx.send("fired", format!("{key}@{} wm={watermark}", timer.at));
            }
        }
        Ok(())
    }
}

/// Recurse without end; the arithmetic keeps it from being a loop in disguise.
#[allow(unconditional_recursion)] // the point: the guest's stack must overflow
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + depth
}

/// The values `state-round-trip` writes, as outputs keyed by their state keys.
fn send_round_trip_values(ctx: &mut Context<'_>) {
    for key in ["empty", "sixteen", "seventeen", "long", "missing"] {
        let value = ctx.state().get(key);
        ctx.send(key, value.unwrap_or_else(|| b"(none)".to_vec()));
    }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

weir_sdk::export!(Misbehave);
