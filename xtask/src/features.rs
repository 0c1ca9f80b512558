//! `cargo xtask features`: the feature matrix, kept small on purpose.
//!
//! For each workspace crate: `cargo check` with no default features, default
//! features, each feature alone and all features (configurations that resolve
//! to the same feature set are checked once); then the workspace tests for the
//! default and the all-features configuration (once if they are the same).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use crate::cmd::{cargo, output_of_in};

/// A crate's declared features: name -> what each enables.
type FeatureTable = BTreeMap<String, Vec<String>>;

/// One `cargo check` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Human label (`no-default`, `default`, `+name`, `all`).
    pub label: String,
    /// Extra cargo arguments selecting the features.
    pub args: Vec<String>,
}

/// Features `name` turns on, transitively (dependency features ignored).
fn closure(table: &FeatureTable, name: &str, out: &mut BTreeSet<String>) {
    if !out.insert(name.to_string()) {
        return;
    }
    for item in table.get(name).into_iter().flatten() {
        if table.contains_key(item) {
            closure(table, item, out);
        }
    }
}

/// The distinct configurations to check for one crate.
pub fn configs(table: &FeatureTable) -> Vec<Config> {
    let mut seen: Vec<BTreeSet<String>> = Vec::new();
    let mut out = Vec::new();
    let mut push = |label: String, args: Vec<String>, set: BTreeSet<String>| {
        // `default` itself is not a capability; compare what it enables.
        let mut set = set;
        set.remove("default");
        if !seen.contains(&set) {
            seen.push(set);
            out.push(Config { label, args });
        }
    };
    push(
        "no-default".into(),
        vec!["--no-default-features".into()],
        BTreeSet::new(),
    );
    let mut default = BTreeSet::new();
    if table.contains_key("default") {
        closure(table, "default", &mut default);
    }
    push("default".into(), vec![], default);
    for name in table.keys().filter(|n| *n != "default") {
        let mut set = BTreeSet::new();
        closure(table, name, &mut set);
        push(
            format!("+{name}"),
            vec![
                "--no-default-features".into(),
                "--features".into(),
                name.clone(),
            ],
            set,
        );
    }
    let all: BTreeSet<String> = table.keys().cloned().collect();
    push("all".into(), vec!["--all-features".into()], all);
    out
}

/// Whether `--all-features` turns on anything the default configuration does not.
fn all_differs_from_default(table: &FeatureTable) -> bool {
    let mut default = BTreeSet::new();
    if table.contains_key("default") {
        closure(table, "default", &mut default);
    }
    table.keys().any(|k| k != "default" && !default.contains(k))
}

/// Workspace packages and their feature tables, from `cargo metadata`.
fn workspace_features(root: &Path) -> Result<Vec<(String, FeatureTable)>> {
    let text = output_of_in(
        root,
        "cargo",
        &["metadata", "--no-deps", "--format-version", "1"],
    )?;
    let meta: serde_json::Value = serde_json::from_str(&text).context("parsing cargo metadata")?;
    let mut out = Vec::new();
    for pkg in meta["packages"]
        .as_array()
        .context("cargo metadata: no packages")?
    {
        let name = pkg["name"]
            .as_str()
            .context("package without a name")?
            .to_string();
        let mut table = FeatureTable::new();
        if let Some(features) = pkg["features"].as_object() {
            for (feature, enables) in features {
                let list = enables
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                table.insert(feature.clone(), list);
            }
        }
        out.push((name, table));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Runs the matrix.
pub fn run(root: &Path) -> Result<()> {
    let packages = workspace_features(root)?;
    let mut checks = 0;
    let mut any_all_differs = false;
    for (name, table) in &packages {
        any_all_differs |= all_differs_from_default(table);
        for config in configs(table) {
            println!("features: check {name} [{}]", config.label);
            let mut args = vec!["check", "--quiet", "-p", name.as_str()];
            args.extend(config.args.iter().map(String::as_str));
            cargo(root, &args).with_context(|| format!("{name} [{}]", config.label))?;
            checks += 1;
        }
    }
    println!("features: tests [default]");
    cargo(root, &["test", "--workspace"]).context("tests [default]")?;
    let mut test_runs = 1;
    if any_all_differs {
        println!("features: tests [all-features]");
        cargo(root, &["test", "--workspace", "--all-features"]).context("tests [all-features]")?;
        test_runs += 1;
    }
    println!(
        "features: matrix size {} ({checks} checks over {} crates, {test_runs} test runs)",
        checks + test_runs,
        packages.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &[&str])]) -> FeatureTable {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_string(),
                    v.iter().map(|s| (*s).to_string()).collect(),
                )
            })
            .collect()
    }

    fn labels(t: &FeatureTable) -> Vec<String> {
        configs(t).into_iter().map(|c| c.label).collect()
    }

    #[test]
    fn crate_without_features_is_checked_once() {
        assert_eq!(labels(&FeatureTable::new()), ["no-default"]);
        assert!(!all_differs_from_default(&FeatureTable::new()));
    }

    #[test]
    fn each_group_alone_and_all() {
        let t = table(&[
            ("full", &["dep:a", "debug"]),
            ("debug", &[]),
            ("default", &[]),
        ]);
        // default == no-default (empty); +debug alone; +full implies debug; all == +full.
        assert_eq!(labels(&t), ["no-default", "+debug", "+full"]);
        assert!(all_differs_from_default(&t));
    }

    #[test]
    fn default_features_are_their_own_config() {
        let t = table(&[("default", &["fast"]), ("fast", &[]), ("trace", &[])]);
        assert_eq!(labels(&t), ["no-default", "default", "+trace", "all"]);
    }
}
