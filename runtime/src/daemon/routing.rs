//! Which group member owns a partition, so a state read that reaches the wrong
//! instance can say where to ask. Members advertise their admin URL in their Kafka
//! client id (`weir|<url>`). The broker's group description names the members and, on
//! Kafka, each one's partitions. Brokers that describe members but not their
//! assignments (some Kafka-compatible brokers leave everything but the member id
//! empty) are covered by asking the members' admin APIs which partitions they run.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::kafka::{ADMIN_URL_PREFIX as URL_PREFIX, ClientSettings};

/// How long asking one member's admin API may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long describing the group may take: a misdirected read should fail fast.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The member that owns a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Its admin API, when it advertises one that `[admin] peer_urls` allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    /// The admin URL it advertises when `[admin] peer_urls` does not allow it: any
    /// group member can advertise any URL, so one not allowed is neither asked nor
    /// given out to be followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disallowed_url: Option<String>,
    pub client_id: String,
    pub host: String,
}

/// A group member as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub client_id: String,
    pub host: String,
    /// Its partitions per topic, when the broker says.
    pub assignment: Option<Vec<(String, Vec<i32>)>>,
}

/// Which advertised admin URLs this instance may ask and give out.
#[derive(Debug, Clone, Copy)]
pub struct Peers<'a> {
    /// This instance's own admin URL.
    pub me: Option<&'a str>,
    /// `[admin] peer_urls`: allowed origins (`scheme://host` or `scheme://host:port`);
    /// empty allows those with `me`'s scheme and host.
    pub allowed: &'a [String],
}

impl Peers<'_> {
    /// Whether `url` may be asked for a partition's owner and given out to follow:
    /// its scheme and host (and port, where the entry names one) match exactly; a URL
    /// with user information (`http://good@evil/`) never does.
    pub fn allow(&self, url: &str) -> bool {
        let Some(origin) = Origin::of(url) else {
            return false;
        };
        if !self.allowed.is_empty() {
            return self
                .allowed
                .iter()
                .filter_map(|entry| Origin::of(entry))
                .any(|entry| entry.admits(&origin));
        }
        self.me
            .and_then(Origin::of)
            .is_some_and(|mine| mine.scheme == origin.scheme && mine.host == origin.host)
    }
}

/// The scheme, host and port of an `http(s)://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// `None` for anything but a plain `http` or `https` URL with a host: no user
    /// information, no other scheme.
    fn of(url: &str) -> Option<Self> {
        let uri: axum::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if !matches!(scheme.as_str(), "http" | "https") || authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host().to_ascii_lowercase();
        (!host.is_empty()).then_some(Self {
            scheme,
            host,
            port: authority.port_u16(),
        })
    }

    /// Whether `url`'s origin is this allowed one (any port if this names none).
    fn admits(&self, url: &Origin) -> bool {
        self.scheme == url.scheme
            && self.host == url.host
            && self.port.is_none_or(|port| url.port == Some(port))
    }
}

impl Member {
    fn owner(&self, peers: Peers<'_>) -> Owner {
        let advertised = self.client_id.strip_prefix(URL_PREFIX).map(str::to_owned);
        let (admin_url, disallowed_url) = match advertised {
            Some(url) if !peers.allow(&url) => (None, Some(url)),
            allowed => (allowed, None),
        };
        Owner {
            admin_url,
            disallowed_url,
            client_id: self.client_id.clone(),
            host: self.host.clone(),
        }
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.assignment
            .iter()
            .flatten()
            .any(|(t, ps)| t == topic && ps.contains(&partition))
    }
}

/// Ask the broker, then if need be the members `peers` allows, who owns
/// `topic`/`partition` in the group of pipeline `pipeline`. This instance is never
/// asked. `None` when nobody can tell.
pub fn owner(
    settings: &ClientSettings,
    group: &str,
    pipeline: &str,
    peers: Peers<'_>,
    topic: &str,
    partition: i32,
) -> Option<Owner> {
    let members = members(settings, group)?;
    if let Some(owner) = members.iter().find(|m| m.owns(topic, partition)) {
        return Some(owner.owner(peers));
    }
    // Ask every candidate at once: a 421 should not wait on members one by one.
    let candidates = to_ask(&members, peers);
    std::thread::scope(|scope| {
        let asks: Vec<_> = candidates
            .iter()
            .map(|owner| {
                let url = owner.admin_url.as_deref().unwrap_or_default();
                scope.spawn(move || runs(url, pipeline, topic, partition))
            })
            .collect();
        asks.into_iter()
            .map(|ask| ask.join().unwrap_or(false))
            .zip(&candidates)
            .find_map(|(runs, owner)| runs.then(|| owner.clone()))
    })
}

