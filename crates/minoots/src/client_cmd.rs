//! The client CLI: `minoots timers …`, `minoots schedules …` ([`schedules`]),
//! `minoots keys …`, `minoots tenants …` against a running server's REST API.
//! Human-readable tables by default, the API's JSON with `--json`. Errors print the API's
//! problem `detail` and field errors, and exit non-zero.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

mod schedules;

pub use schedules::{SchedulesCommand, schedules};

#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server's REST address.
    #[arg(
        long,
        global = true,
        env = "MINOOTS_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,
    /// The API key to act with.
    #[arg(long, global = true, env = "MINOOTS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TimersCommand {
    /// Schedule a timer.
    Create {
        /// Fire after this long ("30s", "1h30m", "PT30S").
        #[arg(long = "in", conflicts_with = "at")]
        after: Option<String>,
        /// Fire at this RFC 3339 time ("2026-11-27T10:00:00Z").
        #[arg(long)]
        at: Option<String>,
        /// Call this URL when it fires.
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// A label, key=value; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Makes retries of this command safe: the same key returns the same timer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List timers in fire-time order.
    List {
        #[arg(long)]
        status: Option<String>,
        /// key:value
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow pages until the end.
        #[arg(long)]
        all: bool,
    },
    /// Show one timer.
    Get { id: String },
    /// Cancel a scheduled timer.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Wait until the timer fires (or is cancelled), with a countdown.
    Wait {
        id: String,
        /// Give up after this long.
        #[arg(long, default_value = "1h")]
        timeout: String,
    },
    /// Show a timer's deliveries and attempts.
    Deliveries { id: String },
    /// Follow the tenant's events as they happen.
    Events {
        /// Resume after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long)]
        timer: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum KeysCommand {
    /// Create a key (the plaintext is printed once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// Roles: timers:read, timers:write, admin (repeat).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        expires_at: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Revoke {
        id: String,
    },
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TenantsCommand {
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "free")]
        tier: String,
    },
    List,
    /// Move a tenant to another tier.
    SetTier {
        id: String,
        tier: String,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
}

impl Client {
    fn new(a: &ClientArgs) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            url: a.url.trim_end_matches('/').to_string(),
            key: a.api_key.clone(),
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let Some(key) = &self.key else {
            bail!("no API key: pass --api-key or set MINOOTS_API_KEY");
        };
        Ok(self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("x-api-key", key))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.request(method, path)?;
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach MINOOTS at {}", self.url))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let mut msg = v["detail"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            for e in v["errors"].as_array().into_iter().flatten() {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                ));
            }
            bail!("{msg}");
        }
        Ok(v)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns under a header.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        println!("{}", line(r));
    }
}

fn timer_rows(timers: &[Value]) -> Vec<Vec<String>> {
    timers
        .iter()
        .map(|t| {
            vec![
                s(&t["id"]),
                s(&t["name"]),
                s(&t["status"]),
                s(&t["fireAt"]),
                s(&t["firedLateMs"]),
            ]
        })
        .collect()
}

const TIMER_HEADERS: [&str; 5] = ["ID", "NAME", "STATUS", "FIRE AT", "LATE MS"];

fn show_timer(t: &Value, as_json: bool) {
    if as_json {
        println!("{t}");
    } else {
        table(&TIMER_HEADERS, timer_rows(std::slice::from_ref(t)));
    }
}

fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

