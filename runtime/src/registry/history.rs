//! What a pipeline's deployment history means: which version runs, which one a
//! rollback returns to, and what to run at start when the config names a module.
//!
//! The history is a list of events. `config` and `deploy` put a version on top of a
//! stack of activations; a rollback takes the top off, returning to the version under
//! it. So two rollbacks in a row go back two versions, never back and forth.

use serde::{Deserialize, Serialize};

/// How a version became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The config file named this module (at start or on reload).
    Config,
    /// Uploaded through the admin API.
    Deploy,
    /// Rolled back on command.
    Rollback,
    /// Rolled back because the new version failed its trial.
    AutoRollback,
}

impl Action {
    fn is_rollback(self) -> bool {
        matches!(self, Self::Rollback | Self::AutoRollback)
    }
}

/// One entry of a pipeline's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The version that became active. Numbers count distinct deployments; a rollback
    /// re-activates an existing number.
    pub version: u32,
    pub action: Action,
    /// The module's content hash (sha256, hex).
    pub hash: String,
    /// The module's size in bytes.
    pub size: u64,
    /// When, RFC 3339.
    pub at: String,
    /// Who: the deploying user, `config`, or `weir` for automatic rollbacks.
    pub by: String,
    /// Why, for rollbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The active version, if any.
pub fn current(events: &[Event]) -> Option<&Event> {
    events.last()
}

/// The stack of activations, oldest at the bottom: what rollbacks return through.
fn activations(events: &[Event]) -> Vec<u32> {
    let mut stack: Vec<u32> = Vec::new();
    for event in events {
        if event.action.is_rollback() {
            while stack.len() > 1 && stack.last() != Some(&event.version) {
                stack.pop();
            }
        }
        if stack.last() != Some(&event.version) {
            stack.push(event.version);
        }
    }
    stack
}

/// The version a rollback would return to, with the event that first activated it.
pub fn rollback_target(events: &[Event]) -> Option<&Event> {
    let stack = activations(events);
    let target = *stack.iter().rev().nth(1)?;
    events.iter().find(|e| e.version == target)
}

/// The number the next new deployment gets.
pub fn next_version(events: &[Event]) -> u32 {
    events.iter().map(|e| e.version).max().unwrap_or(0) + 1
}

/// The version already known for a module hash, if it was deployed before.
pub fn version_of<'a>(events: &'a [Event], hash: &str) -> Option<&'a Event> {
    events.iter().find(|e| e.hash == hash)
}

/// What to run when a pipeline starts with `config_hash` as the config's module.
#[derive(Debug, Clone, PartialEq)]
pub enum Startup<'a> {
    /// The config still names the module it named when this version history was
    /// written: keep running what ran last (possibly a later deployment).
    Resume(&'a Event),
    /// The config names a module not run from config before (a first start, or the
    /// file changed): it becomes the active version.
    FromConfig,
}

pub fn startup<'a>(events: &'a [Event], config_hash: &str) -> Startup<'a> {
    let last_config = events.iter().rev().find(|e| e.action == Action::Config);
    match (last_config, current(events)) {
        (Some(config), Some(current)) if config.hash == config_hash => Startup::Resume(current),
        _ => Startup::FromConfig,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u32, action: Action) -> Event {
        Event {
            version,
            action,
            hash: format!("h{version}"),
            size: 1,
            at: String::new(),
            by: String::new(),
            reason: None,
        }
    }

    #[test]
    fn rollbacks_walk_back_through_activations() {
        let mut events = vec![
            event(1, Action::Config),
            event(2, Action::Deploy),
            event(3, Action::Deploy),
        ];
        assert_eq!(rollback_target(&events).map(|e| e.version), Some(2));
        events.push(event(2, Action::Rollback));
        assert_eq!(current(&events).map(|e| e.version), Some(2));
        assert_eq!(rollback_target(&events).map(|e| e.version), Some(1));
        events.push(event(1, Action::AutoRollback));
        assert_eq!(rollback_target(&events), None);
        assert_eq!(next_version(&events), 4);
    }

    #[test]
    fn a_deploy_after_a_rollback_stacks_on_the_restored_version() {
        let events = vec![
            event(1, Action::Config),
            event(2, Action::Deploy),
            event(1, Action::Rollback),
            event(3, Action::Deploy),
        ];
        assert_eq!(rollback_target(&events).map(|e| e.version), Some(1));
    }

    #[test]
    fn startup_resumes_unless_the_config_module_changed() {
        assert_eq!(startup(&[], "h1"), Startup::FromConfig);
        let events = vec![event(1, Action::Config), event(2, Action::Deploy)];
        assert_eq!(startup(&events, "h1"), Startup::Resume(&events[1]));
        assert_eq!(startup(&events, "h9"), Startup::FromConfig);
    }
}
