//! Randomized out-of-order input through [`WindowedAggregate`] under the native
//! harness (which fires timers as the host does), checked against plain simulations
//! of the same windows.

use std::collections::BTreeMap;

use super::*;
use crate::testing::Harness;
use crate::{Config, Transform};

/// Counts per key in the windows its config names.
struct Counted(WindowedAggregate<Count>);

impl Transform for Counted {
    fn init(config: &Config) -> Result<Self, Error> {
        let number = |name: &str| -> Result<i64, Error> { Ok(config.parse(name)?.unwrap_or(0)) };
        let windows = match config.require("kind")? {
            "tumbling" => Windows::tumbling(number("size")?),
            "hopping" => Windows::hopping(number("size")?, number("advance")?),
            "sliding" => Windows::sliding(number("size")?),
            _ => Windows::session(number("gap")?),
        };
        let aggregate = WindowedAggregate::new("n", windows)?
            .grace_ms(number("grace")?)
            .emit(config.require("emit")?.parse()?)
            .late(config.require("late")?.parse()?);
        Ok(Self(aggregate))
    }

    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
        let results = self.0.add(ctx, &record, ())?;
        self.0.send_json(ctx, results)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let results = self
            .0
            .on_timer(ctx, &timer)?
            .ok_or_else(|| Error::msg("a timer of no window"))?;
        self.0.send_json(ctx, results)
    }
}

/// An emitted window: (key, start, end, count, final).
type Emitted = (String, i64, i64, u64, bool);

/// A small deterministic generator (no dependency for tests).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    windows: Windows,
    grace: i64,
    out_of_orderness: i64,
    emit: Emit,
}

/// Records of keys a..c whose timestamps wander forward with disorder.
fn records(dice: &mut Dice, n: usize) -> Vec<(String, i64)> {
    let mut clock = 1_000;
    (0..n)
        .map(|_| {
            clock += dice.below(4);
            let key = ["a", "b", "c"][dice.below(3) as usize].to_owned();
            (key, (clock - dice.below(30)).max(0))
        })
        .collect()
}

