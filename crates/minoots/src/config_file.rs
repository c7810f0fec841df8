//! The optional configuration file (`--config minoots.toml` or `MINOOTS_CONFIG`) and
//! `minoots config print`.
//!
//! Precedence is flags, then `MINOOTS_*` environment variables, then the file: each
//! top-level key of the file names a setting the way its environment variable does
//! (`data-dir` or `data_dir` is `MINOOTS_DATA_DIR`) and is applied only where the
//! environment has not set it, before the flags are parsed. `[tiers.NAME]` tables replace
//! or add tiers (`requestsPerMinute`, `createsPerMinute`, `timersPerDay`, `pendingTimers`,
//! `maxDurationMs`) and travel as `MINOOTS_TIERS` (JSON). A key the binary does not know is
//! an error naming it, so a typo is never silently ignored.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};

/// Every environment variable a `minoots` subcommand reads, from the flag definitions.
pub fn known_settings(cmd: &clap::Command) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![cmd.clone()];
    while let Some(c) = stack.pop() {
        for a in c.get_arguments() {
            if let Some(env) = a.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        stack.extend(c.get_subcommands().cloned());
    }
    out
}

/// The file named by `--config PATH` / `--config=PATH` in `args`, or `MINOOTS_CONFIG`.
pub fn config_path(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_string());
        }
    }
    std::env::var("MINOOTS_CONFIG")
        .ok()
        .filter(|p| !p.is_empty())
}

fn env_name(key: &str) -> String {
    format!("MINOOTS_{}", key.replace('-', "_").to_ascii_uppercase())
}

fn value_text(key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| value_text(key, x))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        other => bail!(
            "setting \"{key}\" has an unsupported value {}",
            other.type_str()
        ),
    })
}

/// Reads the file and sets the environment variables it names that are not set yet.
/// Returns the settings it applied.
pub fn apply(path: &Path, known: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {} as TOML", path.display()))?;
    let mut applied = Vec::new();
    for (key, value) in &table {
        if key == "tiers" {
            let toml::Value::Table(tiers) = value else {
                bail!("[tiers] must be a table of tiers, like [tiers.free]");
            };
            let json = serde_json::to_string(tiers)?;
            if std::env::var_os("MINOOTS_TIERS").is_none() {
                // SAFETY: called at start-up before any thread is spawned.
                unsafe { std::env::set_var("MINOOTS_TIERS", json) };
                applied.push("MINOOTS_TIERS".to_string());
            }
            continue;
        }
        let env = env_name(key);
        if !known.contains(&env) {
            let names: Vec<String> = known
                .iter()
                .map(|k| {
                    k.trim_start_matches("MINOOTS_")
                        .to_ascii_lowercase()
                        .replace('_', "-")
                })
                .collect();
            bail!(
                "{}: unknown setting \"{key}\"; known settings: {}, and [tiers.NAME] tables",
                path.display(),
                names.join(", ")
            );
        }
        if std::env::var_os(&env).is_none() {
            let text = value_text(key, value)?;
            // SAFETY: called at start-up before any thread is spawned.
            unsafe { std::env::set_var(&env, text) };
            applied.push(env);
        }
    }
    Ok(applied)
}

/// True for settings whose values are secrets.
fn is_secret(env: &str) -> bool {
    ["KEY", "TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| env.contains(w))
        || env.ends_with("DATABASE_URL")
}

/// The effective settings (environment and file; flags are per command) with secrets
/// masked, one `key = "value"` line each, unset ones as comments with their default.
pub fn print(cmd: &clap::Command, known: &BTreeSet<String>) {
    let mut defaults = std::collections::BTreeMap::new();
    let mut stack = vec![cmd.clone()];
    while let Some(c) = stack.pop() {
        for a in c.get_arguments() {
            if let (Some(env), Some(d)) = (a.get_env(), a.get_default_values().first()) {
                defaults.insert(
                    env.to_string_lossy().into_owned(),
                    d.to_string_lossy().into_owned(),
                );
            }
        }
        stack.extend(c.get_subcommands().cloned());
    }
    for env in known
        .iter()
        .chain(std::iter::once(&"MINOOTS_TIERS".to_string()))
    {
        let key = env
            .trim_start_matches("MINOOTS_")
            .to_ascii_lowercase()
            .replace('_', "-");
        match std::env::var(env) {
            Ok(v) if is_secret(env) && !v.is_empty() => println!("{key} = \"********\""),
            Ok(v) => println!("{key} = {:?}", v),
            Err(_) => match defaults.get(env) {
                Some(d) => println!("# {key} = {d:?} (default)"),
                None => println!("# {key} (not set)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_environment_names_and_paths_are_found() {
        assert_eq!(env_name("data-dir"), "MINOOTS_DATA_DIR");
        assert_eq!(env_name("http_addr"), "MINOOTS_HTTP_ADDR");
        let args: Vec<String> = ["minoots", "serve", "--config", "x.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(config_path(&args).as_deref(), Some("x.toml"));
        let args: Vec<String> = ["minoots", "--config=y.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(config_path(&args).as_deref(), Some("y.toml"));
        assert!(is_secret("MINOOTS_ADMIN_KEY"));
        assert!(is_secret("MINOOTS_KERNEL_TOKEN"));
        assert!(is_secret("MINOOTS_DATABASE_URL"));
        assert!(is_secret("MINOOTS_BENCH_DATABASE_URL"));
        assert!(!is_secret("MINOOTS_HTTP_ADDR"));
        assert_eq!(
            value_text("k", &toml::Value::Array(vec!["a".into(), "b".into()])).unwrap(),
            "a,b"
        );
    }
}
