//! `minerguard import-falco RULES.yaml`: a Falco rules file's miner content as a policy
//! drop-in (`policy.d/*.toml`), printed on stdout. Falco matches miners by process name
//! (`miner_binaries`, third-party `crypto_miners`), by pool domain (`miner_domains`,
//! `https_miner_domains`, `http_miner_domains`) and by command-line substrings (the Stratum
//! rule's `proc.cmdline contains "stratum+tcp"`). Names go to `names`, domains to `[argv]
//! domains`, Stratum schemes to `[argv] schemes`; what minerguard cannot use (ports: it does
//! not watch connections) is said in a comment. Entries the policy would reject are left out,
//! each with a comment saying why, so the output always passes `minerguard check`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_yaml_ng::Value;

use crate::policy::Policy;

/// What a rules file holds that minerguard can use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Process-name lists, by list name, in file order.
    pub names: Vec<(String, Vec<String>)>,
    /// Pool-domain lists, by list name.
    pub domains: Vec<(String, Vec<String>)>,
    /// Stratum schemes from `proc.cmdline contains "..."`, and the rules they came from.
    pub schemes: Vec<String>,
    pub scheme_rules: Vec<String>,
    /// Port lists (not used: minerguard does not watch connections).
    pub ports: Vec<String>,
}

/// A list holds miner process names: Falco's `miner_binaries`, the `crypto_miners` of
/// tutorials, or a list a macro or rule compares `proc.name` with, under a miner's name.
fn is_name_list(name: &str, referenced_by_proc_name: &BTreeSet<String>) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("miner")
        && (name.contains("binar")
            || name.contains("process")
            || name == "crypto_miners"
            || referenced_by_proc_name.contains(&name))
}

fn is_domain_list(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("miner") && name.contains("domain")
}

fn is_port_list(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("miner") && name.contains("port")
}

/// The lists a condition compares `proc.name` (or `proc.pname`, `proc.aname`) with:
/// `proc.name in (a, b)`, where a list's name stands for its items.
fn proc_name_lists(condition: &str, out: &mut BTreeSet<String>) {
    for field in ["proc.name in", "proc.pname in", "proc.aname in"] {
        let mut rest = condition;
        while let Some(at) = rest.find(field) {
            rest = &rest[at + field.len()..];
            let Some(open) = rest.trim_start().strip_prefix('(') else {
                continue;
            };
            if let Some(close) = open.find(')') {
                for item in open[..close].split(',') {
                    out.insert(item.trim().to_ascii_lowercase());
                }
            }
        }
    }
}

/// The strings a condition looks for in the command line: `proc.cmdline contains "X"`.
fn cmdline_substrings(condition: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = condition;
    while let Some(at) = rest.find("proc.cmdline contains") {
        rest = rest[at + "proc.cmdline contains".len()..].trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            if let Some(end) = quoted.find('"') {
                found.push(quoted[..end].to_string());
            }
        }
    }
    found
}

