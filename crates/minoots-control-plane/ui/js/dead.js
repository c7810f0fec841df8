// Dead letters: failed timers (a delivery exhausted its retries) with their dead
// deliveries' last error; redrive one, the selected, or all matching the filter. The API
// redrives per timer (POST /timers/{id}/redrive), which re-queues each dead delivery.
// The list is virtualised like the timers list (pages fetched on scrolling, at most
// MAX_ROWS kept), and a row's last error is fetched only once the row comes into view.
import { html, useCallback, useEffect, useRef, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, each } from "./api.js";
import { useEvents } from "./live.js";
import { Confirm, ErrorText, Held, Labels, Link, OVERFLOW_NOTICE, fmtTime, mergeTimer, navigate, useLocation } from "./util.js";
import { MAX_ROWS, apiMatch, clientMatch, scan } from "./timers.js";
import { VirtualTable } from "./vlist.js";

/** Failed timers fetched per API page. */
const PAGE_ROWS = 200;

const DEAD_HEAD = html`<tr><th class="c-check"></th><th class="c-name">Timer</th><th class="c-time">Failed</th><th>Last error</th><th class="c-labels">Labels</th><th class="c-act"></th></tr>`;

/** One line of a row's dead deliveries: the first one's error, and how many more. */
function LastError({ dead }) {
  if (!dead) return html`<span class="muted">…</span>`;
  if (!dead.length) return html`<span class="muted">no dead delivery</span>`;
  const d = dead[0];
  return html`<span title=${dead.map((x) => `action ${x.actionIndex + 1}: ${x.lastError || "no error text"}`).join("\n")}>action ${d.actionIndex + 1}, ${d.attempts} attempts: <span class="error-text">${d.lastError || "no error text"}</span>${dead.length > 1 ? ` (+${dead.length - 1} more)` : ""}</span>`;
}

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
  /** Timer ids whose deliveries were asked for (answered or not), so none is asked twice. */
  const asked = useRef(new Set());
  const inFlight = useRef(false);
  /** Raised by a filter change: an answer to an older filter is dropped. */
  const generation = useRef(0);
  /** Live events held while the first page is fetched (see `Held` in util.js). */
  const held = useRef(null);
  if (!held.current) held.current = new Held();

  /** One live event applied to the rows: a timer of the list changes, one that fails
   * and matches the filter joins it at the top. */
  const applyEvent = (old, ev) => {
    const t = ev.timer;
    if (old.some((o) => o.id === t.id)) return mergeTimer(old, t);
    if (ev.type === "timer.failed" && apiMatch(f, t) && clientMatch(f, t)) return [t, ...old].slice(0, MAX_ROWS);
    return old;
  };

  const loadErrors = async (timers) => {
    const todo = timers.filter((t) => !asked.current.has(t.id));
    todo.forEach((t) => asked.current.add(t.id));
    await each(todo, async (t) => {
      const d = await api("GET", `/timers/${t.id}/deliveries`);
      const dead = d.deliveries.filter((x) => x.status === "dead");
      setErrors((e) => ({ ...e, [t.id]: dead }));
    });
  };
  const load = async (cursor) => {
    if (inFlight.current) return;
    inFlight.current = true;
    const gen = generation.current;
    setLoading(true);
    try {
      if (!cursor) held.current.start();
      const r = await scan(f, cursor, PAGE_ROWS);
      if (gen !== generation.current) return;
      const late = cursor ? null : held.current.take();
      if (late?.overflowed) setNotice(OVERFLOW_NOTICE);
      setRows((old) => {
        if (late) return late.events.reduce(applyEvent, r.rows);
        const have = new Set(old.map((o) => o.id));
        return [...old, ...r.rows.filter((t) => !have.has(t.id))].slice(0, MAX_ROWS);
      });
      setNext(r.next);
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      if (gen === generation.current) {
        if (!cursor) held.current.take();
        inFlight.current = false;
        setLoading(false);
      }
    }
  };
  useEffect(() => {
    generation.current += 1;
    setSelected(new Set());
    setForm(f);
    setErrors({});
    asked.current = new Set();
    inFlight.current = false;
    load(null);
  }, [key]);
  const capped = rows.length >= MAX_ROWS && next;
  const nearEnd = useCallback(() => {
    if (next && !inFlight.current && rows.length < MAX_ROWS) load(next);
  }, [next, rows.length, key]);
  // A redriven timer's row shows its new status; a newly failed one that matches the
  // filter joins the list.
  useEvents(
    (ev) => {
      if (!ev.timer) return;
      held.current.hold(ev);
      setRows((old) => applyEvent(old, ev));
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
      const r = await scan(f, null, 100000, Infinity, { idsOnly: true });
      const ids = r.rows;
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
    ${capped && html`<p class="notice" id="rows-capped">This page keeps the first ${MAX_ROWS.toLocaleString()} dead letters; narrow the filter (label, name) to see the others.</p>`}
    <${VirtualTable} id="dead-table" cols=${6} head=${DEAD_HEAD} rows=${rows} onNearEnd=${nearEnd} onView=${loadErrors}
      renderRow=${(t) => html`<tr class="row" key=${t.id} data-timer-id=${t.id} data-status=${t.status}>
          <td><input type="checkbox" aria-label=${`select ${t.name}`} checked=${selected.has(t.id)} disabled=${t.status !== "failed"} onChange=${() => toggle(t.id)} /></td>
          <td title=${t.name}><${Link} href=${`/ui/timers/${t.id}`}>${t.name}<//><div class="mono small muted">${t.id}</div></td>
          <td>${fmtTime(t.settledAt)}</td>
          <td class="small"><${LastError} dead=${errors[t.id]} /></td>
          <td><${Labels} labels=${t.labels} /></td>
          <td>${t.status === "failed" ? html`<button type="button" class="small redrive-one" onClick=${() => redriveOne(t.id)}>Redrive</button>` : html`<span class=${`status status-${t.status}`}>${t.status}</span>`}</td>
        </tr>`} />
    ${!loading && !rows.length && html`<p class="empty">No dead letters.</p>`}
    ${loading && html`<p class="muted">Loading…</p>`}
    <${Confirm} ask=${ask} onClose=${() => setAsk(null)} />
  </section>`;
}
