//! Which group member owns a partition, so a state read that reaches the wrong
//! instance can say where to ask. Members advertise their admin URL in their Kafka
//! client id (`weir|<url>`); the group description names each member's partitions.

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::kafka::{ClientSettings, REQUEST_TIMEOUT};

/// The client id prefix under which a member advertises its admin URL.
const URL_PREFIX: &str = "weir|";

/// The client id a group member uses to advertise `admin_url`.
pub fn client_id(admin_url: &str) -> String {
    format!("{URL_PREFIX}{admin_url}")
}

/// The member that owns a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Its admin API, when it advertises one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
    pub client_id: String,
    pub host: String,
}

/// Ask the group coordinator who owns `topic`/`partition` in `group`. `None` when the
/// broker does not say (no such member, or no DescribeGroups support).
pub fn owner(settings: &ClientSettings, group: &str, topic: &str, partition: i32) -> Option<Owner> {
    let client: BaseConsumer = settings.client_config().create().ok()?;
    let groups = client
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .map_err(|error| tracing::debug!(%error, group, "cannot describe the group"))
        .ok()?;
    groups
        .groups()
        .iter()
        .flat_map(|g| g.members())
        .find(|member| {
            member
                .assignment()
                .and_then(decode_assignment)
                .is_some_and(|a| {
                    a.iter()
                        .any(|(t, ps)| t == topic && ps.contains(&partition))
                })
        })
        .map(|member| Owner {
            admin_url: member
                .client_id()
                .strip_prefix(URL_PREFIX)
                .map(str::to_owned),
            client_id: member.client_id().to_owned(),
            host: member.client_host().to_owned(),
        })
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
        let id = client_id("http://10.0.0.5:9464");
        assert_eq!(id.strip_prefix(URL_PREFIX), Some("http://10.0.0.5:9464"));
    }
}
