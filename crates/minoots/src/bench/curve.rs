//! `minoots bench curve`: the delivery path's latency curve. In one sitting it offers a
//! series of webhook rates (1k, 2k, 5k, 10k, 15k and 20k deliveries/s by default), each
//! for `--step-s` seconds, through the same pipeline as W2 (`bench lateness`): a kernel on
//! the embedded store with default settings and an orchestrator in this process, webhooks
//! to the benchmark's raw keep-alive receiver on loopback. Every step is one W2 run
//! (`delivery_run`): a fresh store, every timer created first and due uniformly over the
//! step, then the wait until each webhook arrived (bounded).
//!
//! Per step it prints one JSON line (`"section": "curve_step"`): the offered rate, the
//! achieved delivery rate (deliveries ÷ seconds from the first due time to the last
//! receipt), webhook lateness at the receiver (received − the timer's `fireAt`), and the
//! lost, doubled and early counts, which must be 0 (the command fails if one is not,
//! after writing its outputs). Other processes' CPU during the step is measured too, since
//! a shared machine bends the curve. `--json PATH` writes the whole run as one document and
//! `--svg PATH` plots it: lateness p50/p99/p99.9/max (log scale, ms) and achieved against
//! offered rate, with the first step that did not keep up marked. `--from PATH` redraws
//! the SVG of an earlier `--json` without running anything.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use minoots_core::{Clock, SystemClock};
use serde_json::{Value, json};

use super::{DeliveryRun, delivery_run, emit, fsync_calibration};

