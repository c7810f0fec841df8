// Dead letters: failed timers (a delivery exhausted its retries) with their dead
// deliveries' last error; redrive one, the selected, or all matching the filter. The API
// redrives per timer (POST /timers/{id}/redrive), which re-queues each dead delivery.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, each } from "./api.js";
import { useEvents } from "./live.js";
import { Confirm, ErrorText, Labels, Link, fmtTime, mergeTimer, navigate, useLocation } from "./util.js";
import { scan } from "./timers.js";

const PAGE_ROWS = 50;

export function DeadLetters() {
  const loc = useLocation();
  const params = new URLSearchParams(loc.includes("?") ? loc.slice(loc.indexOf("?")) : "");
  const f = { status: "failed", label: params.get("label") || "", name: params.get("name") || "", from: "", to: "", q: "" };
  const key = JSON.stringify(f);
  const [rows, setRows] = useState([]);
  const [errors, setErrors] = useState({});
  const [next, setNext] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const [ask, setAsk] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [form, setForm] = useState(f);
  const [loading, setLoading] = useState(true);

  const loadErrors = async (timers) => {
    await each(timers, async (t) => {
      const d = await api("GET", `/timers/${t.id}/deliveries`);
      const dead = d.deliveries.filter((x) => x.status === "dead");
      setErrors((e) => ({ ...e, [t.id]: dead }));
    });
  };
  const load = async (cursor) => {
    setLoading(true);
    try {
      const r = await scan(f, cursor, PAGE_ROWS);
      setRows((old) => (cursor ? [...old, ...r.rows] : r.rows));
      setNext(r.next);
      setError(null);
      loadErrors(r.rows);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => {
    setSelected(new Set());
    setForm(f);
    load(null);
  }, [key]);
  // A redriven timer leaves the list when it fires again; a newly failed one joins it.
  useEvents(
    (ev) => {
      const t = ev.timer;
      if (!t) return;
      setRows((old) => {
        if (old.some((o) => o.id === t.id)) return mergeTimer(old, t);
        if (ev.type === "timer.failed" && t.status === "failed") {
          loadErrors([t]);
          return [t, ...old];
        }
        return old;
      });
    },
    [key],
  );

  const redriveIds = async (ids) => {
    const r = await each(ids, async (id) => {
      const t = await api("POST", `/timers/${id}/redrive`);
      setRows((old) => mergeTimer(old, t));
    });
    setSelected(new Set());
    setNotice(`Redriven ${r.ok} timer${r.ok === 1 ? "" : "s"}${r.failed.length ? `; ${r.failed.length} could not be redriven (${r.failed[0].error.message})` : ""}.`);
  };
  const redriveOne = async (id) => {
    setError(null);
    try {
      await redriveIds([id]);
    } catch (e) {
      setError(e);
    }
  };
  const redriveSelected = () => {
    const ids = [...selected];
    setAsk({ text: `Redrive the ${ids.length} selected timer${ids.length === 1 ? "" : "s"}?`, confirm: `Redrive ${ids.length}`, run: () => redriveIds(ids) });
  };
  const redriveMatching = async () => {
    setNotice("Counting the matching dead letters…");
    try {
      const r = await scan(f, null, 100000, Infinity);
      const ids = r.rows.map((t) => t.id);
      setNotice(ids.length ? null : "No failed timer matches this filter.");
      if (ids.length) setAsk({ text: `Redrive all ${ids.length} failed timer${ids.length === 1 ? "" : "s"} matching this filter?`, confirm: `Redrive ${ids.length}`, run: () => redriveIds(ids) });
    } catch (e) {
      setNotice(null);
      setError(e);
    }
  };
  const toggle = (id) => {
    const s = new Set(selected);
    s.has(id) ? s.delete(id) : s.add(id);
    setSelected(s);
  };
  const submit = (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (form.label) p.set("label", form.label);
    if (form.name) p.set("name", form.name);
    navigate(`/ui/dead${p.toString() ? `?${p}` : ""}`);
  };

  return html`<section id="dead">
    <h1>Dead letters</h1>
    <p class="muted">Timers whose delivery exhausted its retries. Redriving re-queues each dead delivery with a fresh set of attempts.</p>
    <form class="filters" id="dead-filters" onSubmit=${submit}>
      <label>Label <input id="d-label" placeholder="key:value" value=${form.label} onInput=${(e) => setForm({ ...form, label: e.target.value })} /></label>
      <label>Name <input id="d-name" value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })} /></label>
      <button type="submit">Apply</button>
    </form>
    <div class="toolbar">
      <button type="button" id="redrive-selected" disabled=${!selected.size} onClick=${redriveSelected}>Redrive selected (${selected.size})</button>
      <button type="button" id="redrive-matching" onClick=${redriveMatching}>Redrive all matching…</button>
    </div>
    ${notice && html`<p class="notice" id="notice">${notice}</p>`}
    <${ErrorText} error=${error} />
    <table class="list" id="dead-table">
      <thead><tr><th></th><th>Timer</th><th>Failed</th><th>Last error</th><th>Labels</th><th></th></tr></thead>
      <tbody>
        ${rows.map((t) => html`<tr key=${t.id} data-timer-id=${t.id} data-status=${t.status}>
          <td><input type="checkbox" aria-label=${`select ${t.name}`} checked=${selected.has(t.id)} disabled=${t.status !== "failed"} onChange=${() => toggle(t.id)} /></td>
          <td><${Link} href=${`/ui/timers/${t.id}`}>${t.name}<//><div class="mono small muted">${t.id}</div></td>
          <td>${fmtTime(t.settledAt)}</td>
          <td class="small">${(errors[t.id] || []).map((d) => html`<div key=${d.id}>action ${d.actionIndex + 1}, ${d.attempts} attempts: <span class="error-text">${d.lastError || "no error text"}</span></div>`)}</td>
          <td><${Labels} labels=${t.labels} /></td>
          <td>${t.status === "failed" ? html`<button type="button" class="small redrive-one" onClick=${() => redriveOne(t.id)}>Redrive</button>` : html`<span class=${`status status-${t.status}`}>${t.status}</span>`}</td>
        </tr>`)}
      </tbody>
    </table>
    ${!loading && !rows.length && html`<p class="empty">No dead letters.</p>`}
    ${next && !loading && html`<button type="button" onClick=${() => load(next)}>Load more</button>`}
    <${Confirm} ask=${ask} onClose=${() => setAsk(null)} />
  </section>`;
}
