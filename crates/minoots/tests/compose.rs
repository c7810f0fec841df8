//! `deploy/docker-compose.yml`, kept true without Docker: this test reads the file,
//! resolves its YAML anchors and merge keys and compose's `${VAR...}` interpolation,
//! takes the MINOOTS services of the profile "postgres" (those built from
//! `deploy/Dockerfile`), and starts exactly those processes: the image's entrypoint with
//! each service's `command`, and the image's `ENV` overlaid by the service's
//! `environment`, nothing else (the test's own environment is not inherited). What only
//! Docker provides is reproduced on loopback:
//!
//! - each service's `0.0.0.0:PORT` becomes `127.0.0.1:FREE`, one free port per service
//!   and container port, and `http://SERVICE:PORT` in another service's variables
//!   becomes the same `127.0.0.1:FREE` (so `kernel-1:50051` is where kernel-1 listens);
//! - `postgres://USER:PASSWORD@postgres:5432/DB` (checked against the `postgres`
//!   service's `POSTGRES_*`) becomes `MINOOTS_TEST_DATABASE_URL`, with
//!   `MINOOTS_DATABASE_SCHEMA` set to a schema of the test's own, dropped at the end;
//! - paths under the image's home (`/var/lib/minoots`) go to a temporary directory;
//! - `depends_on` orders the starts, and `condition: service_healthy` waits for the
//!   dependency's health check (`curl -fsS URL`, as an HTTP GET to the mapped port);
//! - `MINOOTS_LOG=warn` keeps the test's output short (log level only).
//!
//! Then a timer created through the control plane's published port is delivered to a
//! loopback receiver, both kernels hold their share of the shards (in their metrics and
//! in the database), both fire timers of their own shards, every service's health check
//! answers, and every process stops cleanly on SIGTERM.
//!
//! Without Docker the YAML is read by a small parser of the subset the file uses (block
//! mappings and sequences, flow `[...]` and `{...}` on one line, quoted and plain
//! scalars, comments, anchors, aliases and `<<` merge keys): anything else in the file
//! (block scalars, tags, several documents, a service key the test does not reproduce)
//! fails the test loudly, so the file cannot drift beyond what is checked here.
//! The names check needs no database: every `MINOOTS_*` variable a service of either
//! stack receives must be known to the subcommand it runs (as listed by its `--help`),
//! or belong to a shared environment (a top-level `x-…-env` mapping, handed to every
//! plane, each taking what concerns it) and be known to some subcommand that receives it.
//!
//! Needs `MINOOTS_TEST_DATABASE_URL` for the processes; without it that test prints
//! "skipped: no database" and passes.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::pg::{self, Receiver, Schema, admin, metric, until_metric};
use common::yaml::{Parsed, Yaml, parse_yaml};
use common::{WAIT, free_port, terminate};

/// What an operator exports before `docker compose up` of the profile (the default stack
/// needs only the first two). Demo mode lets the orchestrators reach the test's loopback
/// receiver.
const OPERATOR_ENV: &[(&str, &str)] = &[
    (
        "MINOOTS_ADMIN_KEY",
        "mnt_compose_admin_key_0123456789abcdef0123",
    ),
    ("MINOOTS_KERNEL_TOKEN", "compose-kernel-token-0123456789"),
    ("MINOOTS_POSTGRES_PASSWORD", "compose-password"),
    ("MINOOTS_DEMO", "true"),
];
const PROFILE: &str = "postgres";
/// The profile that adds Prometheus beside the default stack.
const MONITORING_PROFILE: &str = "monitoring";
/// The image's home: its `WORKDIR` and the volume of the default stack.
const IMAGE_HOME: &str = "/var/lib/minoots";
/// Variables the binary reads that are not flags (so not in `--help`): the log filter.
const READ_OUTSIDE_FLAGS: &[&str] = &["MINOOTS_LOG"];
/// Service keys this test reproduces (`stop_grace_period`: a kernel stopped with its
/// orchestrator attached must exit within it) or knows to be irrelevant on loopback
/// (`volumes`, `restart`, `deploy` replicas, `hostname`: the processes get distinct names
/// from their pids anyway). Any other key fails the test: teach it first.
const SERVICE_KEYS: &[&str] = &[
    "build",
    "image",
    "command",
    "environment",
    "depends_on",
    "healthcheck",
    "volumes",
    "ports",
    "profiles",
    "hostname",
    "restart",
    "deploy",
    "stop_grace_period",
];
/// How many timers the test creates: enough that each of two kernels holds the shard of
/// some of them (all in one kernel's half: probability 2^-15).
const TIMERS: usize = 16;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

// ---------------------------------------------------------------------------------------
// Compose's interpolation, services and the image.