/// The members to ask for their partitions, when the broker did not describe any
/// assignment: those that advertise an admin URL `peers` allows, other than this one.
fn to_ask(members: &[Member], peers: Peers<'_>) -> Vec<Owner> {
    if members.iter().any(|m| m.assignment.is_some()) {
        // The broker describes assignments, and nobody has the partition right now.
        return Vec::new();
    }
    members
        .iter()
        .map(|m| m.owner(peers))
        .filter(|o| o.admin_url.is_some() && o.admin_url.as_deref() != peers.me)
        .collect()
}

/// The members of `group`, from the group coordinator.
fn members(settings: &ClientSettings, group: &str) -> Option<Vec<Member>> {
    let client: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(|error| tracing::warn!(%error, "cannot create a client to describe the group"))
        .ok()?;
    let groups = client
        .fetch_group_list(Some(group), DESCRIBE_TIMEOUT)
        .map_err(|error| tracing::debug!(%error, group, "cannot describe the group"))
        .ok()?;
    let members = groups
        .groups()
        .iter()
        .flat_map(|g| g.members())
        .map(|m| Member {
            client_id: described_client_id(m.client_id(), m.id()).to_owned(),
            host: m.client_host().to_owned(),
            assignment: m
                .assignment()
                .filter(|bytes| !bytes.is_empty())
                .and_then(decode_assignment),
        })
        .collect::<Vec<_>>();
    tracing::debug!(group, ?members, "group members");
    Some(members)
}

/// A member's client id: as described, or else read from its member id, which the
/// classic group coordinator makes as `<client id>-<uuid>`.
pub fn described_client_id<'a>(client_id: &'a str, member_id: &'a str) -> &'a str {
    if !client_id.is_empty() {
        return client_id;
    }
    let is_uuid = |tail: &str| {
        tail.len() == 36
            && tail.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let at = member_id.len().saturating_sub(37);
    match (member_id.get(..at), member_id.get(at..)) {
        (Some(head), Some(tail)) if tail.starts_with('-') && is_uuid(&tail[1..]) => head,
        _ => member_id,
    }
}

/// Whether the instance at `admin_url` runs `topic`/`partition` of `pipeline` now.
fn runs(admin_url: &str, pipeline: &str, topic: &str, partition: i32) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(ASK_TIMEOUT))
        .build()
        .into();
    let url = format!(
        "{}/v1/pipelines/{pipeline}",
        admin_url.trim_end_matches('/')
    );
    let status: serde_json::Value = match agent
        .get(&url)
        .call()
        .and_then(|mut response| response.body_mut().read_json())
    {
        Ok(status) => status,
        Err(error) => {
            tracing::debug!(%url, %error, "cannot ask a group member for its partitions");
            return false;
        }
    };
    status["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["topic"] == topic && p["partition"] == partition)
}

