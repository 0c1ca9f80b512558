//! `cargo xtask gates`: the feature-gate budget.
//!
//! Counts every feature predicate in `cfg(...)`, `cfg_attr(...)` and `cfg!(...)`
//! (nested `all/any/not` included) in each `.rs` file of a workspace, and fails
//! when the workspace total or a single file exceeds the budget in
//! `xtask/gates.toml`, when a gate names a feature that the owning crate does not
//! declare, or when a declared feature is missing from the README's feature table.
//!
//! The scan works on tokens, not text, so feature gates quoted inside string
//! literals or comments (as in this crate's own tests) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Budget limits, read from `xtask/gates.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Maximum number of feature predicates in the whole workspace.
    pub total: usize,
    /// Maximum number of feature predicates in one file.
    pub per_file: usize,
}

impl Budget {
    /// Parses the budget file.
    pub fn parse(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).context("gates.toml is not valid TOML")?;
        let field = |name: &str| -> Result<usize> {
            let value = table
                .get(name)
                .and_then(toml::Value::as_integer)
                .with_context(|| format!("gates.toml: `{name}` must be an integer"))?;
            usize::try_from(value).with_context(|| format!("gates.toml: `{name}` is negative"))
        };
        Ok(Self {
            total: field("total")?,
            per_file: field("per_file")?,
        })
    }
}

/// One feature predicate found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Feature name in `feature = "name"`.
    pub feature: String,
    /// 1-based line of the predicate.
    pub line: usize,
}

/// Result of scanning a tree.
#[derive(Debug, Default)]
pub struct Report {
    /// Gates per file (relative path), only files with at least one gate.
    pub files: BTreeMap<PathBuf, Vec<Gate>>,
    /// Every budget breach or undeclared feature, as a sentence.
    pub violations: Vec<String>,
}

impl Report {
    /// Total number of gates.
    pub fn total(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    /// The table printed by the task.
    pub fn table(&self, budget: Budget) -> String {
        let mut out = String::new();
        let width = self
            .files
            .keys()
            .map(|p| p.display().to_string().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "{:<width$}  gates", "file");
        for (path, gates) in &self.files {
            let _ = writeln!(out, "{:<width$}  {:>5}", path.display(), gates.len());
        }
        let _ = writeln!(
            out,
            "{:<width$}  {:>5}  (budget: {} total, {} per file)",
            "total",
            self.total(),
            budget.total,
            budget.per_file
        );
        out
    }
}

/// Scans the workspace rooted at `root` and checks it against `budget`.
pub fn check(root: &Path, budget: Budget) -> Result<Report> {
    let mut report = Report::default();
    let mut declared_by_crate: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect_rs_files(root, &mut files)?;
    files.sort();
    for file in files {
        let source = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let gates = scan(&source);
        if gates.is_empty() {
            continue;
        }
        let rel = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        let crate_dir = owning_crate(root, &file)
            .with_context(|| format!("{} is not inside a crate", rel.display()))?;
        if !declared_by_crate.contains_key(&crate_dir) {
            let declared = declared_features(&crate_dir.join("Cargo.toml"))?;
            declared_by_crate.insert(crate_dir.clone(), declared);
        }
        let declared = &declared_by_crate[&crate_dir];
        for gate in &gates {
            if !declared.contains(&gate.feature) {
                report.violations.push(format!(
                    "{}:{}: feature `{}` is not declared in {}",
                    rel.display(),
                    gate.line,
                    gate.feature,
                    crate_dir
                        .join("Cargo.toml")
                        .strip_prefix(root)
                        .unwrap_or(&crate_dir)
                        .display()
                ));
            }
        }
        if gates.len() > budget.per_file {
            report.violations.push(format!(
                "{}: {} feature gates, the per-file budget is {}",
                rel.display(),
                gates.len(),
                budget.per_file
            ));
        }
        report.files.insert(rel, gates);
    }
    if report.total() > budget.total {
        report.violations.push(format!(
            "workspace: {} feature gates, the budget is {}",
            report.total(),
            budget.total
        ));
    }
    check_readme_table(root, &mut report)?;
    Ok(report)
}

/// Every feature a workspace crate declares must be listed in the README's
/// feature table (a Markdown table row naming the crate and the feature).
fn check_readme_table(root: &Path, report: &mut Report) -> Result<()> {
    let mut manifests = Vec::new();
    collect_manifests(root, &mut manifests)?;
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap_or_default();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect();
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest)?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        let Some(name) = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            continue;
        };
        for feature in declared_features(&manifest)? {
            if feature == "default" {
                continue;
            }
            let quoted = format!("`{feature}`");
            if !rows
                .iter()
                .any(|row| row.contains(&quoted) && row.contains(name))
            {
                report.violations.push(format!(
                    "README.md: feature `{feature}` of crate `{name}` is missing from the feature table"
                ));
            }
        }
    }
    Ok(())
}

