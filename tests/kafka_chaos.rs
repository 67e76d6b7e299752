//! Crashes under continuous input, on Apache Kafka: two `weir serve` instances share a
//! group while a producer writes word-count lines without pause, and one instance after
//! the other is SIGKILLed, at random moments and at the failpoints of the checkpoint
//! cycle, and started again. At the end every input is counted exactly once, in the
//! committed outputs (raw log and `read_committed` consumer alike) and in the state a
//! fresh instance restores from the changelog.
//!
//! The suite's quick form makes 20 kills at 300 lines a second. The long form is the
//! same test with more: `WEIR_CHAOS_KILLS=200 WEIR_CHAOS_RATE=6000 cargo nextest run -p
//! weir-tests --test kafka_chaos` (WEIR_CHAOS_SEED repeats a run's choices).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_tests::Dice;
use weir_tests::daemon::Daemon;
use weir_tests::wordcount::{Input, Setup, WAIT, wait_for_outputs};

const EXE: &str = env!("CARGO_BIN_EXE_weir-under-test");
const PARTITIONS: i32 = 8;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Produce `rate` lines a second over every partition until `stop`; the input's
/// expectations come back at the end.
fn produce_until(mut input: Input, rate: u64, stop: Arc<AtomicBool>) -> Input {
    let tick = Duration::from_millis(100);
    let per_tick = (rate / 10).max(1) as usize;
    let per_partition = per_tick.div_ceil(PARTITIONS as usize);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        input.produce(PARTITIONS, per_partition);
        std::thread::sleep(tick.saturating_sub(started.elapsed()));
    }
    input
}

#[test]
fn kills_under_continuous_input_lose_and_duplicate_nothing() {
    let kills = env_number("WEIR_CHAOS_KILLS", 20);
    let rate = env_number("WEIR_CHAOS_RATE", 300);
    let seed = env_number(
        "WEIR_CHAOS_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!("chaos: {kills} kills at {rate} lines/s, WEIR_CHAOS_SEED={seed}");
    let mut dice = Dice(seed);

    let setup = Setup::new(EXE, PARTITIONS, &["counts"]);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (input, stop) = (setup.input(), stop.clone());
        std::thread::spawn(move || produce_until(input, rate, stop))
    };

    let names = ["a", "b"];
    let mut instances: Vec<Option<Daemon>> =
        names.iter().map(|n| Some(setup.start(n, None))).collect();
    let mut done = 0;
    let mut round = 0;
    while done < kills {
        let slot = round % 2;
        round += 1;
        // Let it work a while: between half a second and four.
        std::thread::sleep(Duration::from_millis(500 + dice.below(3500)));
        let victim = instances[slot]
            .take()
            .expect("every slot runs between rounds");
        victim.kill();
        done += 1;
        let point = match dice.below(3) {
            0 => None,
            1 => Some("checkpoint.before-commit"),
            _ => Some("checkpoint.after-commit"),
        };
        match point {
            None => eprintln!("kill {done}: {} at a random moment", names[slot]),
            Some(point) => {
                // And once more at a step of the checkpoint cycle in its next life.
                let points = format!("{point}={}", 1 + dice.below(4));
                eprintln!("kill {done}: {}, then at {points}", names[slot]);
                let mut armed = setup.start(names[slot], Some(&points));
                armed.assert_killed_at(&points);
                done += 1;
            }
        }
        instances[slot] = Some(setup.start(names[slot], None));
    }

    stop.store(true, Ordering::Relaxed);
    let input = producer.join().expect("the producer thread");
    let total = input.expected.total_outputs();
    let lines: usize = input.next.values().sum();
    eprintln!("chaos: {done} kills, {lines} lines in, {total} outputs expected");
    wait_for_outputs(
        &setup.broker.bootstrap,
        &setup.topic("counts"),
        total,
        instances[0].as_ref(),
    );
    for daemon in instances.into_iter().flatten() {
        assert!(daemon.terminate().success());
    }
    // A fresh instance restores every partition's state from the changelog alone.
    let fresh = setup.start("fresh", None);
    fresh.wait_for("partition running", PARTITIONS as usize, WAIT);
    assert!(fresh.terminate().success());
    setup.assert_exact(&input, "fresh");
}
