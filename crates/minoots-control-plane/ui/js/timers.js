// Timers: the list with its filters kept in the URL, search, cursor pages, live updates,
// the create form, and cancel (one, selected, or all matching after a confirmation).
// The list is virtualised (vlist.js): it fetches the next API page when the reader
// scrolls near the end and keeps at most MAX_ROWS rows, saying so when it stops there.
import { html, useCallback, useEffect, useRef, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, each, qs } from "./api.js";
import { useEvents } from "./live.js";
import { Confirm, ErrorText, Held, Labels, Link, OVERFLOW_NOTICE, Status, UUID_RE, fmtTime, mergeTimer, navigate, parseLabels, relTime, useLocation } from "./util.js";
import { VirtualTable } from "./vlist.js";

const STATUSES = ["scheduled", "fired", "settled", "failed", "cancelled"];
const FILTER_KEYS = ["status", "label", "name", "from", "to", "q"];
/** Rows fetched per API page (the API's largest page is 500). */
const PAGE_ROWS = 200;
/**
 * The most rows the page keeps in memory (about 2 KB each as parsed JSON): past it, it
 * stops fetching and asks for a narrower filter instead.
 */
export const MAX_ROWS = 10000;
/** When filtering in the page (name, time range, search), API pages read per "load". */
const MAX_SCAN_PAGES = 20;
/** Timers read per API page when the page filters them itself. */
const SCAN_PAGE = 500;
/** The most timers a "cancel all matching" reads before asking (ids only are kept). */
const MAX_BULK = 100000;
/** Set once the first rows of this page load are on screen (see `markRendered`). */
let renderedMarked = false;

function readFilters(search) {
  const p = new URLSearchParams(search);
  const f = {};
  for (const k of FILTER_KEYS) f[k] = p.get(k) || "";
  return f;
}

/** Whether `t` passes the filters the API cannot apply (name, time range, search). */
export function clientMatch(f, t) {
  if (f.name && !t.name.toLowerCase().includes(f.name.toLowerCase())) return false;
  const at = new Date(t.fireAt).getTime();
  if (f.from && at < new Date(f.from).getTime()) return false;
  if (f.to && at > new Date(f.to).getTime()) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!t.id.toLowerCase().startsWith(q) && !t.name.toLowerCase().includes(q)) return false;
  }
  return true;
}

export function apiMatch(f, t) {
  if (f.status && t.status !== f.status) return false;
  if (f.label) {
    const i = f.label.indexOf(":");
    const k = f.label.slice(0, i);
    if ((t.labels || {})[k] !== f.label.slice(i + 1)) return false;
  }
  return true;
}

const needsScan = (f) => Boolean(f.name || f.from || f.to || f.q);

/**
 * Reads matching timers from `cursor` on: up to `want` rows, or `maxPages` API pages
 * when the page filters itself. Returns {rows, next, scanned}.
 */
export async function scan(f, cursor, want, maxPages = MAX_SCAN_PAGES, extra = {}) {
  const rows = [];
  let next = cursor;
  let scanned = 0;
  let pages = 0;
  const scanning = needsScan(f);
  do {
    const page = await api("GET", `/timers${qs({ status: extra.status || f.status, label: f.label, limit: scanning ? SCAN_PAGE : Math.min(want, 500), cursor: next })}`);
    scanned += page.timers.length;
    pages += 1;
    for (const t of page.timers) if (clientMatch(f, t)) rows.push(extra.idsOnly ? t.id : t);
    next = page.nextCursor;
    const last = page.timers[page.timers.length - 1];
    // Pages come in fire-time order: past the range's end, nothing later can match.
    if (f.to && last && new Date(last.fireAt).getTime() > new Date(f.to).getTime()) next = null;
  } while (next && rows.length < want && pages < maxPages);
  return { rows, next, scanned };
}

