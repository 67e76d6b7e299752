use std::fmt::Display;
use std::str::FromStr;

use crate::Error;

/// The transform's configuration: the key/value pairs of the pipeline's
/// `[transform.config]` (or `weir test --config k=v`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::msg(format!("missing config `{key}`")))
    }

    /// The value of `key` parsed as `T`, if set.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key)
            .map(|raw| {
                raw.parse()
                    .map_err(|e| Error::msg(format!("config `{key}` = {raw:?}: {e}")))
            })
            .transpose()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Config {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}
