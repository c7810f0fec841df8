// One timer: its timeline (created → fired with lateness → each attempt → settled, failed
// or cancelled), its action bundle and metadata, and the actions its state allows.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api } from "./api.js";
import { useEvents } from "./live.js";
import { ErrorText, Labels, Link, Status, fmtMs, fmtTime } from "./util.js";

function Attempt({ a, d }) {
  const ok = a.outcome === "succeeded";
  return html`<li class=${`step attempt ${ok ? "ok" : "bad"}`} data-attempt=${a.attempt}>
    <div class="when">${fmtTime(a.startedAt)}</div>
    <div>
      <strong>Attempt ${a.attempt}</strong> of action ${d.actionIndex + 1}: <span class=${`outcome outcome-${a.outcome}`}>${a.outcome}</span>${a.httpStatus !== null && a.httpStatus !== undefined && html` · HTTP <span class="http-status">${a.httpStatus}</span>`}${a.exitCode !== null && a.exitCode !== undefined && html` · exit ${a.exitCode}`} · ${fmtMs(a.durationMs)}
      ${a.error && html`<div class="error-text">${a.error}</div>`}
      ${a.response && html`<details><summary>Response</summary><pre class="excerpt">${a.response}</pre></details>`}
    </div>
  </li>`;
}

function Timeline({ t, deliveries }) {
  const steps = [];
  steps.push(html`<li class="step" key="created"><div class="when">${fmtTime(t.createdAt)}</div><div><strong>Created</strong>${t.requestedBy ? ` by ${t.requestedBy}` : ""}, due ${fmtTime(t.fireAt)}</div></li>`);
  if (t.firedAt) {
    steps.push(html`<li class="step" key="fired" id="step-fired"><div class="when">${fmtTime(t.firedAt)}</div><div><strong>Fired</strong>, ${fmtMs(t.firedLateMs)} after its due time</div></li>`);
  } else if (t.status === "scheduled") {
    steps.push(html`<li class="step pending" key="due"><div class="when">${fmtTime(t.fireAt)}</div><div><strong>Due</strong></div></li>`);
  }
  for (const d of deliveries) {
    for (const a of d.attemptLog) steps.push(html`<${Attempt} key=${`${d.id}-${a.attempt}`} a=${a} d=${d} />`);
    if (d.status === "pending" && d.nextAttemptAt) {
      steps.push(html`<li class="step pending" key=${`${d.id}-next`}><div class="when">${fmtTime(d.nextAttemptAt)}</div><div>Next attempt of action ${d.actionIndex + 1} (${d.attempts} of ${d.maxAttempts} made)</div></li>`);
    }
    if (d.status === "dead") {
      steps.push(html`<li class="step bad" key=${`${d.id}-dead`}><div class="when">${fmtTime(d.updatedAt)}</div><div><strong>Dead letter</strong>: action ${d.actionIndex + 1} gave up after ${d.attempts} attempts${d.lastError ? `: ${d.lastError}` : ""}</div></li>`);
    }
  }
  if (t.status === "settled") steps.push(html`<li class="step ok" key="end"><div class="when">${fmtTime(t.settledAt)}</div><div><strong>Settled</strong>: every action succeeded</div></li>`);
  if (t.status === "failed") steps.push(html`<li class="step bad" key="end"><div class="when">${fmtTime(t.settledAt)}</div><div><strong>Failed</strong>: an action exhausted its retries</div></li>`);
  if (t.status === "cancelled") steps.push(html`<li class="step" key="end"><div class="when">${fmtTime(t.cancelledAt)}</div><div><strong>Cancelled</strong>${t.cancelReason ? `: ${t.cancelReason}` : ""}</div></li>`);
  return html`<ol class="timeline" id="timeline">${steps}</ol>`;
}

export function Timer({ id }) {
  const [t, setT] = useState(null);
  const [deliveries, setDeliveries] = useState([]);
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const load = async () => {
    try {
      const [timer, d] = await Promise.all([api("GET", `/timers/${id}`), api("GET", `/timers/${id}/deliveries`)]);
      setT((old) => (old && old.version > timer.version ? old : timer));
      setDeliveries(d.deliveries);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, [id]);
  useEvents((ev) => ev.timerId === id && load(), [id]);

  const act = (path, body) => async () => {
    setActionError(null);
    try {
      await api("POST", `/timers/${id}/${path}`, body);
      await load();
    } catch (e) {
      setActionError(e);
    }
  };

  if (error) return html`<section><p><${Link} href="/ui/timers">← Timers<//></p><${ErrorText} error=${error} /></section>`;
  if (!t) return html`<section><p class="muted">Loading…</p></section>`;
  return html`<section id="timer" data-timer-id=${t.id}>
    <p><${Link} href="/ui/timers">← Timers<//></p>
    <h1>${t.name} <${Status} status=${t.status} /></h1>
    <p class="mono small muted">${t.id}${t.scheduleId ? ` · run of schedule ${t.scheduleId}` : ""} · version ${t.version}</p>
    <p><${Labels} labels=${t.labels} /></p>
    <div class="toolbar">
      ${t.status === "scheduled" && html`<button type="button" id="fire-now" onClick=${act("fire")}>Fire now</button>
        <button type="button" id="cancel-timer" class="danger" onClick=${act("cancel", { reason: "cancelled from the dashboard" })}>Cancel</button>`}
      ${deliveries.some((d) => d.status === "dead") && html`<button type="button" id="redrive-timer" onClick=${act("redrive")}>Redrive</button>`}
    </div>
    <${ErrorText} error=${actionError} />
    <h2>Timeline</h2>
    <${Timeline} t=${t} deliveries=${deliveries} />
    <h2>Action bundle</h2>
    <pre class="json" id="action-bundle">${JSON.stringify(t.actionBundle, null, 2)}</pre>
    <h2>Metadata</h2>
    <pre class="json" id="metadata">${JSON.stringify(t.metadata, null, 2)}</pre>
  </section>`;
}