fn skip_dir(name: &str) -> bool {
    name.starts_with('.') || name.starts_with("target")
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if !skip_dir(&name) {
                collect_rs_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn collect_manifests(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if !skip_dir(&name) {
                collect_manifests(&entry.path(), out)?;
            }
        } else if name == "Cargo.toml" {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The nearest directory above `file` (within `root`) with a `[package]` manifest.
fn owning_crate(root: &Path, file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if text.lines().any(|l| l.trim() == "[package]") {
                return Some(d.to_path_buf());
            }
        }
        if d == root {
            return None;
        }
        dir = d.parent();
    }
    None
}

/// Features a manifest declares: `[features]` keys plus optional dependencies
/// that are not only referenced through `dep:`.
fn declared_features(manifest: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let mut declared = BTreeSet::new();
    let mut dep_refs = BTreeSet::new();
    if let Some(features) = doc.get("features").and_then(toml::Value::as_table) {
        for (name, enables) in features {
            declared.insert(name.clone());
            for item in enables
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(toml::Value::as_str)
            {
                if let Some(dep) = item.strip_prefix("dep:") {
                    dep_refs.insert(dep.to_string());
                }
            }
        }
    }
    let mut dep_tables: Vec<&toml::Table> = Vec::new();
    for key in ["dependencies", "build-dependencies"] {
        if let Some(t) = doc.get(key).and_then(toml::Value::as_table) {
            dep_tables.push(t);
        }
    }
    if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
        for target in targets.values().filter_map(toml::Value::as_table) {
            for key in ["dependencies", "build-dependencies"] {
                if let Some(t) = target.get(key).and_then(toml::Value::as_table) {
                    dep_tables.push(t);
                }
            }
        }
    }
    for table in dep_tables {
        for (name, spec) in table {
            let optional = spec
                .get("optional")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            if optional && !dep_refs.contains(name) {
                declared.insert(name.clone());
            }
        }
    }
    Ok(declared)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Splits Rust source into identifiers, string literals and punctuation,
/// dropping comments, char literals and everything else.
fn tokenize(src: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            let start_line = line;
            let (text, end) = plain_string(&chars, i + 1, &mut line);
            tokens.push((Token::Str(text), start_line));
            i = end;
        } else if (c == 'r' || c == 'b')
            && raw_string_start(&chars, i).is_some()
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let (hashes, quote_at) = raw_string_start(&chars, i).unwrap_or((0, i));
            let start_line = line;
            let mut j = quote_at + 1;
            let mut text = String::new();
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if chars[j] == '\n' {
                    line += 1;
                }
                text.push(chars[j]);
                j += 1;
            }
            tokens.push((Token::Str(text), start_line));
            i = j;
        } else if c == '\'' {
            // Char literal ('x', '\n', '\'') or a lifetime ('a): skip either.
            if next == Some('\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c.is_whitespace() || c.is_ascii_digit() {
            i += 1;
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

/// Reads a `"..."` string body starting after the opening quote.
fn plain_string(chars: &[char], mut i: usize, line: &mut usize) -> (String, usize) {
    let mut text = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if let Some(&escaped) = chars.get(i + 1) {
                    text.push(escaped);
                }
                i += 2;
            }
            '"' => return (text, i + 1),
            c => {
                if c == '\n' {
                    *line += 1;
                }
                text.push(c);
                i += 1;
            }
        }
    }
    (text, i)
}

/// If `chars[i..]` starts a raw string (`r"`, `r#"`, `br"`...), returns the
/// number of `#` and the index of the opening quote.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j))
}

/// Finds every feature predicate inside `cfg(...)`, `cfg!(...)` and the
/// predicate of `cfg_attr(...)`.
pub fn scan(src: &str) -> Vec<Gate> {
    let tokens = tokenize(src);
    let mut gates = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (Token::Ident(word), _) = &tokens[i] else {
            i += 1;
            continue;
        };
        if word != "cfg" && word != "cfg_attr" {
            i += 1;
            continue;
        }
        let is_attr = word == "cfg_attr";
        let mut j = i + 1;
        if !is_attr && tokens.get(j).map(|t| &t.0) == Some(&Token::Punct('!')) {
            j += 1;
        }
        if tokens.get(j).map(|t| &t.0) != Some(&Token::Punct('(')) {
            i += 1;
            continue;
        }
        // Walk the balanced parentheses; for cfg_attr stop at the first
        // top-level comma (what follows is the attribute, not the predicate).
        let mut depth = 0usize;
        let mut k = j;
        while k < tokens.len() {
            match &tokens[k].0 {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Punct(',') if is_attr && depth == 1 => break,
                Token::Ident(name) if name == "feature" => {
                    if let (Some((Token::Punct('='), _)), Some((Token::Str(feature), line))) =
                        (tokens.get(k + 1), tokens.get(k + 2))
                    {
                        gates.push(Gate {
                            feature: feature.clone(),
                            line: *line,
                        });
                    }
                }
                _ => {}
            }
            k += 1;
        }
        i = k.max(i + 1);
    }
    gates
}