/// `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
/// `${VAR:+alt}`, `${VAR+alt}`, `$VAR` and `$$`, from `vars`.
fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Parsed<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (expr, r) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').ok_or("an unclosed ${")?;
            (&b[..end], &b[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if expr.contains('$') {
            return Err(format!("nested interpolation in ${{{expr}}}"));
        }
        let name_end = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_end);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`${expr}` does not name a variable"));
        }
        let value = vars.get(name);
        let set_nonempty = value.is_some_and(|v| !v.is_empty());
        let piece = match op {
            "" => value
                .cloned()
                .ok_or_else(|| format!("{name} is read without a default and unset"))?,
            _ if op.starts_with(":-") => match set_nonempty {
                true => value.unwrap().clone(),
                false => op[2..].to_string(),
            },
            _ if op.starts_with('-') => value.cloned().unwrap_or_else(|| op[1..].into()),
            _ if op.starts_with(":?") => match set_nonempty {
                true => value.unwrap().clone(),
                false => return Err(format!("{name} is required: {}", &op[2..])),
            },
            _ if op.starts_with('?') => value
                .cloned()
                .ok_or_else(|| format!("{name} is required: {}", &op[1..]))?,
            _ if op.starts_with(":+") => match set_nonempty {
                true => op[2..].to_string(),
                false => String::new(),
            },
            _ if op.starts_with('+') => match value {
                Some(_) => op[1..].to_string(),
                None => String::new(),
            },
            _ => return Err(format!("`${{{expr}}}` is outside compose's interpolation")),
        };
        out.push_str(&piece);
        rest = r;
    }
    out.push_str(rest);
    Ok(out)
}

fn interpolate_all(y: &Yaml, vars: &BTreeMap<String, String>) -> Parsed<Yaml> {
    Ok(match y {
        Yaml::Null => Yaml::Null,
        Yaml::Str(s) => Yaml::Str(interpolate(s, vars)?),
        Yaml::Seq(items) => Yaml::Seq(
            items
                .iter()
                .map(|v| interpolate_all(v, vars))
                .collect::<Parsed<_>>()?,
        ),
        Yaml::Map(entries) => Yaml::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), interpolate_all(v, vars)?)))
                .collect::<Parsed<_>>()?,
        ),
    })
}

#[derive(Debug)]
struct Service {
    name: String,
    profiles: Vec<String>,
    image: Option<String>,
    dockerfile: Option<String>,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// (service, condition)
    depends_on: Vec<(String, String)>,
    healthcheck: Option<Vec<String>>,
    /// (published, container port)
    ports: Vec<(u16, u16)>,
    /// How long compose waits after SIGTERM before SIGKILL (its default: 10 s).
    stop_grace: Duration,
}

impl Service {
    fn from_yaml(name: &str, y: &Yaml) -> Service {
        let m = y
            .map()
            .unwrap_or_else(|| panic!("service {name} is not a mapping"));
        for (k, _) in m {
            assert!(
                SERVICE_KEYS.contains(&k.as_str()),
                "service {name} uses `{k}`, which tests/compose.rs does not reproduce: teach it first"
            );
        }
        let strs = |key: &str| {
            y.get(key).map(|v| {
                v.strings()
                    .unwrap_or_else(|| panic!("{name}.{key} is a list of strings"))
            })
        };
        let env = match y.get("environment") {
            None => BTreeMap::new(),
            Some(Yaml::Map(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .str()
                        .unwrap_or_else(|| panic!("{name}: {k} has no value"));
                    (k.clone(), v.to_string())
                })
                .collect(),
            Some(other) => panic!("{name}.environment must be a mapping, not {other:?}"),
        };
        let depends_on = match y.get("depends_on") {
            None => vec![],
            Some(Yaml::Seq(s)) => s
                .iter()
                .map(|d| (d.str().unwrap().to_string(), "service_started".into()))
                .collect(),
            Some(Yaml::Map(m)) => m
                .iter()
                .map(|(k, v)| {
                    let c = v.get("condition").and_then(Yaml::str);
                    let c = c.unwrap_or_else(|| panic!("{name}.depends_on.{k}.condition"));
                    (k.clone(), c.to_string())
                })
                .collect(),
            Some(other) => panic!("{name}.depends_on: {other:?}"),
        };
        let healthcheck = y.get("healthcheck").map(|h| {
            h.get("test")
                .and_then(Yaml::strings)
                .unwrap_or_else(|| panic!("{name}.healthcheck.test is a list of strings"))
        });
        let ports = strs("ports")
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let (h, c) = p
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{name}: port {p} is HOST:CONTAINER"));
                (h.parse().unwrap(), c.parse().unwrap())
            })
            .collect();
        let stop_grace = match y.get("stop_grace_period").and_then(Yaml::str) {
            None => Duration::from_secs(10),
            Some(g) => Duration::from_secs(
                g.strip_suffix('s')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: stop_grace_period {g}: teach the test")),
            ),
        };
        let build = y.get("build");
        Service {
            name: name.to_string(),
            profiles: strs("profiles").unwrap_or_default(),
            image: y.get("image").and_then(Yaml::str).map(str::to_string),
            dockerfile: build
                .and_then(|b| b.get("dockerfile"))
                .and_then(Yaml::str)
                .map(str::to_string),
            command: strs("command").unwrap_or_default(),
            env,
            depends_on,
            healthcheck,
            ports,
            stop_grace,
        }
    }

    fn is_minoots(&self) -> bool {
        self.dockerfile.as_deref() == Some("deploy/Dockerfile")
    }

    fn subcommand(&self) -> &str {
        self.command
            .first()
            .unwrap_or_else(|| panic!("{} has a command", self.name))
    }
}

