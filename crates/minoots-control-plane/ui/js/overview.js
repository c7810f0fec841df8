// Overview: timers by status, delivery outcomes per minute, the tenant's tier, limits
// and usage.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, qs } from "./api.js";
import { perMinute, useEvents } from "./live.js";
import { ErrorText, Link } from "./util.js";

const STATUSES = ["scheduled", "fired", "settled", "failed", "cancelled"];
/** The API has no counts: each status is counted over one page of at most this many. */
const COUNT_PAGE = 500;

async function countByStatus() {
  const out = {};
  await Promise.all(
    STATUSES.map(async (s) => {
      const page = await api("GET", `/timers${qs({ status: s, limit: COUNT_PAGE })}`);
      out[s] = { n: page.timers.length, more: Boolean(page.nextCursor) };
    }),
  );
  return out;
}

function Chart({ tick }) {
  const now = Date.now();
  const first = now - (now % 60000) - 59 * 60000;
  const rows = [];
  let max = 1;
  for (let i = 0; i < 60; i++) {
    const b = perMinute.get(first + i * 60000) || { succeeded: 0, retried: 0, dead: 0 };
    rows.push(b);
    max = Math.max(max, b.succeeded + b.retried + b.dead);
  }
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
  return html`<div class="chart" data-tick=${tick}>
    <svg viewBox="0 0 300 ${H}" preserveAspectRatio="none" role="img" aria-label="Deliveries per minute over the last hour">
      ${rows.map(bar)}
    </svg>
    <p class="legend">
      <span class="key bar-succeeded-key">succeeded ${total.succeeded}</span>
      <span class="key bar-retried-key">retried ${total.retried}</span>
      <span class="key bar-dead-key">dead ${total.dead}</span>
      <span class="muted small">per minute, last hour, from the events this tab has read</span>
    </p>
  </div>`;
}

function fmtLimit(v) {
  return v === null || v === undefined ? "unlimited" : v.toLocaleString();
}

export function Overview({ session }) {
  const [counts, setCounts] = useState(null);
  const [usage, setUsage] = useState(null);
  const [error, setError] = useState(null);
  const [tick, setTick] = useState(0);
  const refresh = async () => {
    try {
      const [c, u] = await Promise.all([countByStatus(), api("GET", "/usage")]);
      setCounts(c);
      setUsage(u);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    refresh();
  }, []);
  // Recount when timers change state, at most once a second.
  useEffect(() => {
    const t = setInterval(() => setTick((x) => x + 1), 1000);
    return () => clearInterval(t);
  }, []);
  const [dirty, setDirty] = useState(false);
  useEvents((ev) => ev.type.startsWith("timer.") && setDirty(true));
  useEffect(() => {
    if (dirty) {
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
    <${Chart} tick=${tick} />
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
