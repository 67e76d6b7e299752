//! What a config reload changes: pure comparison of the running config with the new
//! one, so that only the pipelines that changed are touched.

use std::collections::BTreeMap;

use crate::config::{Config, PipelineConfig, Problem};

/// What to do to each pipeline.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// New pipelines to start.
    pub add: Vec<String>,
    /// Pipelines gone from the config: stop them (with a final checkpoint).
    pub remove: Vec<String>,
    /// Pipelines whose settings changed: stop and start again.
    pub restart: Vec<String>,
    /// Pipelines whose only change is the module file's content: hot swap.
    pub redeploy: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.restart.is_empty()
            && self.redeploy.is_empty()
    }
}

/// Compare configs. `module_changed` tells whether a pipeline's module file holds
/// something other than what the config gave it last (the same path may hold a new
/// build). Changes a running daemon cannot apply (Kafka, the data directory, the
/// admin API, the state stores' shared memory) are refused, each named.
pub fn plan(
    running: &Config,
    new: &Config,
    module_changed: impl Fn(&str, &PipelineConfig) -> bool,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let restart_needed = |at: &str| Problem {
        at: at.to_owned(),
        message: "cannot change while the daemon runs; restart it to apply this".to_owned(),
    };
    if running.kafka != new.kafka {
        problems.push(restart_needed("kafka"));
    }
    if running.data_dir != new.data_dir {
        problems.push(restart_needed("data_dir"));
    }
    if running.admin != new.admin {
        problems.push(restart_needed("admin"));
    }
    if running.state != new.state {
        problems.push(restart_needed("state"));
    }
    if running.threads != new.threads {
        problems.push(restart_needed("threads"));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut plan = Plan::default();
    let old: &BTreeMap<String, PipelineConfig> = &running.pipelines;
    for (name, pipeline) in &new.pipelines {
        match old.get(name) {
            None => plan.add.push(name.clone()),
            Some(before) if before == pipeline => {
                if module_changed(name, pipeline) {
                    plan.redeploy.push(name.clone());
                }
            }
            Some(before) => {
                let same_but_module = PipelineConfig {
                    module: pipeline.module.clone(),
                    ..before.clone()
                };
                if same_but_module == *pipeline {
                    plan.redeploy.push(name.clone());
                } else {
                    plan.restart.push(name.clone());
                }
            }
        }
    }
    plan.remove = old
        .keys()
        .filter(|name| !new.pipelines.contains_key(*name))
        .cloned()
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(pipelines: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.wasm", "b.wasm", "c.wasm"] {
            std::fs::write(dir.path().join(name), b"\0asm").unwrap();
        }
        let text = format!("data_dir = \"/data\"\n[kafka]\nbrokers = \"k:9092\"\n{pipelines}");
        let mut config = Config::parse(&text, dir.path()).unwrap();
        // Paths compare by name only, whatever temp dir they were resolved in.
        for p in config.pipelines.values_mut() {
            p.module = Path::new(p.module.file_name().unwrap()).to_path_buf();
        }
        config
    }

    const TWO: &str = r#"
[pipelines.one]
module = "a.wasm"
inputs = ["in1"]
output = "out1"
[pipelines.two]
module = "b.wasm"
inputs = ["in2"]
output = "out2"
"#;

    fn unchanged(_: &str, _: &PipelineConfig) -> bool {
        false
    }

    #[test]
    fn an_identical_config_touches_nothing() {
        let plan = plan(&config(TWO), &config(TWO), unchanged).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn only_the_changed_pipeline_restarts() {
        let changed = TWO.replace("output = \"out2\"", "output = \"out2\"\nbatch_size = 7");
        let plan = plan(&config(TWO), &config(&changed), unchanged).unwrap();
        assert_eq!(plan.restart, ["two"]);
        assert!(plan.add.is_empty() && plan.remove.is_empty() && plan.redeploy.is_empty());
    }

    #[test]
    fn a_new_module_is_a_hot_swap_not_a_restart() {
        let changed = TWO.replace("b.wasm", "c.wasm");
        let plan = plan(&config(TWO), &config(&changed), unchanged).unwrap();
        assert_eq!(plan.redeploy, ["two"]);
        assert!(plan.restart.is_empty());
        // Same path, new bytes.
        let plan = super::plan(&config(TWO), &config(TWO), |name, _| name == "one").unwrap();
        assert_eq!(plan.redeploy, ["one"]);
    }

    #[test]
    fn pipelines_come_and_go() {
        let three = format!(
            "{TWO}\n[pipelines.three]\nmodule = \"c.wasm\"\ninputs = [\"in3\"]\noutput = \"out3\"\n"
        );
        let plan = plan(&config(TWO), &config(&three), unchanged).unwrap();
        assert_eq!(plan.add, ["three"]);
        let plan = super::plan(&config(&three), &config(TWO), unchanged).unwrap();
        assert_eq!(plan.remove, ["three"]);
    }

    #[test]
    fn kafka_changes_need_a_restart() {
        let running = config(TWO);
        let mut new = running.clone();
        new.kafka.brokers = "other:9092".to_owned();
        let problems = plan(&running, &new, unchanged).unwrap_err();
        assert_eq!(problems[0].at, "kafka");
    }
}
