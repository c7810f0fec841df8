//! `minoots schedules …`: preview a spec, create, list, get, read run records, pause,
//! resume, delete and trigger schedules on a running server, each one request under
//! `/schedules` (or one per page with `--all`). The spec is checked by the API, never
//! here: flags only fill the body of `POST /schedules`, over `--body` when both are given.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Client, ClientArgs, TIMER_HEADERS, path_segment, s, table, timer_rows};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SchedulesCommand {
    /// The next runs of a cron expression or an interval, DST included (nothing is stored).
    Preview {
        /// A cron expression of 5, 6 or 7 fields ("0 30 2 * * *"); or give --every.
        #[arg(long, conflicts_with = "every", required_unless_present = "every")]
        cron: Option<String>,
        /// A fixed interval in whole seconds ("15m"), from the Unix epoch.
        #[arg(long)]
        every: Option<String>,
        /// With --every: the offset of its runs from the epoch ("7m").
        #[arg(long, requires = "every")]
        phase: Option<String>,
        /// The IANA zone the cron expression is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// No runs before this RFC 3339 time.
        #[arg(long)]
        start_at: Option<String>,
        /// No runs after this RFC 3339 time.
        #[arg(long)]
        end_at: Option<String>,
        /// Delay each run by at most this ("30s"); shown under FIRE AT.
        #[arg(long)]
        jitter: Option<String>,
        /// Runs at or after this RFC 3339 time (default now).
        #[arg(long)]
        from: Option<String>,
        /// How many runs, 1 to 1000 (default 10).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Create a schedule: a run (a timer) fires at each slot of --cron or --every.
    Create {
        /// A cron expression of 5, 6 or 7 fields ("0 30 2 * * *"); or give --every.
        #[arg(long, conflicts_with = "every")]
        cron: Option<String>,
        /// A fixed interval in whole seconds ("15m"), from the Unix epoch.
        #[arg(long)]
        every: Option<String>,
        /// With --every: the offset of its runs from the epoch ("7m").
        #[arg(long)]
        phase: Option<String>,
        /// The IANA zone the cron expression is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// Call this URL at every run.
        #[arg(long)]
        webhook: Option<String>,
        /// What the schedule is for ("nightly-report"); each run's timer carries it.
        #[arg(long)]
        name: Option<String>,
        /// Complete the schedule after this many runs.
        #[arg(long)]
        max_runs: Option<u64>,
        /// When a run is due while the previous one is active: skip, bufferOne, bufferAll,
        /// cancelOther or allowAll (default skip).
        #[arg(long)]
        overlap: Option<String>,
        /// Runs missed while MINOOTS was down: latest, all or none (default latest).
        #[arg(long)]
        misfire: Option<String>,
        /// Delay each run by at most this ("30s").
        #[arg(long)]
        jitter: Option<String>,
        /// No runs before this RFC 3339 time.
        #[arg(long)]
        start_at: Option<String>,
        /// No runs after this RFC 3339 time.
        #[arg(long)]
        end_at: Option<String>,
        /// A label, key=value; repeat for more.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The whole POST /schedules body as JSON ('{"cron": "0 9 * * *", ...}'), or
        /// @FILE to read it from a file; the flags above override its fields.
        #[arg(long)]
        body: Option<String>,
    },
    /// List schedules.
    List {
        /// active, paused or completed.
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
    /// Show one schedule.
    Get { id: String },
    /// What happened at each slot of a schedule, oldest first.
    Runs {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow pages until the end.
        #[arg(long)]
        all: bool,
    },
    /// Pause a schedule: the slots that pass are recorded skipped (paused).
    Pause { id: String },
    /// Resume a paused schedule from its next slot.
    Resume {
        id: String,
        /// Also fire the runs missed while paused, as the schedule's misfire policy says
        /// (without it they are not fired).
        #[arg(long)]
        catch_up: bool,
    },
    /// Delete a schedule for good.
    Delete { id: String },
    /// Fire one extra run now; prints the run's timer.
    Trigger { id: String },
}

const SCHEDULE_HEADERS: [&str; 7] = [
    "ID",
    "NAME",
    "STATUS",
    "SPEC",
    "TIMEZONE",
    "NEXT RUN AT",
    "RUNS FIRED",
];

/// A duration as the API keeps it: the text given, or milliseconds.
fn duration_text(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}ms"),
        other => s(other),
    }
}

/// The spec column: the cron expression, or `every 15m [phase 7m]`.
fn spec_text(sch: &Value) -> String {
    if let Some(cron) = sch["cron"].as_str() {
        return cron.to_string();
    }
    if sch["every"].is_null() {
        return "-".into();
    }
    let mut text = format!("every {}", duration_text(&sch["every"]));
    if !sch["phase"].is_null() {
        text.push_str(&format!(" phase {}", duration_text(&sch["phase"])));
    }
    text
}