/// Decode a consumer-protocol member assignment: version (i16), then topics, each a
/// name (i16 length + bytes) and partitions (i32 count + i32s); user data follows.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut reader = Reader(bytes);
    reader.i16()?;
    let topics = reader.i32()?;
    let mut assignment = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(reader.i16()?).ok()?;
        let name = String::from_utf8(reader.take(len)?.to_vec()).ok()?;
        let count = reader.i32()?;
        let partitions = (0..count.max(0))
            .map(|_| reader.i32())
            .collect::<Option<Vec<_>>>()?;
        assignment.push((name, partitions));
    }
    Some(assignment)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_assignment() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 4];
        bytes.extend_from_slice(b"text");
        bytes.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 7]);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("text".to_owned(), vec![3, 7])])
        );
        assert_eq!(decode_assignment(&bytes[..9]), None);
    }

    #[test]
    fn the_admin_url_round_trips_through_the_client_id() {
        let member = Member {
            client_id: crate::kafka::advertising_client_id("http://10.0.0.5:9464"),
            host: String::new(),
            assignment: None,
        };
        let peers = Peers {
            me: Some("http://10.0.0.4:9464"),
            allowed: &["http://10.0.0.5".to_owned()],
        };
        assert_eq!(
            member.owner(peers).admin_url.as_deref(),
            Some("http://10.0.0.5:9464")
        );
    }

    #[test]
    fn only_allowed_peers_are_asked_or_given_out() {
        let none: &[String] = &[];
        let same_host = Peers {
            me: Some("http://10.0.0.4:9464"),
            allowed: none,
        };
        assert!(same_host.allow("http://10.0.0.4:9500"));
        assert!(!same_host.allow("https://10.0.0.4:9464"), "another scheme");
        assert!(!same_host.allow("http://10.0.0.5:9464"));
        assert!(!same_host.allow("http://169.254.169.254/latest/meta-data"));
        assert!(
            !same_host.allow("http://10.0.0.4:9464@evil.example/"),
            "user information"
        );
        assert!(!same_host.allow("file:///etc/passwd"));
        let unknown_me = Peers {
            me: None,
            allowed: none,
        };
        assert!(!unknown_me.allow("http://10.0.0.4:9464"));
        let listed = [
            "https://weir-2.internal".to_owned(),
            "http://[::1]:9464".to_owned(),
        ];
        let listed = Peers {
            me: Some("http://10.0.0.4:9464"),
            allowed: &listed,
        };
        assert!(listed.allow("https://weir-2.internal:9464"));
        assert!(
            listed.allow("HTTPS://WEIR-2.internal:1/x"),
            "any port, any case"
        );
        assert!(
            !listed.allow("https://weir-2.internal.evil.com"),
            "a longer host"
        );
        assert!(!listed.allow("http://weir-2.internal"), "another scheme");
        assert!(listed.allow("http://[::1]:9464"));
        assert!(!listed.allow("http://[::1]:9465"), "another port");
        assert!(
            !listed.allow("http://10.0.0.4:9500"),
            "the list replaces the host rule"
        );

        let member = Member {
            client_id: crate::kafka::advertising_client_id("http://169.254.169.254"),
            host: String::new(),
            assignment: None,
        };
        let owner = member.owner(same_host);
        assert_eq!(owner.admin_url, None);
        assert_eq!(
            owner.disallowed_url.as_deref(),
            Some("http://169.254.169.254")
        );
    }

    #[test]
    fn a_client_id_is_read_from_the_member_id_when_not_described() {
        let member_id = "weir|http://127.0.0.1:9464-3f2a9c1e-07b4-4d2a-9e0f-2b6c8d1e5a70";
        assert_eq!(
            described_client_id("", member_id),
            "weir|http://127.0.0.1:9464"
        );
        assert_eq!(described_client_id("weir|x", member_id), "weir|x");
        assert_eq!(
            described_client_id("", "rdkafka-no-uuid"),
            "rdkafka-no-uuid"
        );
        assert_eq!(
            described_client_id("", "a-3f2a9c1e-07b4-4d2a-9e0f-2b6c8d1e5a7"),
            "a-3f2a9c1e-07b4-4d2a-9e0f-2b6c8d1e5a7"
        );
    }

    #[test]
    fn members_are_asked_only_when_no_assignment_is_described() {
        let member = |url: &str, assignment| Member {
            client_id: crate::kafka::advertising_client_id(url),
            host: String::new(),
            assignment,
        };
        let plain = Member {
            client_id: "rdkafka".to_owned(),
            host: String::new(),
            assignment: None,
        };
        let allowed = ["http://b".to_owned()];
        let peers = Peers {
            me: Some("http://a"),
            allowed: &allowed,
        };
        let undescribed = [member("http://a", None), member("http://b", None), plain];
        let asked: Vec<_> = to_ask(&undescribed, peers)
            .into_iter()
            .filter_map(|o| o.admin_url)
            .collect();
        assert_eq!(asked, ["http://b"]);
        let described = [
            member("http://a", Some(vec![])),
            member("http://b", Some(vec![("text".to_owned(), vec![0])])),
        ];
        assert!(to_ask(&described, peers).is_empty());
    }

    #[test]
    fn a_multibyte_member_id_does_not_panic() {
        let id = "weir|http://café.example:9464-xx3f2a9c1e-07b4-4d2a-9e0f-2b6c8d1e5a7é";
        assert_eq!(described_client_id("", id), id);
    }

    #[test]
    fn an_assigned_member_owns_its_partitions() {
        let member = Member {
            client_id: "weir|http://b".to_owned(),
            host: "/10.0.0.6".to_owned(),
            assignment: Some(vec![("text".to_owned(), vec![1, 3])]),
        };
        assert!(member.owns("text", 3));
        assert!(!member.owns("text", 2));
        assert!(!member.owns("other", 1));
    }
}