struct Compose {
    doc: Yaml,
    services: Vec<Service>,
}

/// Reads the file, interpolated with `vars` as compose does: every service, whatever its
/// profile (so a variable the profile requires would stop the default stack too).
fn load_compose(vars: &[(&str, &str)]) -> Compose {
    assert!(
        !repo_file("deploy/.env").exists(),
        "deploy/.env would feed compose's interpolation; this test does not read it"
    );
    let text = std::fs::read_to_string(repo_file("deploy/docker-compose.yml")).unwrap();
    let doc = parse_yaml(&text).unwrap_or_else(|e| panic!("deploy/docker-compose.yml: {e}"));
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let doc = interpolate_all(&doc, &vars).unwrap_or_else(|e| panic!("interpolation: {e}"));
    for (k, _) in doc.map().expect("the file is a mapping") {
        assert!(
            k.starts_with("x-") || ["services", "volumes"].contains(&k.as_str()),
            "top-level `{k}` is not reproduced by this test"
        );
    }
    let services = doc
        .get("services")
        .and_then(Yaml::map)
        .expect("services")
        .iter()
        .map(|(name, y)| Service::from_yaml(name, y))
        .collect();
    Compose { doc, services }
}

/// What the final stage of `deploy/Dockerfile` gives every container.
struct Image {
    entrypoint: Vec<String>,
    env: Vec<(String, String)>,
    health_url: String,
    workdir: String,
}

fn load_image() -> Image {
    let text = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let (mut entrypoint, mut env, mut health_url, mut workdir) = (vec![], vec![], None, None);
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instr {
            "FROM" => {
                (entrypoint, env, health_url, workdir) = (vec![], vec![], None, None);
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("Dockerfile ENV {pair} is not K=V"));
                    assert!(
                        !v.contains(['"', '\'']),
                        "quoted ENV values: teach the test"
                    );
                    env.push((k.to_string(), v.to_string()));
                }
            }
            "ENTRYPOINT" => entrypoint = serde_json::from_str(rest).expect("exec-form ENTRYPOINT"),
            "WORKDIR" => workdir = Some(rest.to_string()),
            "HEALTHCHECK" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let at = words
                    .iter()
                    .position(|w| *w == "-fsS")
                    .expect("curl -fsS URL");
                health_url = Some(words[at + 1].to_string());
            }
            _ => {}
        }
    }
    Image {
        entrypoint,
        env,
        health_url: health_url.expect("a HEALTHCHECK"),
        workdir: workdir.expect("a WORKDIR"),
    }
}

/// The `MINOOTS_*` variables `minoots SUBCOMMAND` reads, from its `--help`.
fn known_variables(subcommand: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args([subcommand, "--help"])
        .env_clear()
        .output()
        .expect("minoots --help");
    assert!(out.status.success(), "minoots {subcommand} --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let names: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    assert!(
        names.contains("MINOOTS_LOG_FORMAT"),
        "{subcommand} --help lists its variables: {help}"
    );
    names
}

