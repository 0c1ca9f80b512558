//! `cargo xtask features`: the feature matrix, kept small on purpose.
//!
//! For each workspace crate: `cargo check` with no default features, default
//! features, each feature alone and all features (configurations that resolve
//! to the same feature set are checked once); then the workspace tests in the
//! default configuration and, with all features, what that run could not
//! test (the libraries of crates with non-default features, and the test
//! targets that require one), counting what ran ([`TestCounts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

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

/// The features the default configuration turns on.
fn default_set(table: &FeatureTable) -> BTreeSet<String> {
    let mut default = BTreeSet::new();
    if table.contains_key("default") {
        closure(table, "default", &mut default);
    }
    default
}

/// Whether `--all-features` turns on anything the default configuration does not.
fn all_differs_from_default(table: &FeatureTable) -> bool {
    let default = default_set(table);
    table.keys().any(|k| k != "default" && !default.contains(k))
}

/// What the default test run leaves untested in `pkg`: its library (when
/// `--all-features` compiles more of it) and the test targets that need a
/// non-default feature, as `cargo test` target arguments.
fn all_features_targets(pkg: &Package) -> Vec<String> {
    if !all_differs_from_default(&pkg.table) {
        return Vec::new();
    }
    let default = default_set(&pkg.table);
    let mut out = vec!["--lib".to_string()];
    for (test, required) in &pkg.tests {
        if required.iter().any(|f| !default.contains(f)) {
            out.extend(["--test".to_string(), test.clone()]);
        }
    }
    out
}

/// A workspace package: its name, feature table, and its test targets with
/// the features each requires.
struct Package {
    name: String,
    table: FeatureTable,
    tests: Vec<(String, Vec<String>)>,
}

/// Workspace packages, from `cargo metadata`.
fn workspace_features(root: &Path) -> Result<Vec<Package>> {
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
        let mut tests = Vec::new();
        for target in pkg["targets"].as_array().into_iter().flatten() {
            let is_test = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"));
            if let (true, Some(test)) = (is_test, target["name"].as_str()) {
                let required = target["required-features"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                tests.push((test.to_string(), required));
            }
        }
        out.push(Package { name, table, tests });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Which tests a run includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tests {
    /// `cargo test`'s default: `#[ignore]`d tests are left out.
    Default,
    /// `#[ignore]`d tests too (slow Linux boots; CI runs them).
    IncludeIgnored,
}

/// What the test runs reported, summed over every test binary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (including those whose prerequisite was missing).
    pub failed: u64,
    /// `#[ignore]`d tests that were not run.
    pub ignored: u64,
    /// Reasons of the tests that found a prerequisite missing (with
    /// `VM_REQUIRE_PREREQUISITES=1` they fail with this reason).
    pub missing: Vec<String>,
}

impl TestCounts {
    /// Adds what one line of `cargo test` output says.
    fn observe(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |what: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(what)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            self.passed += count("passed");
            self.failed += count("failed");
            self.ignored += count("ignored");
        } else if let Some(at) = line.find(test_prerequisites::MISSING) {
            self.missing
                .push(line[at + test_prerequisites::MISSING.len()..].to_string());
        }
    }

    /// `tests: N passed, N failed, N ignored, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "tests: {} passed, {} failed, {} ignored (not run), {} skipped (prerequisite missing)",
            self.passed,
            self.failed,
            self.ignored,
            self.missing.len()
        )
    }
}

/// Runs `cargo test ARGS` in `root`, streaming its output and counting
/// what it reports; fails, after printing the counts, if a test failed.
fn test_run(root: &Path, args: &[&str], counts: &mut TestCounts) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("$ {cargo} {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{cargo}`"))?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        counts.observe(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        println!("{}", counts.summary());
        for reason in &counts.missing {
            println!("  missing: {reason}");
        }
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs the matrix, adding what the test runs report to `counts`.
pub fn run(root: &Path, tests: Tests, counts: &mut TestCounts) -> Result<()> {
    let packages = workspace_features(root)?;
    let mut checks = 0;
    for Package { name, table, .. } in &packages {
        for config in configs(table) {
            println!("features: check {name} [{}]", config.label);
            let mut args = vec!["check", "--quiet", "-p", name.as_str()];
            args.extend(config.args.iter().map(String::as_str));
            cargo(root, &args).with_context(|| format!("{name} [{}]", config.label))?;
            checks += 1;
        }
    }
    let mut test_args = vec!["test", "--workspace", "--no-fail-fast"];
    if tests == Tests::IncludeIgnored {
        test_args.extend(["--", "--include-ignored"]);
    }
    println!("features: tests [default]");
    test_run(root, &test_args, counts).context("tests [default]")?;
    let mut test_runs = 1;
    // With every feature on, only what the default run could not test: the
    // whole suite twice would double CI's longest step.
    for pkg in &packages {
        let targets = all_features_targets(pkg);
        if targets.is_empty() {
            continue;
        }
        println!(
            "features: tests {} [all-features] {}",
            pkg.name,
            targets.join(" ")
        );
        let mut args = vec![
            "test",
            "-p",
            pkg.name.as_str(),
            "--all-features",
            "--no-fail-fast",
        ];
        args.extend(targets.iter().map(String::as_str));
        if tests == Tests::IncludeIgnored {
            args.extend(["--", "--include-ignored"]);
        }
        test_run(root, &args, counts)
            .with_context(|| format!("tests {} [all-features]", pkg.name))?;
        test_runs += 1;
    }
    println!(
        "features: matrix size {} ({checks} checks over {} crates, {test_runs} test runs)",
        checks + test_runs,
        packages.len()
    );
    println!("features: {}", counts.summary());
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
    fn test_output_is_counted() {
        let mut c = TestCounts::default();
        c.observe("test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.20s");
        c.observe("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        c.observe("thread 'x' panicked at a.rs:1:2:\nrequired prerequisite missing: no dtc (VM_REQUIRE_PREREQUISITES=1)");
        c.observe(
            "required prerequisite missing: /dev/kvm cannot be opened (VM_REQUIRE_PREREQUISITES=1)",
        );
        assert_eq!((c.passed, c.failed, c.ignored), (13, 2, 3));
        assert_eq!(c.missing.len(), 2);
        assert!(c.summary().contains("2 skipped"));
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