/// A YAML scalar as Falco means it (items may be numbers, or quoted strings in quotes).
fn scalar(item: &Value) -> Option<String> {
    match item {
        Value::String(s) => Some(s.trim_matches('"').to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `entry[key]` as a string, if it is one.
fn field<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str)
}

/// Reads what `text`, a Falco rules file, holds about miners.
pub fn read(text: &str) -> Result<Imported> {
    // (Falco's files are read by yaml-cpp, as lenient as libyaml: a strict parser refuses
    // the `]` of its flow lists at the key's indentation.)
    let doc: Value = serde_yaml_ng::from_str(text).context("not YAML")?;
    let entries: Vec<&Value> = doc.as_sequence().into_iter().flatten().collect();
    if entries.is_empty() {
        bail!("no Falco rules, macros or lists in it (a YAML sequence of `- list:`, `- macro:`, `- rule:`)");
    }
    let mut referenced = BTreeSet::new();
    let mut imported = Imported::default();
    for entry in &entries {
        let condition = field(entry, "condition").unwrap_or("");
        proc_name_lists(condition, &mut referenced);
        if let Some(rule) = field(entry, "rule") {
            let about_miners = format!("{rule} {}", field(entry, "desc").unwrap_or(""))
                .to_ascii_lowercase()
                .contains("miner");
            let schemes: Vec<String> = cmdline_substrings(condition)
                .into_iter()
                .filter(|s| s.to_ascii_lowercase().starts_with("stratum"))
                .collect();
            if about_miners && !schemes.is_empty() {
                for scheme in schemes {
                    if !imported.schemes.contains(&scheme) {
                        imported.schemes.push(scheme);
                    }
                }
                imported.scheme_rules.push(rule.to_string());
            }
        }
    }
    for entry in &entries {
        let items = entry.get("items").and_then(Value::as_sequence);
        let (Some(name), Some(items)) = (field(entry, "list"), items) else {
            continue;
        };
        let items: Vec<String> = items.iter().filter_map(scalar).collect();
        if is_name_list(name, &referenced) {
            imported.names.push((name.to_string(), items));
        } else if is_domain_list(name) {
            imported.domains.push((name.to_string(), items));
        } else if is_port_list(name) {
            imported.ports.push(name.to_string());
        }
    }
    Ok(imported)
}

/// TOML's basic string (the entries are single tokens, but Falco's are not checked).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `entries` of one kind as a TOML array, keeping those `accept` does not reject (the others
/// in comments, with the reason) and none twice.
fn array(out: &mut String, key: &str, entries: &[String], accept: impl Fn(&str) -> Option<String>) {
    let mut seen = BTreeSet::new();
    let mut rejected = Vec::new();
    let _ = writeln!(out, "{key} = [");
    for entry in entries {
        if !seen.insert(entry.clone()) {
            continue;
        }
        match accept(entry) {
            None => {
                let _ = writeln!(out, "  {},", quoted(entry));
            }
            Some(why) => rejected.push((entry, why)),
        }
    }
    let _ = writeln!(out, "]");
    for (entry, why) in rejected {
        let _ = writeln!(out, "# left out: {}: {why}", quoted(entry));
    }
}

/// The drop-in for `imported`, read from `source`. Validated like any policy file before it
/// is returned.
pub fn render(imported: &Imported, source: &str) -> Result<String> {
    if imported.names.is_empty() && imported.domains.is_empty() && imported.schemes.is_empty() {
        bail!(
            "{source}: no miner lists found (Falco's are `miner_binaries`, `miner_domains`, \
             `https_miner_domains`, `http_miner_domains` in rules/falco-sandbox_rules.yaml, and \
             the Stratum rule's command-line strings)"
        );
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `minerguard import-falco` {} from {source}.\n\
         # Save it as /etc/minerguard/policy.d/<name>.toml; `minerguard check` merges it.",
        env!("CARGO_PKG_VERSION")
    );
    if !imported.ports.is_empty() {
        let _ = writeln!(
            out,
            "# Not imported: {} (ports; minerguard does not watch connections).",
            imported.ports.join(", ")
        );
    }
    let names: Vec<String> = imported.names.iter().flat_map(|(_, v)| v.clone()).collect();
    let lists: Vec<&str> = imported.names.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(out, "\n# Falco lists: {}", lists.join(", "));
    // A name alone must be a valid policy name: checked by the policy's own validator.
    array(&mut out, "names", &names, |name| {
        let probe = format!("mode = \"enforce\"\nnames = [{}]\n", quoted(name));
        Policy::validate_text(&probe).err()
    });
    if !imported.domains.is_empty() || !imported.schemes.is_empty() {
        let _ = writeln!(out, "\n[argv]");
    }
    if !imported.schemes.is_empty() {
        let _ = writeln!(
            out,
            "# From the rule(s) {}: `proc.cmdline contains`.",
            imported.scheme_rules.join(", ")
        );
        let _ = writeln!(
            out,
            "# Added to the built-in schemes (a drop-in's list adds to the policy's)."
        );
        array(&mut out, "schemes", &imported.schemes, |_| None);
    }
    if !imported.domains.is_empty() {
        let domains: Vec<String> = imported
            .domains
            .iter()
            .flat_map(|(_, v)| v.iter().map(|d| d.to_ascii_lowercase()))
            .collect();
        let lists: Vec<&str> = imported.domains.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(out, "# Falco lists: {}", lists.join(", "));
        array(&mut out, "domains", &domains, |domain| {
            let probe = format!(
                "mode = \"enforce\"\nnames = []\n[argv]\ndomains = [{}]\n",
                quoted(domain)
            );
            Policy::validate_text(&probe).err()
        });
    }
    // The whole must pass as a drop-in: a bug here must not hand the operator a file that the
    // agent then rejects at a reload.
    Policy::validate_dropin_text(&out)
        .map_err(|e| anyhow::anyhow!("the drop-in made from {source} is not valid (a bug): {e}"))?;
    Ok(out)
}

/// `minerguard import-falco RULES.yaml`.
pub fn import(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let imported = read(&text).with_context(|| format!("reading {}", path.display()))?;
    print!("{}", render(&imported, &path.display().to_string())?);
    Ok(())
}