pub async fn timers(args: ClientArgs, cmd: TimersCommand) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    use reqwest::Method;
    match cmd {
        TimersCommand::Create {
            after,
            at,
            webhook,
            name,
            labels,
            idempotency_key,
        } => {
            let mut body = json!({});
            match (after, at) {
                (Some(d), _) => body["duration"] = d.into(),
                (None, Some(t)) => body["fireAt"] = t.into(),
                (None, None) => bail!("say when: --in 30s or --at 2026-11-27T10:00:00Z"),
            }
            if let Some(n) = name {
                body["name"] = n.into();
            }
            if !labels.is_empty() {
                let mut m = serde_json::Map::new();
                for l in labels {
                    let Some((k, v)) = l.split_once('=') else {
                        bail!("--label must be key=value, not \"{l}\"");
                    };
                    m.insert(k.to_string(), v.into());
                }
                body["labels"] = Value::Object(m);
            }
            if let Some(url) = webhook {
                body["actionBundle"] = json!({"actions": [{"type": "webhook", "url": url}]});
            }
            if let Some(k) = idempotency_key {
                body["idempotencyKey"] = k.into();
            }
            let t = c.call(Method::POST, "/timers", Some(body)).await?;
            show_timer(&t, args.json);
        }
        TimersCommand::List {
            status,
            label,
            limit,
            all,
        } => {
            let mut cursor: Option<String> = None;
            let mut timers = Vec::new();
            loop {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("limit", &limit.to_string());
                if let Some(s) = &status {
                    q.append_pair("status", s);
                }
                if let Some(l) = &label {
                    q.append_pair("label", l);
                }
                if let Some(cur) = &cursor {
                    q.append_pair("cursor", cur);
                }
                let page = c
                    .call(Method::GET, &format!("/timers?{}", q.finish()), None)
                    .await?;
                timers.extend(page["timers"].as_array().cloned().unwrap_or_default());
                cursor = page["nextCursor"].as_str().map(str::to_string);
                if !all || cursor.is_none() {
                    break;
                }
            }
            if args.json {
                println!("{}", json!({"timers": timers, "nextCursor": cursor}));
            } else {
                table(&TIMER_HEADERS, timer_rows(&timers));
                if let Some(cur) = cursor {
                    eprintln!("more: --all, or the API with cursor={cur}");
                }
            }
        }
        TimersCommand::Get { id } => {
            let t = c
                .call(Method::GET, &format!("/timers/{}", path_segment(&id)), None)
                .await?;
            show_timer(&t, args.json);
        }
        TimersCommand::Cancel { id, reason } => {
            let body = reason
                .map(|r| json!({"reason": r}))
                .unwrap_or_else(|| json!({}));
            let t = c
                .call(
                    Method::POST,
                    &format!("/timers/{}/cancel", path_segment(&id)),
                    Some(body),
                )
                .await?;
            show_timer(&t, args.json);
        }
        TimersCommand::Wait { id, timeout } => wait(&c, &id, &timeout, args.json).await?,
        TimersCommand::Deliveries { id } => {
            let d = c
                .call(
                    Method::GET,
                    &format!("/timers/{}/deliveries", path_segment(&id)),
                    None,
                )
                .await?;
            if args.json {
                println!("{d}");
            } else {
                let mut rows = Vec::new();
                for dl in d["deliveries"].as_array().into_iter().flatten() {
                    for a in dl["attemptLog"].as_array().into_iter().flatten() {
                        rows.push(vec![
                            s(&dl["id"]),
                            s(&dl["status"]),
                            s(&a["attempt"]),
                            s(&a["outcome"]),
                            s(&a["httpStatus"]),
                            s(&a["error"]),
                        ]);
                    }
                }
                table(
                    &["DELIVERY", "STATUS", "ATTEMPT", "OUTCOME", "HTTP", "ERROR"],
                    rows,
                );
            }
        }
        TimersCommand::Events { after, timer } => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(a) = after {
                q.append_pair("after", &a.to_string());
            }
            if let Some(t) = &timer {
                q.append_pair("timerId", t);
            }
            let mut resp = c
                .request(Method::GET, &format!("/events?{}", q.finish()))?
                .send()
                .await
                .with_context(|| format!("cannot reach MINOOTS at {}", c.url))?;
            if !resp.status().is_success() {
                let v: Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
                bail!("{}", s(&v["detail"]));
            }
            let mut buf = String::new();
            while let Some(chunk) = resp.chunk().await? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let e: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if args.json {
                        println!("{e}");
                    } else {
                        println!(
                            "{}  {:<18}  {}  {}",
                            s(&e["seq"]),
                            s(&e["type"]),
                            s(&e["timerId"]),
                            s(&e["occurredAt"])
                        );
                    }
                    std::io::stdout().flush()?;
                }
            }
        }
    }
    Ok(())
}