/// Runs the task on the workspace: prints the table, fails on violations.
pub fn run(root: &Path) -> Result<()> {
    let budget_path = root.join("xtask/gates.toml");
    let budget = Budget::parse(
        &std::fs::read_to_string(&budget_path)
            .with_context(|| format!("reading {}", budget_path.display()))?,
    )?;
    let report = check(root, budget)?;
    print!("{}", report.table(budget));
    if report.violations.is_empty() {
        println!("gates: ok");
        Ok(())
    } else {
        for v in &report.violations {
            eprintln!("gates: {v}");
        }
        bail!("{} feature-gate violation(s)", report.violations.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        total: 4,
        per_file: 2,
    };

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn krate(root: &Path, name: &str, features: &str) {
        write(
            root,
            &format!("{name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[features]\n{features}\n"
            ),
        );
    }

    fn readme(root: &Path, rows: &[(&str, &str)]) {
        let mut text = String::from("| crate | feature | what |\n|---|---|---|\n");
        for (c, f) in rows {
            let _ = writeln!(text, "| {c} | `{f}` | x |");
        }
        write(root, "README.md", &text);
    }

    #[test]
    fn counts_every_form_and_ignores_strings_and_comments() {
        let src = r##"
            #[cfg(feature = "a")]
            mod a;
            #[cfg(all(feature = "b", not(feature = "c")))]
            fn f() {}
            #[cfg_attr(feature = "d", derive(Debug))]
            struct S;
            fn g() -> bool { cfg!(feature = "e") }
            #[cfg(target_os = "linux")]
            mod linux;
            // #[cfg(feature = "comment")]
            /* #[cfg(feature = "block")] */
            const T: &str = "#[cfg(feature = \"string\")]";
            const R: &str = r#"#[cfg(feature = "raw")]"#;
        "##;
        let names: Vec<_> = scan(src).into_iter().map(|g| g.feature).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn clean_tree_passes_and_lists_files() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "alpha", "full = []");
        write(
            dir.path(),
            "alpha/src/lib.rs",
            "#[cfg(feature = \"full\")]\nmod extra;\n",
        );
        readme(dir.path(), &[("alpha", "full")]);
        let report = check(dir.path(), BUDGET).unwrap();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert_eq!(report.total(), 1);
        assert!(report.table(BUDGET).contains("alpha/src/lib.rs"));
    }

    #[test]
    fn per_file_budget_breach_fails() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "alpha", "full = []");
        readme(dir.path(), &[("alpha", "full")]);
        write(
            dir.path(),
            "alpha/src/lib.rs",
            "#[cfg(feature = \"full\")]\nmod a;\n#[cfg(feature = \"full\")]\nmod b;\n#[cfg(feature = \"full\")]\nmod c;\n",
        );
        let report = check(dir.path(), BUDGET).unwrap();
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(report.violations[0].contains("per-file budget is 2"));
    }

    #[test]
    fn total_budget_breach_fails() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "alpha", "full = []");
        readme(dir.path(), &[("alpha", "full")]);
        for name in ["a", "b", "c"] {
            write(
                dir.path(),
                &format!("alpha/src/{name}.rs"),
                "#[cfg(feature = \"full\")]\nmod x;\n#[cfg(feature = \"full\")]\nmod y;\n",
            );
        }
        let report = check(dir.path(), BUDGET).unwrap();
        assert_eq!(report.total(), 6);
        assert_eq!(
            report.violations,
            ["workspace: 6 feature gates, the budget is 4"]
        );
    }

    #[test]
    fn undeclared_feature_fails_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "alpha", "full = []");
        readme(dir.path(), &[("alpha", "full")]);
        write(
            dir.path(),
            "alpha/src/lib.rs",
            "\n#[cfg(feature = \"kvm\")]\nmod kvm;\n",
        );
        let report = check(dir.path(), BUDGET).unwrap();
        assert_eq!(report.violations.len(), 1);
        assert!(report.violations[0].contains("alpha/src/lib.rs:2: feature `kvm` is not declared"));
    }

    #[test]
    fn optional_dependency_counts_as_declared() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "alpha/Cargo.toml",
            "[package]\nname = \"alpha\"\n\n[dependencies]\nserde = { version = \"1\", optional = true }\n",
        );
        readme(dir.path(), &[("alpha", "serde")]);
        write(
            dir.path(),
            "alpha/src/lib.rs",
            "#[cfg(feature = \"serde\")]\nmod s;\n",
        );
        let report = check(dir.path(), BUDGET).unwrap();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
    }

    #[test]
    fn feature_missing_from_readme_fails() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "alpha", "full = []\nall-debug = []");
        readme(dir.path(), &[("alpha", "full")]);
        write(dir.path(), "alpha/src/lib.rs", "pub fn f() {}\n");
        let report = check(dir.path(), BUDGET).unwrap();
        assert_eq!(report.violations.len(), 1);
        assert!(report.violations[0].contains("`all-debug` of crate `alpha`"));
    }

    #[test]
    fn budget_file_parses_and_rejects_garbage() {
        assert_eq!(
            Budget::parse("total = 25\nper_file = 3\n").unwrap(),
            Budget {
                total: 25,
                per_file: 3
            }
        );
        assert!(Budget::parse("total = \"many\"").is_err());
        assert!(Budget::parse("per_file = 3").is_err());
    }
}