/// The keys of the shared environments: top-level `x-…-env` mappings.
fn shared_variables(doc: &Yaml) -> BTreeSet<String> {
    doc.map()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("x-") && k.ends_with("-env"))
        .flat_map(|(_, v)| v.map().expect("an x-…-env mapping").iter())
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn the_yaml_subset_resolves_anchors_and_merges_and_refuses_the_rest() {
    let doc = parse_yaml(
        "x-a: &a\n  K: one # a comment\n  L: \"two: 2\"\nx-b: &b\n  <<: *a\n  K: three\ns:\n  m:\n    <<: *b\n    f: { k: [1, 'it''s'], u: http://h:1 }\n    e: *a\n    l:\n    - x\n    - ${V:-d}\n",
    )
    .unwrap();
    let m = doc.get("s").unwrap().get("m").unwrap();
    assert_eq!(
        m.get("K"),
        Some(&Yaml::Str("three".into())),
        "explicit keys win"
    );
    assert_eq!(m.get("L"), Some(&Yaml::Str("two: 2".into())), "merged");
    assert_eq!(m.get("e"), doc.get("x-a"));
    let f = m.get("f").unwrap();
    assert_eq!(
        f.get("k").unwrap().strings().unwrap(),
        ["1".to_string(), "it's".to_string()]
    );
    assert_eq!(f.get("u"), Some(&Yaml::Str("http://h:1".into())));
    let vars = BTreeMap::from([("W".to_string(), "w".to_string())]);
    let l = interpolate_all(m.get("l").unwrap(), &vars).unwrap();
    assert_eq!(l.strings().unwrap(), ["x".to_string(), "d".to_string()]);
    assert_eq!(interpolate("$$W ${W:?no} $W", &vars).unwrap(), "$W w w");
    assert!(
        interpolate("${V:?needed}", &vars)
            .unwrap_err()
            .contains("needed")
    );
    for outside in [
        "a: |\n  text\n",
        "a: !tag x\n",
        "---\na: 1\n",
        "a: b: c\n",
        "a: *missing\n",
        "a: 1\na: 2\n",
        "a:\n\t- x\n",
        "? a\n: b\n",
        "a: 1\n  b: 2\n",
    ] {
        assert!(parse_yaml(outside).is_err(), "{outside:?} is refused");
    }
    // A sequence item may open a mapping (the Prometheus files are lists of them).
    let items = parse_yaml("a:\n  - b: 1\n    c: [x]\n  - d\nz:\n- e: 2\n").unwrap();
    let a = items.get("a").unwrap().seq().unwrap();
    assert_eq!(a[0].get("b"), Some(&Yaml::Str("1".into())));
    assert_eq!(a[0].get("c").unwrap().strings().unwrap(), ["x".to_string()]);
    assert_eq!(a[1], Yaml::Str("d".into()));
    let z = items.get("z").unwrap().seq().unwrap();
    assert_eq!(z[0].get("e"), Some(&Yaml::Str("2".into())));
    assert!(
        parse_yaml("a:\n  - b: 1\n     c: 2\n").is_err(),
        "keys line up"
    );
}

#[test]
fn every_variable_the_compose_file_hands_a_minoots_process_is_one_it_reads() {
    let compose = load_compose(OPERATOR_ENV);
    let image = load_image();
    assert_eq!(image.entrypoint, ["minoots"], "the image runs the binary");
    assert_eq!(image.workdir, IMAGE_HOME, "the image's home");
    let shared = shared_variables(&compose.doc);
    assert!(shared.contains("MINOOTS_KERNEL_TOKEN"), "{shared:?}");
    let mut help: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let minoots: Vec<&Service> = compose.services.iter().filter(|s| s.is_minoots()).collect();
    for s in &minoots {
        help.entry(s.subcommand().to_string())
            .or_insert_with(|| known_variables(s.subcommand()));
    }
    let known_to =
        |sub: &str, var: &str| help[sub].contains(var) || READ_OUTSIDE_FLAGS.contains(&var);
    let mut received: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for s in &minoots {
        let vars = image.env.iter().map(|(k, _)| k).chain(s.env.keys());
        for var in vars {
            assert!(var.starts_with("MINOOTS_"), "{} gets {var}", s.name);
            received
                .entry(var.clone())
                .or_default()
                .push(s.subcommand());
            let from_image = image.env.iter().any(|(k, _)| k == var);
            assert!(
                known_to(s.subcommand(), var.as_str()) || shared.contains(var) || from_image,
                "{} sets {var}, which `minoots {}` does not read and no shared environment holds",
                s.name,
                s.subcommand()
            );
        }
    }
    // Each variable of a shared environment (or of the image) is read by some plane.
    for (var, subs) in &received {
        assert!(
            subs.iter().any(|sub| known_to(sub, var.as_str())),
            "{var} is handed to {subs:?}, none of which reads it"
        );
    }
    // Both stacks can run at once: no two services publish one host port.
    let mut published = BTreeSet::new();
    for s in &compose.services {
        for (host, _) in &s.ports {
            assert!(published.insert(*host), "host port {host} published twice");
        }
    }
    // The default stack is what it was: no profile, on SQLite, and `docker compose up`
    // needs only its two variables (compose interpolates the profile's services too).
    load_compose(&OPERATOR_ENV[..2]);
    for name in ["kernel", "orchestrator", "control-plane"] {
        let s = compose.services.iter().find(|s| s.name == name).unwrap();
        assert!(s.profiles.is_empty(), "{name} starts by default");
        assert!(
            !s.env.contains_key("MINOOTS_DATABASE_URL"),
            "{name} on SQLite"
        );
    }
    println!(
        "checked the variables of {} MINOOTS services",
        minoots.len()
    );
}