/// Long-polls in slices of up to 30 s, drawing a countdown on a terminal meanwhile.
async fn wait(c: &Client, id: &str, timeout: &str, as_json: bool) -> anyhow::Result<()> {
    let total_ms = minoots_core::duration::parse_duration_ms(timeout)
        .map_err(|m| anyhow::anyhow!("--timeout {m}"))?;
    let deadline = std::time::Instant::now() + Duration::from_millis(total_ms.max(0) as u64);
    let path = format!("/timers/{}", path_segment(id));
    let t = c.call(reqwest::Method::GET, &path, None).await?;
    let fire_at = t["fireAt"]
        .as_str()
        .and_then(|f| minoots_core::timefmt::parse_rfc3339_us(f).ok());
    let tty = std::io::stderr().is_terminal();
    let mut t = t;
    while t["status"] == "scheduled" {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        // On a terminal, wake every second to redraw the countdown.
        let cap = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        let slice = left.min(cap);
        if tty && let Some(at) = fire_at {
            use minoots_core::Clock as _;
            let secs = ((at - minoots_core::SystemClock.now_us()).max(0) as f64 / 1e6).ceil();
            eprint!("\rfires in {secs:>6.0} s ");
        }
        t = c
            .call(
                reqwest::Method::GET,
                &format!("{path}/wait?timeout={}ms", slice.as_millis()),
                None,
            )
            .await?;
    }
    if tty {
        eprintln!();
    }
    show_timer(&t, as_json);
    if t["status"] == "scheduled" {
        bail!("still scheduled after {timeout}");
    }
    Ok(())
}

pub async fn keys(args: ClientArgs, cmd: KeysCommand) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    use reqwest::Method;
    let key_rows = |keys: &[Value]| -> Vec<Vec<String>> {
        keys.iter()
            .map(|k| {
                vec![
                    s(&k["id"]),
                    s(&k["tenantId"]),
                    s(&k["name"]),
                    k["roles"]
                        .as_array()
                        .map(|r| r.iter().map(s).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    s(&k["prefix"]),
                    s(&k["revokedAt"]),
                ]
            })
            .collect()
    };
    const HEADERS: [&str; 6] = ["ID", "TENANT", "NAME", "ROLES", "PREFIX", "REVOKED"];
    match cmd {
        KeysCommand::Create {
            tenant,
            name,
            roles,
            expires_at,
        } => {
            let mut body = json!({"tenantId": tenant});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            if !roles.is_empty() {
                body["roles"] = json!(roles);
            }
            if let Some(e) = expires_at {
                body["expiresAt"] = e.into();
            }
            let k = c.call(Method::POST, "/admin/keys", Some(body)).await?;
            if args.json {
                println!("{k}");
            } else {
                table(&HEADERS, key_rows(std::slice::from_ref(&k)));
                println!("key (shown once): {}", s(&k["key"]));
            }
        }
        KeysCommand::List { tenant } => {
            let path = match tenant {
                Some(t) => format!("/admin/keys?tenantId={}", path_segment(&t)),
                None => "/admin/keys".into(),
            };
            let v = c.call(Method::GET, &path, None).await?;
            if args.json {
                println!("{v}");
            } else {
                table(
                    &HEADERS,
                    key_rows(v["keys"].as_array().map(Vec::as_slice).unwrap_or(&[])),
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let k = c
                .call(
                    Method::DELETE,
                    &format!("/admin/keys/{}", path_segment(&id)),
                    None,
                )
                .await?;
            if args.json {
                println!("{k}");
            } else {
                table(&HEADERS, key_rows(std::slice::from_ref(&k)));
            }
        }
    }
    Ok(())
}

pub async fn tenants(args: ClientArgs, cmd: TenantsCommand) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    use reqwest::Method;
    let rows = |ts: &[Value]| -> Vec<Vec<String>> {
        ts.iter()
            .map(|t| {
                vec![
                    s(&t["id"]),
                    s(&t["name"]),
                    s(&t["tier"]),
                    s(&t["createdAt"]),
                ]
            })
            .collect()
    };
    const HEADERS: [&str; 4] = ["ID", "NAME", "TIER", "CREATED"];
    let v = match cmd {
        TenantsCommand::Create { id, name, tier } => {
            let mut body = json!({"id": id, "tier": tier});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            c.call(Method::POST, "/admin/tenants", Some(body)).await?
        }
        TenantsCommand::List => c.call(Method::GET, "/admin/tenants", None).await?,
        TenantsCommand::SetTier { id, tier } => {
            c.call(
                Method::PATCH,
                &format!("/admin/tenants/{}", path_segment(&id)),
                Some(json!({"tier": tier})),
            )
            .await?
        }
    };
    if args.json {
        println!("{v}");
    } else if let Some(list) = v["tenants"].as_array() {
        table(&HEADERS, rows(list));
    } else {
        table(&HEADERS, rows(std::slice::from_ref(&v)));
    }
    Ok(())
}