fn schedule_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|sch| {
            vec![
                s(&sch["id"]),
                s(&sch["name"]),
                s(&sch["status"]),
                spec_text(sch),
                sch["timezone"].as_str().unwrap_or("UTC").to_string(),
                s(&sch["nextRunAt"]),
                s(&sch["runsFired"]),
            ]
        })
        .collect()
}

fn show_schedule(sch: &Value, as_json: bool) {
    if as_json {
        println!("{sch}");
    } else {
        table(&SCHEDULE_HEADERS, schedule_rows(std::slice::from_ref(sch)));
    }
}

/// The `POST /schedules` body: `--body` (JSON or @FILE), then each flag given over it.
fn create_body(
    body: Option<String>,
    fields: [(&str, Option<Value>); 11],
    misfire: Option<String>,
    labels: Vec<String>,
) -> anyhow::Result<Value> {
    let mut out: Map<String, Value> = match body {
        None => Map::new(),
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--body: cannot read {path}"))?,
                None => text,
            };
            match serde_json::from_str(&text).context("--body is not JSON")? {
                Value::Object(m) => m,
                _ => bail!("--body must be a JSON object, like '{{\"cron\": \"0 9 * * *\"}}'"),
            }
        }
    };
    for (k, v) in fields {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    }
    if let Some(policy) = misfire {
        let m = out.entry("misfire").or_insert_with(|| json!({}));
        if !m.is_object() {
            bail!("--body's misfire must be an object to take --misfire");
        }
        m["policy"] = policy.into();
    }
    if !labels.is_empty() {
        let m = out.entry("labels").or_insert_with(|| json!({}));
        if !m.is_object() {
            bail!("--body's labels must be an object to take --label");
        }
        for l in labels {
            let Some((k, v)) = l.split_once('=') else {
                bail!("--label must be key=value, not \"{l}\"");
            };
            m[k] = v.into();
        }
    }
    Ok(Value::Object(out))
}

/// Every item under `key` of a paged list at `path` with `pairs`, following `nextCursor`
/// when `all`; returns the items and the cursor of the next page, if any.
async fn pages(
    c: &Client,
    path: &str,
    pairs: &[(&str, Option<String>)],
    key: &str,
    all: bool,
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        if let Some(cur) = &cursor {
            q.append_pair("cursor", cur);
        }
        let page = c
            .call(Method::GET, &format!("{path}?{}", q.finish()), None)
            .await?;
        items.extend(page[key].as_array().cloned().unwrap_or_default());
        cursor = page["nextCursor"].as_str().map(str::to_string);
        if !all || cursor.is_none() {
            return Ok((items, cursor));
        }
    }
}