/// The variable that sets where `minoots SUBCOMMAND` serves `/metrics`: its `--http-addr`
/// (the REST address of a control plane, the health address of the others), from `--help`.
fn metrics_address_variable(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args([subcommand, "--help"])
        .env_clear()
        .output()
        .expect("minoots --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let flag = help
        .find("--http-addr")
        .unwrap_or_else(|| panic!("`minoots {subcommand}` has --http-addr: {help}"));
    let env = &help[flag..][help[flag..].find("[env: ").expect("its variable") + 6..];
    env.chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

#[test]
fn the_monitoring_profile_scrapes_the_default_stack_and_loads_the_rules() {
    let compose = load_compose(&OPERATOR_ENV[..2]);
    let profile: Vec<&Service> = compose
        .services
        .iter()
        .filter(|s| s.profiles.iter().any(|p| p == MONITORING_PROFILE))
        .collect();
    assert_eq!(profile.len(), 1, "the profile is Prometheus alone");
    let prom = profile[0];
    assert!(
        prom.image
            .as_deref()
            .is_some_and(|i| i.starts_with("prom/prometheus:")),
        "{prom:?}"
    );

    // What its volumes mount from this checkout: paths relative to the compose file.
    let volumes = compose
        .doc
        .get("services")
        .and_then(|s| s.get(&prom.name))
        .and_then(|p| p.get("volumes"))
        .and_then(Yaml::strings)
        .expect("Prometheus mounts its configuration");
    let mounts: Vec<(PathBuf, String)> = volumes
        .iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = repo_file("deploy").join(parts.next().unwrap());
            let container = parts.next().expect("HOST:CONTAINER").to_string();
            assert!(host.is_dir(), "{v}: {} is a directory", host.display());
            (host, container)
        })
        .collect();
    let on_host = |path: &str| -> PathBuf {
        mounts
            .iter()
            .find_map(|(host, container)| {
                Path::new(path)
                    .strip_prefix(container)
                    .ok()
                    .map(|rest| host.join(rest))
            })
            .unwrap_or_else(|| panic!("{path} is in no directory mounted from the checkout"))
    };
    let config_arg = prom
        .command
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("Prometheus is given --config.file");
    let config_path = on_host(config_arg);
    let text = std::fs::read_to_string(&config_path)
        .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
    let config = parse_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));

    // The rule files, read relative to the configuration file as Prometheus does.
    let rules = config
        .get("rule_files")
        .and_then(Yaml::strings)
        .expect("rule_files");
    for r in &rules {
        let p = config_path.parent().unwrap().join(r);
        assert!(p.is_file(), "rule file {r}: {} exists", p.display());
    }
    assert!(
        rules.iter().any(|r| r == "alerts.yml"),
        "the alert rules are loaded: {rules:?}"
    );

    // Where each MINOOTS service of the default stack serves /metrics.
    let mut listens: BTreeMap<String, u16> = BTreeMap::new();
    for s in compose
        .services
        .iter()
        .filter(|s| s.is_minoots() && s.profiles.is_empty())
    {
        let var = metrics_address_variable(s.subcommand());
        let addr = s
            .env
            .get(&var)
            .unwrap_or_else(|| panic!("{} sets {var}", s.name));
        let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
        assert_eq!(
            host, "0.0.0.0",
            "{}: {var}={addr} is reachable from Prometheus",
            s.name
        );
        listens.insert(s.name.clone(), port.parse().unwrap());
    }

    // Every target is one of them at that port, and every one of them is scraped.
    let mut scraped = BTreeSet::new();
    let jobs = config
        .get("scrape_configs")
        .and_then(Yaml::seq)
        .expect("scrape_configs");
    for job in jobs {
        let name = job.get("job_name").and_then(Yaml::str).expect("job_name");
        assert!(
            name.starts_with("minoots"),
            "the alert rules select jobs minoots…: {name}"
        );
        for (key, default) in [("metrics_path", "/metrics"), ("scheme", "http")] {
            let value = job.get(key).and_then(Yaml::str).unwrap_or(default);
            assert_eq!(value, default, "{name}.{key}");
        }
        let mut targets: Vec<(String, u16)> = Vec::new();
        for (key, value) in job.map().unwrap() {
            match key.as_str() {
                "job_name" | "metrics_path" | "scheme" | "scrape_interval" => {}
                "static_configs" => {
                    for c in value.seq().expect("a list") {
                        for t in c.get("targets").and_then(Yaml::strings).expect("targets") {
                            let (host, port) = t.rsplit_once(':').expect("HOST:PORT");
                            targets.push((host.to_string(), port.parse().unwrap()));
                        }
                    }
                }
                "dns_sd_configs" => {
                    for c in value.seq().expect("a list") {
                        assert_eq!(c.get("type").and_then(Yaml::str), Some("A"), "{name}");
                        let port: u16 = c
                            .get("port")
                            .and_then(Yaml::str)
                            .expect("port")
                            .parse()
                            .unwrap();
                        for host in c.get("names").and_then(Yaml::strings).expect("names") {
                            targets.push((host, port));
                        }
                    }
                }
                other => panic!("{name}: `{other}` is not checked by this test: teach it first"),
            }
        }
        assert!(!targets.is_empty(), "{name} has targets");
        for (host, port) in targets {
            assert_eq!(
                listens.get(&host),
                Some(&port),
                "{name} scrapes {host}:{port}; the default stack serves /metrics at {listens:?}"
            );
            scraped.insert(host);
        }
    }
    let all: BTreeSet<String> = listens.keys().cloned().collect();
    assert_eq!(
        scraped, all,
        "every MINOOTS service of the default stack is scraped"
    );
    for (dep, _) in &prom.depends_on {
        assert!(
            listens.contains_key(dep),
            "Prometheus depends on {dep}, a MINOOTS service"
        );
    }
    println!("Prometheus scrapes {scraped:?} and loads {rules:?}");
}