fn run(case: Case, input: &[(String, i64)]) -> (Vec<Emitted>, usize) {
    let mut config: Vec<(String, String)> = vec![
        ("grace".into(), case.grace.to_string()),
        ("late".into(), "side-output:late".into()),
        (
            "emit".into(),
            if case.emit == Emit::OnUpdate {
                "update"
            } else {
                "close"
            }
            .into(),
        ),
    ];
    let mut set = |name: &str, value: i64| config.push((name.into(), value.to_string()));
    let kind = match case.windows {
        Windows::Tumbling { size } => {
            set("size", size);
            "tumbling"
        }
        Windows::Hopping { size, advance } => {
            set("size", size);
            set("advance", advance);
            "hopping"
        }
        Windows::Sliding { size } => {
            set("size", size);
            "sliding"
        }
        Windows::Session { gap } => {
            set("gap", gap);
            "session"
        }
    };
    config.push(("kind".into(), kind.into()));
    let mut harness = Harness::<Counted>::with_config(Config::from(config))
        .unwrap()
        .with_max_out_of_orderness(case.out_of_orderness as u64);
    let mut emitted = Vec::new();
    let mut late = 0;
    for (key, timestamp) in input {
        let mut record = Record::from_value("x").with_key(key.as_str());
        record.timestamp = *timestamp;
        for output in harness.process(record).unwrap() {
            if output.topic.as_deref() == Some("late") {
                late += 1;
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_slice(output.value.as_deref().unwrap()).unwrap();
            emitted.push((
                String::from_utf8(output.key.unwrap()).unwrap(),
                value["window_start"].as_i64().unwrap(),
                value["window_end"].as_i64().unwrap(),
                value["value"].as_u64().unwrap(),
                value["final"].as_bool().unwrap(),
            ));
        }
    }
    assert!(
        harness.timer_errors().is_empty(),
        "{:?}",
        harness.timer_errors()
    );
    emitted.sort();
    (emitted, late)
}

/// The same windows, simulated plainly: record by record, each meeting the watermark
/// left by those before it; windows whose close it reached are emitted first.
fn reference(case: Case, input: &[(String, i64)]) -> (Vec<Emitted>, usize) {
    let mut emitted = Vec::new();
    let mut late = 0;
    let mut stream_time = None;
    let grace = case.grace;
    // (key, start, end) -> count, for fixed and sliding windows and sessions alike.
    let mut open: BTreeMap<(String, i64, i64), u64> = BTreeMap::new();
    // Every on-time record per key (sliding windows count them at close).
    let mut kept: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let close_of = |start: i64, end: i64| -> i64 {
        let _ = start;
        match case.windows {
            Windows::Session { gap } => end + gap + grace,
            _ => end + grace,
        }
    };
    let update = case.emit == Emit::OnUpdate;
    let watermark_of =
        |stream_time: Option<i64>| stream_time.map_or(i64::MIN, |t: i64| t - case.out_of_orderness);
    let close = |watermark: i64,
                 open: &mut BTreeMap<(String, i64, i64), u64>,
                 kept: &BTreeMap<String, Vec<i64>>,
                 emitted: &mut Vec<Emitted>| {
        let closing: Vec<_> = open
            .keys()
            .filter(|(_, start, end)| close_of(*start, *end) <= watermark)
            .cloned()
            .collect();
        for id in closing {
            let count = open.remove(&id).unwrap();
            let (key, start, end) = id;
            let count = match case.windows {
                Windows::Sliding { .. } => kept[&key]
                    .iter()
                    .filter(|t| (start..end).contains(*t))
                    .count() as u64,
                _ => count,
            };
            if !update {
                emitted.push((key, start, end, count, true));
            }
        }
    };
    for (key, t) in input {
        let t = *t;
        let watermark = watermark_of(stream_time);
        close(watermark, &mut open, &kept, &mut emitted);
        match case.windows {
            Windows::Tumbling { size } | Windows::Hopping { size, .. } => {
                let advance = match case.windows {
                    Windows::Hopping { advance, .. } => advance,
                    _ => size,
                };
                let mut added = false;
                for start in (t - size + 1)..=t {
                    if start.rem_euclid(advance) != 0 || start + size + grace <= watermark {
                        continue;
                    }
                    added = true;
                    let count = open.entry((key.clone(), start, start + size)).or_insert(0);
                    *count += 1;
                    if update {
                        emitted.push((key.clone(), start, start + size, *count, false));
                    }
                }
                late += usize::from(!added);
            }
            Windows::Sliding { size } => {
                if t + 1 + grace <= watermark {
                    late += 1;
                } else {
                    kept.entry(key.clone()).or_default().push(t);
                    open.insert((key.clone(), t + 1 - size, t + 1), 0);
                    if update {
                        let times = &kept[key];
                        let mut ends: Vec<i64> = times
                            .iter()
                            .copied()
                            .filter(|e| (t..t + size).contains(e))
                            .collect();
                        ends.sort();
                        ends.dedup();
                        for e in ends {
                            let count = times
                                .iter()
                                .filter(|x| (e + 1 - size..=e).contains(*x))
                                .count() as u64;
                            emitted.push((key.clone(), e + 1 - size, e + 1, count, false));
                        }
                    }
                }
            }
            Windows::Session { gap } => {
                let reached: Vec<(String, i64, i64)> = open
                    .keys()
                    .filter(|(k, first, end)| k == key && first - gap <= t && t <= end - 1 + gap)
                    .cloned()
                    .collect();
                if reached.is_empty() && t + 1 + gap + grace <= watermark {
                    late += 1;
                } else {
                    let mut first = t;
                    let mut end = t + 1;
                    let mut count = 1;
                    for id in reached {
                        count += open.remove(&id).unwrap();
                        first = first.min(id.1);
                        end = end.max(id.2);
                    }
                    open.insert((key.clone(), first, end), count);
                    if update {
                        emitted.push((key.clone(), first, end, count, false));
                    }
                }
            }
        }
        stream_time = Some(stream_time.map_or(t, |s: i64| s.max(t)));
    }
    close(watermark_of(stream_time), &mut open, &kept, &mut emitted);
    emitted.sort();
    (emitted, late)
}

fn cases(seed: u64) -> Vec<Case> {
    let mut dice = Dice(seed);
    let mut pick = |low: i64, high: i64| low + dice.below((high - low + 1) as u64);
    let size = pick(5, 40);
    let windows = [
        Windows::tumbling(size),
        Windows::hopping(size, pick(1, size)),
        Windows::sliding(size),
        Windows::session(pick(1, 15)),
    ];
    let grace = pick(0, 15);
    let out_of_orderness = pick(0, 20);
    windows
        .into_iter()
        .flat_map(|windows| {
            [Emit::OnClose, Emit::OnUpdate].map(|emit| Case {
                windows,
                grace,
                out_of_orderness,
                emit,
            })
        })
        .collect()
}

#[test]
fn every_kind_of_window_matches_its_plain_simulation_on_out_of_order_input() {
    let mut windows_emitted = 0;
    let mut late_records = 0;
    for seed in 0..60 {
        let input = records(&mut Dice(seed ^ 0x5eed), 300);
        for case in cases(seed) {
            let (got, late) = run(case, &input);
            let (want, want_late) = reference(case, &input);
            assert_eq!(got, want, "seed {seed}, {case:?}");
            assert_eq!(late, want_late, "late records, seed {seed}, {case:?}");
            windows_emitted += got.len();
            late_records += late;
        }
    }
    // The input exercises both: windows close and records arrive too late.
    assert!(windows_emitted > 10_000, "{windows_emitted}");
    assert!(late_records > 100, "{late_records}");
}

#[test]
fn closed_windows_leave_no_state_and_no_timers() {
    let input = records(&mut Dice(7), 200);
    let kinds = [
        ("tumbling", "size", "10"),
        ("hopping", "size", "10"),
        ("sliding", "size", "10"),
        ("session", "gap", "5"),
    ];
    for (kind, parameter, value) in kinds {
        for emit in ["close", "update"] {
            let config = Config::from(vec![
                ("kind".to_owned(), kind.to_owned()),
                (parameter.into(), value.into()),
                ("advance".into(), "3".into()),
                ("grace".into(), "4".into()),
                ("emit".into(), emit.into()),
                ("late".into(), "drop".into()),
            ]);
            let mut harness = Harness::<Counted>::with_config(config).unwrap();
            for (key, timestamp) in &input {
                let mut record = Record::from_value("x").with_key(key.as_str());
                record.timestamp = *timestamp;
                harness.process(record).unwrap();
            }
            assert!(!harness.state().is_empty(), "{kind}: windows open");
            harness.advance_watermark(1 << 40);
            assert!(
                harness.state().is_empty(),
                "{kind} {emit}: {:?}",
                harness.state()
            );
            assert_eq!(harness.state().timers().count(), 0, "{kind} {emit}");
        }
    }
}

#[test]
fn a_late_record_is_dropped_failed_or_sent_aside_as_configured() {
    let config = |late: &str| {
        Config::from(vec![
            ("kind".to_owned(), "tumbling".to_owned()),
            ("size".into(), "10".into()),
            ("emit".into(), "close".into()),
            ("late".into(), late.into()),
        ])
    };
    let at = |timestamp| {
        let mut record = Record::from_value("v").with_key("k");
        record.timestamp = timestamp;
        record
    };
    for late in ["drop", "dead-letter", "side-output:late-clicks"] {
        let mut harness = Harness::<Counted>::with_config(config(late)).unwrap();
        harness.process(at(5)).unwrap();
        let closed = harness.process(at(25)).unwrap();
        assert_eq!(closed.len(), 1, "the first window closed");
        let result = harness.process(at(3));
        match late {
            "drop" => assert!(result.unwrap().is_empty()),
            "dead-letter" => {
                let error = result.unwrap_err().to_string();
                assert!(
                    error.contains("late record") && error.contains("closed at 10"),
                    "{error}"
                );
            }
            _ => {
                let outputs = result.unwrap();
                assert_eq!(outputs.len(), 1);
                assert_eq!(outputs[0].topic.as_deref(), Some("late-clicks"));
                assert_eq!(outputs[0].timestamp, Some(3));
                assert_eq!(outputs[0].value.as_deref(), Some(&b"v"[..]));
            }
        }
    }
    assert!(
        "side-output:".parse::<Late>().is_err() && "later".parse::<Late>().is_err(),
        "bad policies are refused"
    );
}