function Filters({ f }) {
  const [v, setV] = useState(f);
  useEffect(() => setV(f), [JSON.stringify(f)]);
  const set = (k) => (e) => setV({ ...v, [k]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    navigate(`/ui/timers${qs(v)}`);
  };
  const clear = () => navigate("/ui/timers");
  return html`<form id="filters" class="filters" onSubmit=${submit}>
    <label>Status
      <select id="f-status" value=${v.status} onChange=${set("status")}>
        <option value="">any</option>
        ${STATUSES.map((s) => html`<option key=${s} value=${s}>${s}</option>`)}
      </select>
    </label>
    <label>Label <input id="f-label" placeholder="key:value" pattern="[^:]+:.*" value=${v.label} onInput=${set("label")} /></label>
    <label>Name <input id="f-name" value=${v.name} onInput=${set("name")} /></label>
    <label>Fires from <input id="f-from" type="datetime-local" value=${v.from} onInput=${set("from")} /></label>
    <label>to <input id="f-to" type="datetime-local" value=${v.to} onInput=${set("to")} /></label>
    <label>Search <input id="f-q" type="search" placeholder="id or name" value=${v.q} onInput=${set("q")} /></label>
    <button type="submit" id="f-apply">Apply</button>
    <button type="button" class="link" onClick=${clear}>Clear</button>
  </form>`;
}

function CreateForm({ onCreated }) {
  const [mode, setMode] = useState("duration");
  const [v, setV] = useState({ name: "", duration: "30s", fireAt: "", webhook: "", labels: "" });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setV({ ...v, [k]: e.target.value });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const body = { labels: parseLabels(v.labels) };
      if (v.name.trim()) body.name = v.name.trim();
      if (mode === "duration") body.duration = v.duration.trim();
      else body.fireAt = new Date(v.fireAt).toISOString();
      if (v.webhook.trim()) body.actionBundle = { actions: [{ type: "webhook", url: v.webhook.trim() }] };
      const t = await api("POST", "/timers", body);
      onCreated(t);
      setV({ ...v, name: "" });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form id="create-timer" class="card create" onSubmit=${submit}>
    <h2>New timer</h2>
    <div class="row">
      <label>Name <input id="new-name" value=${v.name} onInput=${set("name")} placeholder="generated when empty" /></label>
      <fieldset class="when">
        <label class="inline"><input type="radio" name="when" checked=${mode === "duration"} onChange=${() => setMode("duration")} /> in</label>
        <label class="inline"><input type="radio" name="when" id="new-mode-time" checked=${mode === "time"} onChange=${() => setMode("time")} /> at</label>
        ${mode === "duration"
          ? html`<input id="new-duration" aria-label="Duration" value=${v.duration} onInput=${set("duration")} placeholder="30s, 1h30m, PT5M" required />`
          : html`<input id="new-fire-at" aria-label="Fire at" type="datetime-local" step="1" value=${v.fireAt} onInput=${set("fireAt")} required />`}
      </fieldset>
    </div>
    <div class="row">
      <label class="grow">Webhook URL <input id="new-webhook" type="url" value=${v.webhook} onInput=${set("webhook")} placeholder="https://example.com/hook (empty: events only)" /></label>
      <label>Labels <input id="new-labels" value=${v.labels} onInput=${set("labels")} placeholder="team=ops, env=prod" /></label>
      <button type="submit" class="primary" id="new-submit" disabled=${busy}>Create</button>
    </div>
    <${ErrorText} error=${error} />
  </form>`;
}

function Row({ t, selected, onToggle, onCancel }) {
  return html`<tr class="row" data-timer-id=${t.id} data-status=${t.status}>
    <td><input type="checkbox" aria-label=${`select ${t.name}`} checked=${selected} disabled=${t.status !== "scheduled"} onChange=${() => onToggle(t.id)} /></td>
    <td title=${t.name}><${Link} href=${`/ui/timers/${t.id}`} class="name">${t.name}<//><div class="mono small muted">${t.id}</div></td>
    <td><${Status} status=${t.status} /></td>
    <td title=${t.fireAt}>${fmtTime(t.fireAt)}<div class="small muted">${relTime(t.fireAt)}</div></td>
    <td><${Labels} labels=${t.labels} /></td>
    <td>${t.status === "scheduled" && html`<button type="button" class="small cancel-one" onClick=${() => onCancel(t)}>Cancel</button>`}</td>
  </tr>`;
}

/**
 * Marks the moment the first rows of this page load are on screen, as the performance
 * entry `timers-rendered` (read by the dashboard benchmark; effects run after the paint).
 */
function markRendered() {
  if (renderedMarked) return;
  renderedMarked = true;
  performance.mark("timers-rendered");
}

const TIMERS_HEAD = html`<tr><th class="c-check"></th><th class="c-name">Name</th><th class="c-status">Status</th><th class="c-time">Fires</th><th>Labels</th><th class="c-act"></th></tr>`;

export function Timers() {
  const loc = useLocation();
  const search = loc.includes("?") ? loc.slice(loc.indexOf("?")) : "";
  const f = readFilters(search);
  const key = JSON.stringify(f);
  const [rows, setRows] = useState([]);
  const [next, setNext] = useState(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const [ask, setAsk] = useState(null);
  const [scanned, setScanned] = useState(0);
  const [capped, setCapped] = useState(false);
  const loadedAt = useRef(Date.now());
  /** The load in flight, so scrolling does not ask for the same page twice. */
  const inFlight = useRef(false);
  /** Raised by a filter change: an answer to an older filter is dropped. */
  const generation = useRef(0);
  /** Live events held while the first page is fetched (see `Held` in util.js). */
  const held = useRef(null);
  if (!held.current) held.current = new Held();

  /** One live event (or a create of this tab) applied to the rows. */
  const applyEvent = (old, ev, nextCursor) => {
    const t = ev.timer;
    const i = old.findIndex((o) => o.id === t.id);
    if (i >= 0) {
      const merged = mergeTimer(old, t);
      // Fired early (or moved), a timer has a new fire time and so a new place.
      if (merged === old || old[i].fireAt === t.fireAt) return merged;
      return insertSorted([...old.slice(0, i), ...old.slice(i + 1)], t, nextCursor);
    }
    const recent = new Date(ev.occurredAt).getTime() >= loadedAt.current - 5000;
    if (ev.type !== "timer.scheduled" || !recent || !apiMatch(f, t) || !clientMatch(f, t)) return old;
    return insertSorted(old, t, nextCursor);
  };

  const load = async (cursor) => {
    if (inFlight.current) return;
    inFlight.current = true;
    const gen = generation.current;
    setLoading(true);
    setError(null);
    try {
      if (f.q && UUID_RE.test(f.q.trim())) {
        let t = null;
        try {
          t = await api("GET", `/timers/${f.q.trim()}`);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        setRows(t && apiMatch(f, t) && clientMatch({ ...f, q: "" }, t) ? [t] : []);
        setNext(null);
      } else {
        if (!cursor) held.current.start();
        const r = await scan(f, cursor, PAGE_ROWS);
        if (gen !== generation.current) return;
        const late = cursor ? null : held.current.take();
        if (late?.overflowed) setNotice(OVERFLOW_NOTICE);
        setRows((old) => {
          if (late) return late.events.reduce((rows, ev) => applyEvent(rows, ev, r.next), r.rows);
          const have = new Set(old.map((o) => o.id));
          const all = [...old, ...r.rows.filter((t) => !have.has(t.id))];
          return all.length > MAX_ROWS ? all.slice(0, MAX_ROWS) : all;
        });
        setNext(r.next);
        setScanned((s) => (cursor ? s + r.scanned : r.scanned));
      }
      if (!cursor) loadedAt.current = Date.now();
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
    setRows([]);
    setCapped(false);
    inFlight.current = false;
    load(null);
  }, [key]);
  useEffect(() => {
    if (!loading) markRendered();
  }, [loading]);
  const atCap = rows.length >= MAX_ROWS;
  useEffect(() => {
    if (atCap && next) setCapped(true);
  }, [atCap, next]);
  const nearEnd = useCallback(() => {
    if (next && !inFlight.current && rows.length < MAX_ROWS) load(next);
  }, [next, rows.length, key]);

  /** An event, or a timer this tab created, shown at once and held while a page loads. */
  const live = (ev) => {
    held.current.hold(ev);
    setRows((old) => applyEvent(old, ev, next));
  };
  useEvents(
    (ev) => {
      if (ev.timer) live(ev);
    },
    [key, next],
  );

  const toggle = (id) => {
    const s = new Set(selected);
    s.has(id) ? s.delete(id) : s.add(id);
    setSelected(s);
  };
  const cancelOne = async (t) => {
    try {
      const c = await api("POST", `/timers/${t.id}/cancel`, { reason: "cancelled from the dashboard" });
      setRows((old) => mergeTimer(old, c));
    } catch (e) {
      setError(e);
    }
  };
  const cancelIds = async (ids) => {
    const r = await each(ids, async (id) => {
      const c = await api("POST", `/timers/${id}/cancel`, { reason: "cancelled from the dashboard" });
      setRows((old) => mergeTimer(old, c));
    });
    setSelected(new Set());
    setNotice(`Cancelled ${r.ok} timer${r.ok === 1 ? "" : "s"}${r.failed.length ? `; ${r.failed.length} could not be cancelled (${r.failed[0].error.message})` : ""}.`);
  };
  const cancelSelected = () => {
    const ids = [...selected];
    setAsk({ text: `Cancel the ${ids.length} selected timer${ids.length === 1 ? "" : "s"}?`, confirm: `Cancel ${ids.length}`, run: () => cancelIds(ids) });
  };
  const cancelMatching = async () => {
    if (f.status && f.status !== "scheduled") {
      setNotice("Only scheduled timers can be cancelled; none match this filter.");
      return;
    }
    setNotice("Counting the matching scheduled timers…");
    try {
      const r = await scan(f, null, MAX_BULK, Infinity, { status: "scheduled", idsOnly: true });
      const ids = r.rows;
      setNotice(null);
      if (!ids.length) {
        setNotice("No scheduled timer matches this filter.");
        return;
      }
      setAsk({ text: `Cancel all ${ids.length} scheduled timer${ids.length === 1 ? "" : "s"} matching this filter?`, confirm: `Cancel ${ids.length}`, run: () => cancelIds(ids) });
    } catch (e) {
      setNotice(null);
      setError(e);
    }
  };
  const created = (t) => {
    setNotice(html`Created <${Link} href=${`/ui/timers/${t.id}`}>${t.name}<//>.`);
    live({ type: "timer.scheduled", timer: t, occurredAt: new Date().toISOString() });
  };

  return html`<section id="timers">
    <h1>Timers</h1>
    <${CreateForm} onCreated=${created} />
    <${Filters} f=${f} />
    <div class="toolbar">
      <button type="button" id="cancel-selected" disabled=${!selected.size} onClick=${cancelSelected}>Cancel selected (${selected.size})</button>
      <button type="button" id="cancel-matching" onClick=${cancelMatching}>Cancel all matching…</button>
      <span class="muted small" id="rows-count">${rows.length} loaded${needsScan(f) && scanned ? `, ${scanned} read` : ""}${next && !capped ? ", more below" : ""}</span>
    </div>
    ${notice && html`<p class="notice" id="notice">${notice}</p>`}
    <${ErrorText} error=${error} />
    ${capped && html`<p class="notice" id="rows-capped">This page keeps the first ${MAX_ROWS.toLocaleString()} matching timers; narrow the filter (status, label, name, time range) to see the others.</p>`}
    <${VirtualTable} id="timers-table" cols=${6} head=${TIMERS_HEAD} rows=${rows} onNearEnd=${nearEnd}
      renderRow=${(t) => html`<${Row} key=${t.id} t=${t} selected=${selected.has(t.id)} onToggle=${toggle} onCancel=${cancelOne} />`} />
    ${!loading && !rows.length && html`<p class="empty" id="no-timers">No timer matches.</p>`}
    ${loading && html`<p class="muted">Loading…</p>`}
    <${Confirm} ask=${ask} onClose=${() => setAsk(null)} />
  </section>`;
}

/**
 * Inserts `t` in fire-time order, unless it falls after the loaded pages; at MAX_ROWS the
 * last row gives way (the page has stopped fetching by then).
 */
function insertSorted(rows, t, next) {
  const at = Date.parse(t.fireAt);
  // Rows are in fire-time order: a binary search finds the first one due later.
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (Date.parse(rows[mid].fireAt) > at) hi = mid;
    else lo = mid + 1;
  }
  if (lo === rows.length && next) return rows;
  const out = [...rows.slice(0, lo), t, ...rows.slice(lo)];
  return out.length > MAX_ROWS ? out.slice(0, MAX_ROWS) : out;
}