// ---------------------------------------------------------------------------------------
// The profile's processes.

/// Loopback stand-ins for the containers' network: one free port per service and
/// container port.
#[derive(Default)]
struct Ports(Mutex<HashMap<(String, u16), u16>>);

impl Ports {
    fn of(&self, service: &str, port: u16) -> u16 {
        *self
            .0
            .lock()
            .unwrap()
            .entry((service.to_string(), port))
            .or_insert_with(free_port)
    }

    /// `http://127.0.0.1:PORT/path` inside `service` (its own loopback) on this machine.
    fn own_url(&self, service: &str, url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        assert_eq!(
            u.host_str(),
            Some("127.0.0.1"),
            "{service} checks itself: {url}"
        );
        let port = self.of(service, u.port().expect("a port"));
        format!("http://127.0.0.1:{port}{}", u.path())
    }
}

/// The database's settings as the `postgres` service defines them.
struct Database {
    service: String,
    user: String,
    password: String,
    db: String,
}

/// One service's process, as the container would run it.
struct Planned {
    name: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    health_url: String,
    dir: PathBuf,
}

/// What every service's plan shares.
struct Site<'a> {
    image: &'a Image,
    ports: &'a Ports,
    /// The profile's service names: the hosts of its network.
    stack: &'a BTreeSet<String>,
    db: &'a Database,
    test_url: &'a str,
    schema: &'a str,
    /// Stands for the image's home, one directory per service.
    home: &'a Path,
}

fn plan(s: &Service, site: &Site) -> Planned {
    let Site {
        image,
        ports,
        stack,
        db,
        test_url,
        schema,
        home,
    } = *site;
    let mut env: BTreeMap<String, String> = image.env.iter().cloned().collect();
    env.extend(s.env.clone());
    let dir = home.join(&s.name);
    for (key, value) in env.iter_mut() {
        if let Some(port) = value.strip_prefix("0.0.0.0:") {
            *value = format!("127.0.0.1:{}", ports.of(&s.name, port.parse().unwrap()));
        } else if let Some(path) = value.strip_prefix(IMAGE_HOME) {
            *value = format!("{}{path}", dir.display());
        } else if value.starts_with("postgres://") {
            let u = url::Url::parse(value).unwrap();
            assert_eq!(
                u.host_str(),
                Some(db.service.as_str()),
                "{key} of {}",
                s.name
            );
            assert_eq!(u.port(), Some(5432), "{key}: the image's port");
            assert_eq!(u.username(), db.user, "{key}: the user of the database");
            assert_eq!(
                u.password(),
                Some(db.password.as_str()),
                "{key}: its password"
            );
            assert_eq!(u.path(), format!("/{}", db.db), "{key}: its database");
            *value = test_url.to_string();
        } else if value.starts_with("http://") {
            let u = url::Url::parse(value).unwrap();
            let host = u.host_str().unwrap().to_string();
            assert!(
                stack.contains(&host),
                "{} reaches {host} ({key}), which the profile does not start",
                s.name
            );
            let port = ports.of(&host, u.port().expect("a port"));
            *value = format!("http://127.0.0.1:{port}{}", u.path().trim_end_matches('/'));
        } else {
            let names_a_host = |h: &String| {
                value.contains(&format!("//{h}:")) || value.contains(&format!("@{h}:"))
            };
            assert!(
                !stack.iter().any(names_a_host) && !value.contains("0.0.0.0"),
                "{key}={value} of {} is not mapped to loopback",
                s.name
            );
        }
    }
    if env.contains_key("MINOOTS_DATABASE_URL") {
        env.insert("MINOOTS_DATABASE_SCHEMA".into(), schema.into());
    }
    env.insert("MINOOTS_LOG".into(), "warn".into());
    let health = match &s.healthcheck {
        None => image.health_url.clone(),
        Some(test) => {
            assert!(
                test.len() == 4 && test[..3] == ["CMD", "curl", "-fsS"],
                "{}: the health check is [CMD, curl, -fsS, URL]: {test:?}",
                s.name
            );
            test[3].clone()
        }
    };
    let mut args = image.entrypoint[1..].to_vec();
    args.extend(s.command.iter().cloned());
    Planned {
        name: s.name.clone(),
        args,
        env,
        health_url: ports.own_url(&s.name, &health),
        dir,
    }
}