pub async fn schedules(args: ClientArgs, cmd: SchedulesCommand) -> anyhow::Result<()> {
    let c = Client::new(&args)?;
    let id_path = |id: &str, suffix: &str| format!("/schedules/{}{suffix}", path_segment(id));
    match cmd {
        SchedulesCommand::Preview {
            cron,
            every,
            phase,
            timezone,
            start_at,
            end_at,
            jitter,
            from,
            count,
        } => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(f) = &from {
                q.append_pair("from", f);
            }
            if let Some(n) = count {
                q.append_pair("count", &n.to_string());
            }
            let body: Map<String, Value> = [
                ("cron", cron),
                ("every", every),
                ("phase", phase),
                ("timezone", timezone),
                ("startAt", start_at),
                ("endAt", end_at),
                ("jitter", jitter),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), Value::String(v?))))
            .collect();
            let v = c
                .call(
                    Method::POST,
                    &format!("/schedules/preview?{}", q.finish()),
                    Some(Value::Object(body)),
                )
                .await?;
            if args.json {
                println!("{v}");
                return Ok(());
            }
            let rows = v["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| vec![s(&r["at"]), s(&r["local"]), s(&r["dst"]), s(&r["fireAt"])])
                .collect();
            table(&["AT (UTC)", "LOCAL", "DST", "FIRE AT"], rows);
            println!("time zone database {}", s(&v["tzdbVersion"]));
        }
        SchedulesCommand::Create {
            cron,
            every,
            phase,
            timezone,
            webhook,
            name,
            max_runs,
            overlap,
            misfire,
            jitter,
            start_at,
            end_at,
            labels,
            body,
        } => {
            let text = |v: Option<String>| v.map(Value::String);
            let fields = [
                ("name", text(name)),
                ("cron", text(cron)),
                ("every", text(every)),
                ("phase", text(phase)),
                ("timezone", text(timezone)),
                ("startAt", text(start_at)),
                ("endAt", text(end_at)),
                ("maxRuns", max_runs.map(Value::from)),
                ("overlap", text(overlap)),
                ("jitter", text(jitter)),
                (
                    "actionBundle",
                    webhook.map(|url| json!({"actions": [{"type": "webhook", "url": url}]})),
                ),
            ];
            let body = create_body(body, fields, misfire, labels)?;
            let sch = c.call(Method::POST, "/schedules", Some(body)).await?;
            show_schedule(&sch, args.json);
        }
        SchedulesCommand::List {
            status,
            label,
            limit,
            all,
        } => {
            let pairs = [
                ("limit", Some(limit.to_string())),
                ("status", status),
                ("label", label),
            ];
            let (list, cursor) = pages(&c, "/schedules", &pairs, "schedules", all).await?;
            if args.json {
                println!("{}", json!({"schedules": list, "nextCursor": cursor}));
            } else {
                table(&SCHEDULE_HEADERS, schedule_rows(&list));
                if let Some(cur) = cursor {
                    eprintln!("more: --all, or the API with cursor={cur}");
                }
            }
        }
        SchedulesCommand::Get { id } => {
            let sch = c.call(Method::GET, &id_path(&id, ""), None).await?;
            show_schedule(&sch, args.json);
        }
        SchedulesCommand::Runs { id, limit, all } => {
            let pairs = [("limit", Some(limit.to_string()))];
            let (runs, cursor) = pages(&c, &id_path(&id, "/runs"), &pairs, "runs", all).await?;
            if args.json {
                println!("{}", json!({"runs": runs, "nextCursor": cursor}));
            } else {
                let rows = runs
                    .iter()
                    .map(|r| {
                        vec![
                            s(&r["scheduledAt"]),
                            s(&r["status"]),
                            s(&r["reason"]),
                            s(&r["timerId"]),
                        ]
                    })
                    .collect();
                table(&["SCHEDULED AT", "STATUS", "REASON", "TIMER ID"], rows);
                if let Some(cur) = cursor {
                    eprintln!("more: --all, or the API with cursor={cur}");
                }
            }
        }
        SchedulesCommand::Pause { id } => {
            let sch = c.call(Method::POST, &id_path(&id, "/pause"), None).await?;
            show_schedule(&sch, args.json);
        }
        SchedulesCommand::Resume { id, catch_up } => {
            let sch = c
                .call(
                    Method::POST,
                    &id_path(&id, "/resume"),
                    Some(json!({"catchUp": catch_up})),
                )
                .await?;
            show_schedule(&sch, args.json);
        }
        SchedulesCommand::Delete { id } => {
            // 204 No Content: there is nothing to print but the fact.
            c.call(Method::DELETE, &id_path(&id, ""), None).await?;
            if args.json {
                println!("{}", json!({"id": id, "deleted": true}));
            } else {
                println!("schedule {id} deleted");
            }
        }
        SchedulesCommand::Trigger { id } => {
            let t = c
                .call(Method::POST, &id_path(&id, "/trigger"), None)
                .await?;
            if args.json {
                println!("{t}");
            } else {
                table(&TIMER_HEADERS, timer_rows(std::slice::from_ref(&t)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(cron: Option<&str>, max_runs: Option<u64>) -> [(&'static str, Option<Value>); 11] {
        [
            ("name", None),
            ("cron", cron.map(Value::from)),
            ("every", None),
            ("phase", None),
            ("timezone", None),
            ("startAt", None),
            ("endAt", None),
            ("maxRuns", max_runs.map(Value::from)),
            ("overlap", None),
            ("jitter", None),
            ("actionBundle", None),
        ]
    }

    #[test]
    fn flags_override_the_body_and_merge_into_misfire_and_labels() {
        let body = create_body(
            Some(r#"{"cron": "0 0 * * *", "misfire": {"window": "2h"}, "labels": {"a": "1"}, "metadata": {"k": 1}}"#.into()),
            fields(Some("0 9 * * *"), Some(3)),
            Some("all".into()),
            vec!["b=2".into()],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"cron": "0 9 * * *", "maxRuns": 3, "misfire": {"window": "2h", "policy": "all"},
                "labels": {"a": "1", "b": "2"}, "metadata": {"k": 1}})
        );
        assert!(create_body(Some("[1]".into()), fields(None, None), None, vec![]).is_err());
        assert!(create_body(None, fields(None, None), None, vec!["nolabel".into()]).is_err());
    }

    #[test]
    fn the_spec_column_names_cron_or_every() {
        assert_eq!(spec_text(&json!({"cron": "0 9 * * *"})), "0 9 * * *");
        assert_eq!(
            spec_text(&json!({"every": "15m", "phase": 420000})),
            "every 15m phase 420000ms"
        );
        assert_eq!(spec_text(&json!({})), "-");
    }
}