#[derive(clap::Args, Clone)]
pub struct CurveBench {
    /// Offered rates, webhook deliveries per second: one step each, in this order.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 2_000, 5_000, 10_000, 15_000, 20_000])]
    rates: Vec<u64>,
    /// Seconds each step offers its rate (its timers fall due uniformly over them).
    #[arg(long, default_value_t = 10.0)]
    step_s: f64,
    /// Seconds of rest between steps.
    #[arg(long, default_value_t = 2.0)]
    pause_s: f64,
    /// Deliveries executing at once in the orchestrator (as W2's `--concurrency`).
    #[arg(long, default_value_t = 256)]
    concurrency: u32,
    /// Run the orchestrator with `serve`'s default limits (256 in flight, a lease buffer of
    /// 32, 32 at once per host) instead of `--concurrency` for all three.
    #[arg(long, conflicts_with = "concurrency")]
    serve_defaults: bool,
    /// Tiny steps (0.1 s each, no rest) for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Also write the run (machine, calibration, steps, summary) as one JSON document here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also plot the run as SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run nothing: read a document written by `--json` and write its `--svg`.
    #[arg(long, requires = "svg")]
    from: Option<PathBuf>,
    /// Where the stores are created (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A step keeps up while it delivers at least this share of the rate it was offered.
const KEEPS_UP: f64 = 0.95;

pub async fn run(mut b: CurveBench) -> anyhow::Result<()> {
    if let Some(from) = &b.from {
        let doc: Value = serde_json::from_slice(&std::fs::read(from)?)?;
        return write_svg(&b, &doc);
    }
    if b.quick {
        b.step_s = b.step_s.min(0.1);
        b.pause_s = 0.0;
    }
    anyhow::ensure!(!b.rates.is_empty(), "--rates needs at least one rate");
    anyhow::ensure!(b.step_s > 0.0, "--step-s must be positive");
    let started_at = minoots_core::timefmt::format_us(SystemClock.now_us());
    // As `bench_base`, keeping the calibration for the document.
    let tmp = tempfile::tempdir()?;
    let base = b.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    emit(super::machine());
    let calibration_start = fsync_calibration(&base)?;
    emit(calibration_start.clone());
    let step_ms = (b.step_s * 1_000.0).round().max(1.0) as u64;
    let mut steps = Vec::new();
    for (i, &rate) in b.rates.iter().enumerate() {
        if i > 0 && b.pause_s > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(b.pause_s)).await;
        }
        let timers = ((rate as f64) * (step_ms as f64) / 1_000.0)
            .round()
            .max(1.0) as usize;
        let cpu = CpuMeter::start();
        let run = delivery_run(
            &base,
            DeliveryRun {
                workload: "curve",
                timers,
                spread_ms: step_ms,
                concurrency: b.concurrency,
                serve_defaults: b.serve_defaults,
                fail_percent: 0,
            },
        )
        .await?;
        let step = step_line(i, rate, step_ms, &run, cpu.stop());
        emit(step.clone());
        steps.push(step);
    }
    let calibration_end = fsync_calibration(&base)?;
    emit(calibration_end.clone());
    let summary = summary(&steps);
    emit(summary.clone());
    let doc = json!({
        "command": std::iter::once("minoots".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        "started_at": started_at,
        "finished_at": minoots_core::timefmt::format_us(SystemClock.now_us()),
        "machine": super::machine(),
        "fsync_calibration_start": calibration_start,
        "fsync_calibration_end": calibration_end,
        "steps": steps,
        "summary": summary,
    });
    if let Some(path) = &b.json {
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    write_svg(&b, &doc)?;
    let broken: Vec<&Value> = steps
        .iter()
        .filter(|s| ["lost", "doubled", "early"].iter().any(|k| s[*k] != 0))
        .collect();
    anyhow::ensure!(
        broken.is_empty(),
        "steps with lost, doubled or early deliveries: {broken:?}"
    );
    Ok(())
}

fn write_svg(b: &CurveBench, doc: &Value) -> anyhow::Result<()> {
    let Some(path) = &b.svg else { return Ok(()) };
    let points: Vec<Point> = doc["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(Point::of).collect())
        .unwrap_or_default();
    anyhow::ensure!(!points.is_empty(), "no steps to plot");
    let machine = &doc["machine"];
    let subtitle = [
        format!(
            "{} cores ({}), {} store with default settings, kernel + orchestrator + receiver in one process; {} s per step",
            machine["cores"],
            machine["cpu"].as_str().unwrap_or("unknown CPU"),
            machine["store"].as_str().unwrap_or("sqlite"),
            doc["steps"][0]["step_s"],
        ),
        format!(
            "{}   (started {})",
            doc["command"].as_str().unwrap_or("minoots bench curve"),
            doc["started_at"].as_str().unwrap_or("?"),
        ),
    ];
    std::fs::write(path, svg(&points, &subtitle))?;
    Ok(())
}

/// One step's JSON line from its W2 run.
fn step_line(i: usize, rate: u64, step_ms: u64, run: &Value, cpu: Value) -> Value {
    let lateness = &run["due_to_receipt"];
    // A webhook reaches the receiver only after its timer fired, and the kernel records
    // timers that fired before their due time, so that count bounds early receipts; a
    // negative minimum lateness would be one the kernel did not record.
    let fired_early = run["fired_early"].as_u64().unwrap_or(0);
    let received_early = u64::from(lateness["min_us"].as_i64().unwrap_or(0) < 0);
    json!({
        "section": "curve_step",
        "step": i + 1,
        "offered_per_s": rate,
        "step_s": step_ms as f64 / 1_000.0,
        "timers": run["timers"],
        "delivered": run["delivered"],
        "achieved_per_s": run["deliveries_per_s"],
        "seconds_from_first_due_to_last_delivery": run["seconds_from_first_due_to_last_delivery"],
        "lateness": lateness,
        "lateness_after_first_s": run["due_to_receipt_after_first_s"],
        "firing_thread": run["firing_thread"],
        "lost": run["missing"].as_u64().unwrap_or(0) + run["unknown"].as_u64().unwrap_or(0),
        "doubled": run["duplicates"],
        "early": fired_early.max(received_early),
        "concurrency": run["concurrency"],
        "cpu": cpu,
    })
}

/// Where the curve bends, in order of offered rate: the first step that delivered less than
/// [`KEEPS_UP`] of its offered rate and the highest rate before it, and the highest rates
/// before the first step whose p99 lateness reached 10 ms (W2's target) and 100 ms.
fn summary(steps: &[Value]) -> Value {
    let mut points: Vec<Point> = steps.iter().filter_map(Point::of).collect();
    points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    let first_short = points.iter().position(|p| !p.keeps_up());
    // The highest offered rate before the first point failing `ok`.
    let highest = |ok: &dyn Fn(&Point) -> bool| {
        points
            .iter()
            .take_while(|p| ok(p))
            .last()
            .map(|p| p.offered)
    };
    json!({
        "section": "curve",
        "steps": points.len(),
        "highest_rate_kept_up_per_s": highest(&Point::keeps_up),
        "highest_rate_p99_under_10ms_per_s": highest(&|p| p.late_ms[1] < TARGET_MS),
        "highest_rate_p99_under_100ms_per_s": highest(&|p| p.late_ms[1] < 100.0),
        "first_rate_not_kept_up_per_s": first_short.map(|i| points[i].offered),
        "achieved_at_that_rate_per_s": first_short.map(|i| points[i].achieved),
        "peak_achieved_per_s": points.iter().map(|p| p.achieved).fold(0.0, f64::max),
        "keeps_up_means": format!("achieved >= {KEEPS_UP} x offered"),
        "lost": steps.iter().map(|s| s["lost"].as_u64().unwrap_or(0)).sum::<u64>(),
        "doubled": steps.iter().map(|s| s["doubled"].as_u64().unwrap_or(0)).sum::<u64>(),
        "early": steps.iter().map(|s| s["early"].as_u64().unwrap_or(0)).sum::<u64>(),
    })
}

/// CPU time over a step, from `/proc`: all CPUs busy, this process, and the difference
/// (other processes on the machine, which bend the curve on a shared machine).
struct CpuMeter {
    wall: Instant,
    busy: f64,
    own: f64,
}

impl CpuMeter {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            busy: machine_busy_s(),
            own: own_cpu_s(),
        }
    }

    fn stop(self) -> Value {
        let wall = self.wall.elapsed().as_secs_f64();
        let busy = machine_busy_s() - self.busy;
        let own = own_cpu_s() - self.own;
        json!({
            "wall_s": round2(wall),
            "all_processes_s": round2(busy),
            "this_process_s": round2(own),
            "other_processes_s": round2((busy - own).max(0.0)),
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Seconds all CPUs spent busy since boot (`/proc/stat`: everything but idle and iowait).
fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let busy: f64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / clock_ticks()
}

/// Seconds of CPU this process used (`/proc/self/stat`: utime + stime).
fn own_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime; "state" is not a number, so utime and stime are at 10 and 11 here.
    (f.get(10).unwrap_or(&0.0) + f.get(11).unwrap_or(&0.0)) / clock_ticks()
}

/// What the plot needs of one step.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    offered: f64,
    achieved: f64,
    /// Lateness in ms: p50, p99, p99.9, max.
    late_ms: [f64; 4],
    /// lost + doubled + early.
    faults: u64,
}

impl Point {
    fn of(step: &Value) -> Option<Self> {
        let l = &step["lateness"];
        let ms = |k: &str| l[k].as_f64().map(|us| us / 1_000.0);
        Some(Self {
            offered: step["offered_per_s"].as_f64()?,
            achieved: step["achieved_per_s"].as_f64()?,
            late_ms: [ms("p50_us")?, ms("p99_us")?, ms("p999_us")?, ms("max_us")?],
            faults: ["lost", "doubled", "early"]
                .iter()
                .map(|k| step[*k].as_u64().unwrap_or(0))
                .sum(),
        })
    }

    fn keeps_up(&self) -> bool {
        self.achieved >= KEEPS_UP * self.offered
    }
}

/// The lateness series: name, colour, dash pattern.
const SERIES: [(&str, &str, &str); 4] = [
    ("p50", "#1b9e77", ""),
    ("p99", "#d95f02", ""),
    ("p99.9", "#7570b3", ""),
    ("max", "#888888", "5,4"),
];

/// W2's target for webhook lateness at the receiver: p99 under this many ms.
const TARGET_MS: f64 = 10.0;

/// Smallest lateness drawn (ms): a log scale cannot show 0, and below it is noise.
const FLOOR_MS: f64 = 0.1;

const WIDTH: f64 = 930.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 740.0;
/// Lateness panel, top and bottom.
const TOP1: f64 = 90.0;
const BOTTOM1: f64 = 390.0;
/// Throughput panel, top and bottom.
const TOP2: f64 = 470.0;
const BOTTOM2: f64 = 690.0;
const HEIGHT: f64 = 770.0;

/// A value's position on a log scale from `lo` to `hi` (both > 0) mapped to `a..b`.
fn log_pos(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    let t = (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10());
    a + t.clamp(0.0, 1.0) * (b - a)
}

/// A value's position on a linear scale from 0 to `hi` mapped to `a..b`.
fn lin_pos(v: f64, hi: f64, a: f64, b: f64) -> f64 {
    a + (v / hi).clamp(0.0, 1.0) * (b - a)
}

/// A round tick step giving at most `max_ticks` ticks up to `hi`: 1, 2 or 5 × 10^k.
fn tick_step(hi: f64, max_ticks: f64) -> f64 {
    let raw = (hi / max_ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// `12000` as `12k`, `1500` as `1.5k`, `9999` as `10k`: one decimal at most.
fn rate_label(v: f64) -> String {
    if v >= 1_000.0 {
        let k = (v / 100.0).round() / 10.0;
        if k.fract().abs() < 1e-9 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{v:.0}")
    }
}

fn ms_label(ms: f64) -> String {
    if ms >= 1_000.0 {
        format!("{} s", ms / 1_000.0)
    } else if ms >= 1.0 {
        format!("{ms} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot: lateness by offered rate (log scale) above, achieved against offered below,
/// both on the same x axis (offered rate, linear), points in the order of offered rate.
fn svg(points: &[Point], subtitle: &[String]) -> String {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    let max_offered = pts.iter().map(|p| p.offered).fold(0.0, f64::max).max(1.0);
    let max_rate = pts.iter().map(|p| p.achieved).fold(max_offered, f64::max);
    let xstep = tick_step(max_rate, 8.0);
    let xmax = (max_rate / xstep).ceil() * xstep;
    let x = |v: f64| lin_pos(v, xmax, LEFT, RIGHT);
    // Lateness: whole decades around the data.
    let all_ms = pts.iter().flat_map(|p| p.late_ms);
    let lo = 10f64.powf(
        all_ms
            .clone()
            .fold(f64::INFINITY, f64::min)
            .max(FLOOR_MS)
            .log10()
            .floor(),
    );
    let hi = 10f64.powf(all_ms.fold(0.0, f64::max).max(lo * 10.0).log10().ceil());
    let y1 = |ms: f64| log_pos(ms, lo, hi, BOTTOM1, TOP1);
    let y2 = |v: f64| lin_pos(v, xmax, BOTTOM2, TOP2);

    let mut s = String::new();
    s += &format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="28" font-size="17" font-weight="bold">MINOOTS webhook delivery: lateness and throughput by offered rate</text>
<text x="{LEFT}" y="48" fill="#555">{}</text>
<text x="{LEFT}" y="64" fill="#555">{}</text>
"##,
        escape(subtitle.first().map_or("", String::as_str)),
        escape(subtitle.get(1).map_or("", String::as_str)),
    );

    // Panel 1: lateness, log scale.
    s += &panel_frame(TOP1, BOTTOM1, xmax, xstep);
    let mut decade = lo;
    while decade <= hi * 1.000_001 {
        let y = y1(decade);
        s += &format!(
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ccc\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            y + 4.0,
            ms_label(decade)
        );
        for m in [2.0, 5.0] {
            if decade * m < hi {
                let y = y1(decade * m);
                s += &format!(
                    "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n"
                );
            }
        }
        decade *= 10.0;
    }
    s += &format!(
        "<text transform=\"translate(24 {:.1}) rotate(-90)\" text-anchor=\"middle\">webhook lateness, received − fireAt (ms, log)</text>\n",
        (TOP1 + BOTTOM1) / 2.0
    );
    for (i, (name, colour, dash)) in SERIES.iter().enumerate() {
        let coords: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (x(p.offered), y1(p.late_ms[i])))
            .collect();
        s += &polyline(name, colour, dash, &coords);
        for (p, (cx, cy)) in pts.iter().zip(&coords) {
            s += &format!(
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"{colour}\"><title>{name} at {} offered: {:.2} ms</title></circle>\n",
                rate_label(p.offered),
                p.late_ms[i]
            );
        }
        // Legend, right of the panel.
        let ly = TOP1 + 10.0 + 22.0 * i as f64;
        s += &legend_entry(ly, colour, dash, name);
    }

    // W2's target for webhook lateness, p99 < 10 ms.
    if lo < TARGET_MS && TARGET_MS < hi {
        let y = y1(TARGET_MS);
        s += &format!(
            "<line data-target=\"p99\" x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d95f02\" stroke-width=\"1\" stroke-dasharray=\"1,3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d95f02\" font-size=\"11\" text-anchor=\"end\">W2 target: p99 &lt; 10 ms</text>\n",
            RIGHT - 6.0,
            y - 4.0
        );
    }

    // Panel 2: achieved against offered, linear.
    s += &panel_frame(TOP2, BOTTOM2, xmax, xstep);
    let mut v = 0.0;
    while v <= xmax + 1e-9 {
        let y = y2(v);
        s += &format!(
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            y + 4.0,
            rate_label(v)
        );
        v += xstep;
    }
    s += &format!(
        "<text transform=\"translate(24 {:.1}) rotate(-90)\" text-anchor=\"middle\">delivered per s</text>\n",
        (TOP2 + BOTTOM2) / 2.0
    );
    s += &polyline(
        "offered",
        "#999999",
        "5,4",
        &[(x(0.0), y2(0.0)), (x(xmax), y2(xmax))],
    );
    let coords: Vec<(f64, f64)> = pts.iter().map(|p| (x(p.offered), y2(p.achieved))).collect();
    s += &polyline("achieved", "#1f77b4", "", &coords);
    for (p, (cx, cy)) in pts.iter().zip(&coords) {
        let fill = if p.faults > 0 { "#d62728" } else { "#1f77b4" };
        s += &format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3.5\" fill=\"{fill}\"><title>{} offered: {:.0}/s delivered; lost+doubled+early {}</title></circle>\n\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1f77b4\" font-size=\"11\">{}</text>\n",
            rate_label(p.offered),
            p.achieved,
            p.faults,
            cy - 8.0,
            rate_label(p.achieved.round())
        );
    }
    for (i, (name, colour, dash)) in [
        ("achieved", "#1f77b4", ""),
        ("offered (ideal)", "#999999", "5,4"),
    ]
    .iter()
    .enumerate()
    {
        let ly = TOP2 + 10.0 + 22.0 * i as f64;
        s += &legend_entry(ly, colour, dash, name);
    }

    // Where it stops keeping up: a marker through both panels.
    if let Some(p) = pts.iter().find(|p| !p.keeps_up()) {
        let mx = x(p.offered);
        s += &format!(
            "<line x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP1}\" y2=\"{BOTTOM2}\" stroke=\"#d62728\" stroke-dasharray=\"2,3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d62728\" text-anchor=\"{}\">first step below {:.0} % of offered: {} offered, {} delivered</text>\n",
            if mx > (LEFT + RIGHT) / 2.0 {
                mx - 4.0
            } else {
                mx + 4.0
            },
            TOP2 - 6.0,
            if mx > (LEFT + RIGHT) / 2.0 {
                "end"
            } else {
                "start"
            },
            KEEPS_UP * 100.0,
            rate_label(p.offered),
            rate_label(p.achieved.round())
        );
    }
    let faults: u64 = pts.iter().map(|p| p.faults).sum();
    s += &format!(
        "<text x=\"{LEFT}\" y=\"{:.1}\">offered rate (webhook deliveries per s, each due uniformly over its step)</text>\n\
         <text x=\"{LEFT}\" y=\"{:.1}\" fill=\"{}\">lost + doubled + early over all steps: {faults}</text>\n</svg>\n",
        BOTTOM2 + 40.0,
        BOTTOM2 + 60.0,
        if faults == 0 { "#2ca02c" } else { "#d62728" }
    );
    s
}

/// A panel's box and its x axis ticks (offered rate).
fn panel_frame(top: f64, bottom: f64, xmax: f64, xstep: f64) -> String {
    let mut s = format!(
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#444\"/>\n",
        RIGHT - LEFT,
        bottom - top
    );
    let mut v = 0.0;
    while v <= xmax + 1e-9 {
        let x = lin_pos(v, xmax, LEFT, RIGHT);
        s += &format!(
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{bottom}\" stroke=\"#eee\"/>\n\
             <line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{:.1}\" stroke=\"#444\"/>\n\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            bottom + 5.0,
            bottom + 18.0,
            rate_label(v)
        );
        v += xstep;
    }
    s
}

fn polyline(name: &str, colour: &str, dash: &str, coords: &[(f64, f64)]) -> String {
    let points: Vec<String> = coords
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        "<polyline data-series=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\n",
        escape(name),
        points.join(" ")
    )
}

/// One legend line of a panel, right of the plot: a stroke sample and its name.
fn legend_entry(ly: f64, colour: &str, dash: &str, name: &str) -> String {
    format!(
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\">{name}</text>\n",
        RIGHT + 28.0,
        RIGHT + 52.0,
        RIGHT + 58.0,
        ly + 4.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: u64, achieved: f64, p50_us: i64, lost: u64) -> Value {
        json!({
            "offered_per_s": offered, "achieved_per_s": achieved, "step_s": 10.0,
            "lateness": {"p50_us": p50_us, "p99_us": p50_us * 4, "p999_us": p50_us * 8, "max_us": p50_us * 20},
            "lost": lost, "doubled": 0, "early": 0,
        })
    }

    /// The points of the polyline of one series, as (x, y).
    fn series(svg: &str, name: &str) -> Vec<(f64, f64)> {
        let tag = format!("<polyline data-series=\"{name}\" points=\"");
        let mut found = svg.match_indices(&tag);
        let (at, _) = found.next().unwrap_or_else(|| panic!("no series {name}"));
        assert!(found.next().is_none(), "series {name} drawn twice");
        let rest = &svg[at + tag.len()..];
        rest[..rest.find('"').expect("closing quote")]
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect()
    }

    #[test]
    fn percentiles_of_a_known_sample() {
        // 1..=1000 µs, shuffled: the dist the steps report (super::dist_us).
        let sample: Vec<i64> = (1..=1_000).map(|i| (i * 7_919) % 1_000 + 1).collect();
        let d = super::super::dist_us(sample);
        assert_eq!(
            (d["p50_us"].as_i64(), d["p99_us"].as_i64()),
            (Some(500), Some(990))
        );
        assert_eq!(
            (d["p999_us"].as_i64(), d["max_us"].as_i64()),
            (Some(999), Some(1_000))
        );
        let p = Point::of(&json!({"offered_per_s": 1000, "achieved_per_s": 998.0,
            "lateness": d, "lost": 0, "doubled": 0, "early": 0}))
        .expect("a point");
        assert_eq!(p.late_ms, [0.5, 0.99, 0.999, 1.0]);
    }

    #[test]
    fn the_plot_has_one_polyline_per_series_with_a_point_per_step() {
        // Given out of order: the plot sorts by offered rate.
        let steps = [
            step(5_000, 4_990.0, 2_000, 0),
            step(1_000, 999.0, 1_500, 0),
            step(20_000, 11_000.0, 900_000, 0),
            step(10_000, 9_800.0, 3_000, 0),
        ];
        let points: Vec<Point> = steps.iter().filter_map(Point::of).collect();
        let svg = svg(&points, &["test <run> & co".to_string()]);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("test &lt;run&gt; &amp; co"));
        assert_eq!(svg.matches("<polyline").count(), SERIES.len() + 2);
        for (name, ..) in SERIES.iter().chain([("achieved", "", "")].iter()) {
            let pts = series(&svg, name);
            assert_eq!(pts.len(), steps.len(), "{name}");
            assert!(
                pts.windows(2).all(|w| w[0].0 < w[1].0),
                "{name}: x not increasing"
            );
            assert!(
                pts.iter()
                    .all(|(x, y)| (LEFT..=RIGHT).contains(x) && (TOP1..=BOTTOM2).contains(y))
            );
        }
        // Higher percentiles sit higher (smaller y) at every step; the log scale puts
        // 4× (p99 over p50) the same distance up at 1.5 ms and at 900 ms.
        let (p50, p99) = (series(&svg, "p50"), series(&svg, "p99"));
        let ups: Vec<f64> = p50.iter().zip(&p99).map(|(a, b)| a.1 - b.1).collect();
        assert!(ups.iter().all(|u| *u > 1.0), "{ups:?}");
        assert!(ups.windows(2).all(|w| (w[0] - w[1]).abs() < 0.2), "{ups:?}");
        // The first step below 95 % of its offered rate (20k → 11k) is marked.
        assert!(
            svg.contains("20k offered, 11k delivered"),
            "no saturation marker"
        );
        assert_eq!(
            svg.matches("data-target=").count(),
            1,
            "no 10 ms target line"
        );
        // Achieved at 20k (11k) is drawn below the ideal at 20k.
        let achieved = series(&svg, "achieved");
        let ideal = series(&svg, "offered");
        assert!(achieved[3].1 > ideal[1].1 + 50.0);
    }

    #[test]
    fn scales_and_the_summary() {
        let c: CurveBench = super::super::defaults();
        assert_eq!(c.rates, [1_000, 2_000, 5_000, 10_000, 15_000, 20_000]);
        assert_eq!((c.step_s, c.quick), (10.0, false));
        assert!((log_pos(10.0, 1.0, 100.0, 0.0, 200.0) - 100.0).abs() < 1e-9);
        assert_eq!(log_pos(0.0, 1.0, 100.0, 0.0, 200.0), 0.0);
        assert_eq!(tick_step(20_000.0, 8.0), 5_000.0);
        assert_eq!(tick_step(2_000.0, 8.0), 500.0);
        assert_eq!(rate_label(15_000.0), "15k");
        assert_eq!(rate_label(1_500.0), "1.5k");
        assert_eq!(rate_label(9_999.0), "10k");
        assert_eq!(rate_label(14_752.0), "14.8k");
        let s = summary(&[
            step(1_000, 999.0, 1_000, 0),
            step(10_000, 9_700.0, 2_000, 0),
            step(15_000, 12_000.0, 500_000, 2),
        ]);
        assert_eq!(s["highest_rate_kept_up_per_s"], 10_000.0);
        // p99 is 4 × p50 here: 4 ms, 8 ms, then 2 s.
        assert_eq!(s["highest_rate_p99_under_10ms_per_s"], 10_000.0);
        assert_eq!(s["highest_rate_p99_under_100ms_per_s"], 10_000.0);
        assert_eq!(s["first_rate_not_kept_up_per_s"], 15_000.0);
        assert_eq!(s["lost"], 2);
    }
}