/// A started process, SIGKILLed when dropped (a failing test leaves none behind).
struct Running {
    name: String,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_line(subcommand: &str) -> &'static str {
    match subcommand {
        "kernel" => "minoots kernel ready on ",
        "orchestrator" => "minoots orchestrator running",
        "control-plane" => "minoots control plane ready on ",
        other => panic!("a service runs `minoots {other}`: teach the test its ready line"),
    }
}

fn start(p: &Planned) -> Running {
    std::fs::create_dir_all(&p.dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(&p.args)
        .env_clear()
        .envs(&p.env)
        .current_dir(&p.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minoots");
    let stdout = child.stdout.take().unwrap();
    let prefix = ready_line(&p.args[0]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(prefix) {
                let _ = tx.send(());
            }
        }
    });
    let running = Running {
        name: p.name.clone(),
        child,
    };
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{} printed \"{prefix}\"", p.name));
    running
}

/// Waits until the health check answers 2xx.
async fn until_healthy(http: &reqwest::Client, p: &Planned) {
    let deadline = Instant::now() + WAIT;
    loop {
        match http.get(&p.health_url).send().await {
            Ok(r) if r.status().is_success() => return,
            other => assert!(
                Instant::now() < deadline,
                "{}'s health check {} answers: {other:?}",
                p.name,
                p.health_url
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_profile_delivers_a_timer_with_two_kernels_sharing_the_shards() {
    let test_url = or_skip!(pg::database_url());
    let compose = load_compose(OPERATOR_ENV);
    let image = load_image();
    assert_eq!(image.entrypoint, ["minoots"], "the image runs the binary");
    let profile: Vec<&Service> = compose
        .services
        .iter()
        .filter(|s| s.profiles.iter().any(|p| p == PROFILE))
        .collect();
    let stack: BTreeSet<String> = profile.iter().map(|s| s.name.clone()).collect();

    // The database: the official image, a volume, a health check; its settings are what
    // the kernels' URL must agree with.
    let pg = profile
        .iter()
        .find(|s| {
            s.image
                .as_deref()
                .is_some_and(|i| i.starts_with("postgres:"))
        })
        .expect("the profile runs the official postgres image");
    let pg_yaml = compose.doc.get("services").unwrap().get(&pg.name).unwrap();
    assert!(
        pg_yaml.get("volumes").is_some(),
        "the database has a volume"
    );
    assert_eq!(
        pg.healthcheck.as_ref().map(|t| t[..2].to_vec()),
        Some(vec!["CMD".to_string(), "pg_isready".to_string()]),
        "the database has a health check"
    );
    let setting = |k: &str| pg.env.get(k).cloned().unwrap_or_else(|| panic!("{k}"));
    let db = Database {
        service: pg.name.clone(),
        user: setting("POSTGRES_USER"),
        password: setting("POSTGRES_PASSWORD"),
        db: setting("POSTGRES_DB"),
    };
    assert!(
        !db.password.is_empty(),
        "the operator's password reaches the database"
    );
    let minoots: Vec<&Service> = profile.iter().copied().filter(|s| s.is_minoots()).collect();
    assert_eq!(
        minoots.len() + 1,
        profile.len(),
        "the profile is the database and MINOOTS services"
    );
    let kernels: Vec<&str> = minoots
        .iter()
        .filter(|s| s.subcommand() == "kernel")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(kernels.len(), 2, "two kernels: {kernels:?}");
    for s in &minoots {
        if s.subcommand() == "kernel" {
            assert!(
                s.env.contains_key("MINOOTS_DATABASE_URL"),
                "{} on PostgreSQL",
                s.name
            );
        }
    }

    // Start order: dependencies first, as compose does.
    let mut order: Vec<&Service> = Vec::new();
    while order.len() < minoots.len() {
        let before = order.len();
        for s in &minoots {
            let placed = |n: &str| n == db.service || order.iter().any(|o| o.name == n);
            if !order.iter().any(|o| o.name == s.name)
                && s.depends_on.iter().all(|(d, _)| placed(d))
            {
                order.push(s);
            }
        }
        assert!(
            order.len() > before,
            "depends_on has a cycle or an unknown service"
        );
    }

    let schema = Schema::new(&test_url, "minoots_compose");
    let home = tempfile::tempdir().unwrap();
    let ports = Ports::default();
    let site = Site {
        image: &image,
        ports: &ports,
        stack: &stack,
        db: &db,
        test_url: &test_url,
        schema: &schema.name,
        home: home.path(),
    };
    let plans: Vec<Planned> = order.iter().map(|s| plan(s, &site)).collect();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // The database answers: the postgres service is healthy.
    drop(admin(&test_url).await);
    let mut running: Vec<Running> = Vec::new();
    for (s, p) in order.iter().zip(&plans) {
        for (dep, condition) in &s.depends_on {
            match condition.as_str() {
                "service_started" => {}
                "service_healthy" if *dep == db.service => {}
                "service_healthy" => {
                    until_healthy(&http, plans.iter().find(|p| p.name == *dep).unwrap()).await
                }
                other => panic!("{}: depends_on condition {other} is not reproduced", s.name),
            }
        }
        println!("starting {}: minoots {}", p.name, p.args.join(" "));
        running.push(start(p));
    }
    for p in &plans {
        until_healthy(&http, p).await;
    }

    // Both kernels hold their share of the shards: in their metrics and in the database.
    let share = f64::from(minoots_store::SHARD_COUNT) / kernels.len() as f64;
    // The base of a process's `/metrics`, beside its health check.
    let metrics_of = |name: &str| {
        let p = plans.iter().find(|p| p.name == name).unwrap();
        p.health_url.rsplit_once('/').unwrap().0.to_string()
    };
    for k in &kernels {
        until_metric(
            &http,
            &metrics_of(k),
            "minoots_shards_held",
            |h| h == share,
            WAIT,
        )
        .await;
    }
    let client = admin(&test_url).await;
    let owners = client
        .query(
            &format!(
                "SELECT owner, count(*) FROM {}.shards GROUP BY owner ORDER BY owner",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let owners: Vec<(String, i64)> = owners.iter().map(|r| (r.get(0), r.get(1))).collect();
    println!("shard owners: {owners:?}");
    assert_eq!(owners.len(), 2, "two kernels lease the shards: {owners:?}");
    for (owner, n) in &owners {
        assert!(owner.starts_with("kernel/"), "{owner}");
        assert_eq!(*n as f64, share, "{owner} holds its share");
    }

    // Through the control plane's published port: the admin key of the environment
    // makes a tenant without limits and a key; its timers reach the receiver.
    let cp = minoots
        .iter()
        .find(|s| s.subcommand() == "control-plane")
        .expect("a control plane");
    let (_, rest_port) = *cp.ports.first().expect("the control plane publishes REST");
    let base = format!("http://127.0.0.1:{}", ports.of(&cp.name, rest_port));
    let admin_key = OPERATOR_ENV[0].1;
    let (status, _) = common::call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/tenants"),
        admin_key,
        Some(serde_json::json!({"id": "compose", "tier": "unlimited"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, created) = common::call(
        &http,
        reqwest::Method::POST,
        format!("{base}/admin/keys"),
        admin_key,
        Some(serde_json::json!({"tenantId": "compose", "roles": ["timers:read", "timers:write"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let (receiver, hook) = Receiver::start().await;
    let mut ids = Vec::new();
    for _ in 0..TIMERS {
        let body = serde_json::json!({
            "tenantId": "compose", "name": "compose", "duration": "1s",
            "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
        });
        let timer = common::create_timer(&http, &base, &key, body).await;
        ids.push(timer["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        receiver.until(id).await;
    }
    let mut fired = Vec::new();
    for k in &kernels {
        fired.push(metric(&http, &metrics_of(k), "minoots_timers_fired_total").await);
    }
    println!("timers fired by {kernels:?}: {fired:?}");
    assert_eq!(fired.iter().sum::<f64>(), TIMERS as f64, "each fired once");
    assert!(
        fired.iter().all(|f| *f > 0.0),
        "each kernel fired its shards' timers"
    );
    for id in &ids {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = common::get_json(&http, &format!("{base}/timers/{id}"), &key).await;
            if t["status"] == "settled" {
                break;
            }
            assert!(Instant::now() < deadline, "timer {id} settles: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(receiver.count(id), 1, "timer {id} arrived once");
    }

    // A kernel stopped while its orchestrator is attached (`docker compose stop
    // kernel-2`) exits cleanly within its grace period, giving its shards back: the other
    // kernel holds them all within a few rounds.
    let (leaving, staying) = (kernels[kernels.len() - 1], kernels[0]);
    let at = running.iter().position(|r| r.name == leaving).unwrap();
    let mut stopped = running.remove(at);
    let grace = minoots
        .iter()
        .find(|s| s.name == leaving)
        .unwrap()
        .stop_grace;
    let t0 = Instant::now();
    terminate(&stopped.child);
    let status = common::wait_exit(&mut stopped.child, grace);
    println!("{leaving} stopped in {:?} (grace {grace:?})", t0.elapsed());
    assert!(status.success(), "{leaving} stopped with {status:?}");
    let all = f64::from(minoots_store::SHARD_COUNT);
    until_metric(
        &http,
        &metrics_of(staying),
        "minoots_shards_held",
        |h| h == all,
        Duration::from_secs(5),
    )
    .await;

    // Every other process stops cleanly on SIGTERM, dependents first.
    while let Some(mut r) = running.pop() {
        terminate(&r.child);
        let status = common::wait_exit(&mut r.child, WAIT);
        assert!(status.success(), "{} stopped with {status:?}", r.name);
    }
}
