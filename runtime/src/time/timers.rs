//! Timers as state entries: how a timer is named in the partition's store.
//!
//! A timer is (domain, time, key): "call the transform for `key` once the watermark
//! (event time) or the wall clock (processing time) reaches `at`". Its state key sorts
//! by domain, then time, then key, so the timers due are always a prefix of a scan
//! and fire in time order. Setting a timer twice is one timer; the value is empty.

/// Keys the host keeps for itself in every partition's state. Transforms cannot read,
/// write or scan them (the engine refuses and hides them); 0xFF 0xFF sorts the range
/// after nearly every key a transform uses.
pub const RESERVED_PREFIX: &[u8] = b"\xff\xffweir\x00";

/// A scan that starts after this key has passed every host key: the host never
/// writes a key with 0xFF right after [`RESERVED_PREFIX`], and any key past the range
/// differs from the prefix in its last byte, upwards.
pub const RESERVED_END: &[u8] = b"\xff\xffweir\x00\xff";

/// The state key of the partition's stream time ([`super::EventClock::encode`]).
pub const CLOCK_KEY: &[u8] = b"\xff\xffweir\x00clock";

const TIMER_TAG: &[u8] = b"timer\x00";

/// Which clock a timer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// The partition's watermark: fires once records show that time has passed.
    Event,
    /// The wall clock (the stream time under `limits.deterministic`): fires at the
    /// next point where timers fire, or within about a second on a partition that
    /// receives no records.
    Processing,
}

impl std::fmt::Display for TimeDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeDomain::Event => "event-time",
            TimeDomain::Processing => "processing-time",
        })
    }
}

impl TimeDomain {
    fn tag(self) -> u8 {
        match self {
            TimeDomain::Event => b'e',
            TimeDomain::Processing => b'p',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            b'e' => Some(TimeDomain::Event),
            b'p' => Some(TimeDomain::Processing),
            _ => None,
        }
    }
}

/// One timer of one partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub domain: TimeDomain,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub key: Vec<u8>,
}

/// Whether `key` belongs to the host, not the transform.
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// Whether `key` is a timer's state key (of either domain).
pub fn is_timer_key(key: &[u8]) -> bool {
    key.strip_prefix(RESERVED_PREFIX)
        .is_some_and(|rest| rest.starts_with(TIMER_TAG))
}

/// The scan prefix of every timer of `domain`, in firing order.
pub fn domain_prefix(domain: TimeDomain) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(RESERVED_PREFIX.len() + TIMER_TAG.len() + 1);
    prefix.extend_from_slice(RESERVED_PREFIX);
    prefix.extend_from_slice(TIMER_TAG);
    prefix.push(domain.tag());
    prefix
}

/// Big-endian with the sign bit flipped: byte order is numeric order.
fn sortable(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

impl Timer {
    pub fn new(domain: TimeDomain, at: i64, key: impl Into<Vec<u8>>) -> Self {
        Self {
            domain,
            at,
            key: key.into(),
        }
    }

    /// Where the timer is stored.
    pub fn state_key(&self) -> Vec<u8> {
        let mut key =
            Vec::with_capacity(RESERVED_PREFIX.len() + TIMER_TAG.len() + 1 + 8 + self.key.len());
        key.extend_from_slice(RESERVED_PREFIX);
        key.extend_from_slice(TIMER_TAG);
        key.push(self.domain.tag());
        key.extend_from_slice(&sortable(self.at));
        key.extend_from_slice(&self.key);
        key
    }

    /// The timer stored under `state_key`, if it is one.
    pub fn from_state_key(state_key: &[u8]) -> Option<Timer> {
        let rest = state_key
            .strip_prefix(RESERVED_PREFIX)?
            .strip_prefix(TIMER_TAG)?;
        let (&tag, rest) = rest.split_first()?;
        let domain = TimeDomain::from_tag(tag)?;
        let at = unsortable(rest.get(..8)?.try_into().ok()?);
        Some(Timer::new(domain, at, &rest[8..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_reads_back_from_its_state_key() {
        for at in [i64::MIN, -1, 0, 1, 1_700_000_000_000, i64::MAX] {
            for key in [&b""[..], b"user-1", b"\xff\xffweir\x00"] {
                for domain in [TimeDomain::Event, TimeDomain::Processing] {
                    let timer = Timer::new(domain, at, key);
                    let stored = timer.state_key();
                    assert!(is_reserved(&stored));
                    assert!(stored.starts_with(&domain_prefix(domain)));
                    assert_eq!(Timer::from_state_key(&stored), Some(timer));
                }
            }
        }
    }

    #[test]
    fn state_keys_sort_in_firing_order() {
        let mut timers: Vec<Timer> = [-5_i64, 0, 7, 300, -300, 1 << 40]
            .iter()
            .flat_map(|&at| {
                [b"a".as_slice(), b"b", b"ab"].map(|key| Timer::new(TimeDomain::Event, at, key))
            })
            .collect();
        let mut by_key = timers.clone();
        by_key.sort_by_key(Timer::state_key);
        timers.sort();
        assert_eq!(by_key, timers);
    }

    #[test]
    fn other_keys_are_not_timers() {
        assert_eq!(Timer::from_state_key(b"user-1"), None);
        assert_eq!(Timer::from_state_key(CLOCK_KEY), None);
        let mut short = domain_prefix(TimeDomain::Event);
        short.extend_from_slice(&[0; 7]);
        assert_eq!(Timer::from_state_key(&short), None);
        assert!(is_reserved(CLOCK_KEY));
        assert!(!is_reserved(b"\xff\xffweir"));
        assert!(!is_timer_key(CLOCK_KEY) && !is_timer_key(b"timer\x00e"));
        for domain in [TimeDomain::Event, TimeDomain::Processing] {
            assert!(is_timer_key(&Timer::new(domain, 0, b"k").state_key()));
        }
    }

    #[test]
    fn every_host_key_sorts_before_the_end_of_the_range_and_no_other_key_after_it() {
        let host_keys = [
            CLOCK_KEY.to_vec(),
            Timer::new(TimeDomain::Processing, i64::MAX, vec![0xff; 64]).state_key(),
            Timer::new(TimeDomain::Event, i64::MIN, b"").state_key(),
        ];
        for key in host_keys {
            assert!(key.as_slice() < RESERVED_END, "{key:?}");
        }
        for guest_key in [&b"\xff\xffweir\x01"[..], b"\xff\xffweis", b"\xff\xff\xff"] {
            assert!(guest_key > RESERVED_END && !is_reserved(guest_key));
        }
    }
}
