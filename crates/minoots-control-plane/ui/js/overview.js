// Overview: timers by status, delivery outcomes per minute, the tenant's tier, limits
// and usage.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api } from "./api.js";
import { useEvents } from "./live.js";
import { ErrorText, Link } from "./util.js";

const STATUSES = ["scheduled", "fired", "settled", "failed", "cancelled"];
/** The least time between two refreshes caused by events: three requests each, so a busy
 * tenant stays well inside the free tier's request rate. */
const REFRESH_MIN_MS = 5000;
/** The chart moves on by a minute even when nothing happens. */
const REFRESH_IDLE_MS = 60000;

/** GET /timers/counts: each status, with "+" where the server stopped counting. */
async function countByStatus() {
  const c = await api("GET", "/timers/counts");
  const out = {};
  for (const s of STATUSES) out[s] = { n: c[s], more: c.capped && c[s] >= c.cap };
  return out;
}

/** GET /deliveries/per-minute: the last hour, oldest minute first. */
async function activity() {
  const a = await api("GET", "/deliveries/per-minute?minutes=60");
  return { rows: a.minutes, complete: a.complete };
}

function Chart({ data }) {
  const rows = data ? data.rows : [];
  let max = 1;
  for (const b of rows) max = Math.max(max, b.succeeded + b.retried + b.dead);
  const H = 80;
  const total = rows.reduce((a, b) => ({ succeeded: a.succeeded + b.succeeded, retried: a.retried + b.retried, dead: a.dead + b.dead }), { succeeded: 0, retried: 0, dead: 0 });
  const bar = (b, i) => {
    let y = H;
    return ["succeeded", "retried", "dead"].map((k) => {
      const h = (b[k] / max) * H;
      y -= h;
      return h > 0 ? html`<rect key=${k} class=${`bar-${k}`} x=${i * 5} y=${y} width="4" height=${h}><title>${b[k]} ${k}</title></rect>` : null;
    });
  };
  return html`<div class="chart">
    <svg viewBox="0 0 300 ${H}" preserveAspectRatio="none" role="img" aria-label="Deliveries per minute over the last hour">
      ${rows.map(bar)}
    </svg>
    <p class="legend">
      <span class="key bar-succeeded-key">succeeded ${total.succeeded}</span>
      <span class="key bar-retried-key">retried ${total.retried}</span>
      <span class="key bar-dead-key">dead ${total.dead}</span>
      <span class="muted small">per minute, last hour${data && !data.complete ? " (the oldest minutes only in part: more events than the server reads at once)" : ""}</span>
    </p>
  </div>`;
}

function fmtLimit(v) {
  return v === null || v === undefined ? "unlimited" : v.toLocaleString();
}

export function Overview({ session }) {
  const [counts, setCounts] = useState(null);
  const [chart, setChart] = useState(null);
  const [usage, setUsage] = useState(null);
  const [last, setLast] = useState(0);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  const refresh = async () => {
    try {
      setLast(Date.now());
      const [c, a, u] = await Promise.all([countByStatus(), activity(), api("GET", "/usage")]);
      setCounts(c);
      setChart(a);
      setUsage(u);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    refresh();
  }, []);
  // Recount when timers or deliveries change, at most every REFRESH_MIN_MS.
  useEffect(() => {
    const t = setInterval(() => setTick((x) => x + 1), 1000);
    return () => clearInterval(t);
  }, []);
  const [dirty, setDirty] = useState(false);
  useEvents((ev) => (ev.type.startsWith("timer.") || ev.type.startsWith("delivery.")) && setDirty(true));
  useEffect(() => {
    const since = Date.now() - last;
    if ((dirty && since >= REFRESH_MIN_MS) || since >= REFRESH_IDLE_MS) {
      setDirty(false);
      refresh();
    }
  }, [tick]);

  return html`<section id="overview">
    <h1>Overview</h1>
    <${ErrorText} error=${error} />
    <div class="cards">
      ${STATUSES.map((s) => html`<${Link} key=${s} href=${`/ui/timers?status=${s}`} class="card stat" id=${`count-${s}`}>
        <span class=${`status status-${s}`}>${s}</span>
        <strong class="count">${counts ? `${counts[s].n}${counts[s].more ? "+" : ""}` : "…"}</strong>
      <//>`)}
    </div>
    <h2>Deliveries per minute</h2>
    <${Chart} data=${chart} />
    <h2>Tier, limits and usage</h2>
    ${usage && html`<table class="kv" id="usage">
      <tbody>
        <tr><th>Tenant</th><td>${usage.tenantId}</td></tr>
        <tr><th>Tier</th><td id="tier">${usage.tier}</td></tr>
        <tr><th>Timers created today</th><td>${usage.usage.timersCreatedToday.toLocaleString()} of ${fmtLimit(usage.limits.timersPerDay)}</td></tr>
        <tr><th>Pending timers</th><td>${usage.usage.pendingTimers.toLocaleString()} of ${fmtLimit(usage.limits.pendingTimers)}</td></tr>
        <tr><th>Requests per minute</th><td>${fmtLimit(usage.limits.requestsPerMinute)}</td></tr>
        <tr><th>Creates per minute</th><td>${fmtLimit(usage.limits.createsPerMinute)}</td></tr>
        <tr><th>Longest timer</th><td>${usage.limits.maxDurationMs ? `${Math.round(usage.limits.maxDurationMs / 86400000)} days` : "unlimited"}</td></tr>
        <tr><th>Schedules</th><td>${fmtLimit(usage.limits.schedules)}</td></tr>
        <tr><th>Signed in as</th><td>${session.keyName} (${session.roles.join(", ")}), until ${new Date(session.expiresAt).toLocaleString(undefined, { hour12: false })}</td></tr>
      </tbody>
    </table>`}
  </section>`;
}
