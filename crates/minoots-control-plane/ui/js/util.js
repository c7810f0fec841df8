// Small shared pieces: the router, links, time formatting, status badges, the
// confirmation dialog.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";

const routeListeners = new Set();

/** Goes to `url` (a path under /ui with its query) without reloading. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  routeListeners.forEach((fn) => fn());
}

/** The current location (path and query), re-rendering on navigation. */
export function useLocation() {
  const [loc, setLoc] = useState(() => location.pathname + location.search);
  useEffect(() => {
    const update = () => setLoc(location.pathname + location.search);
    routeListeners.add(update);
    addEventListener("popstate", update);
    return () => {
      routeListeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

/** An in-app link: navigates without a reload (a modified click opens a new tab). */
export function Link({ href, children, ...rest }) {
  const click = (e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { hour12: false });
}

/** "in 3 min" / "5 s ago" relative to now. */
export function relTime(iso) {
  if (!iso) return "";
  const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const a = Math.abs(s);
  const v = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `in ${v}` : `${v} ago`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function Status({ status }) {
  return html`<span class=${`status status-${status}`}>${status}</span>`;
}

export function Labels({ labels }) {
  const entries = Object.entries(labels || {});
  return html`${entries.map(([k, v]) => html`<span class="label" key=${k}>${k}:${v}</span>`)}`;
}

export function ErrorText({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

/**
 * A modal confirmation: `ask` is `{text, confirm, run}` or null; Escape or Cancel closes
 * it.
 */
export function Confirm({ ask, onClose }) {
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    const key = (e) => e.key === "Escape" && !busy && onClose();
    addEventListener("keydown", key);
    return () => removeEventListener("keydown", key);
  }, [busy]);
  if (!ask) return null;
  const go = async () => {
    setBusy(true);
    try {
      await ask.run();
    } finally {
      setBusy(false);
      onClose();
    }
  };
  return html`<div class="modal-backdrop">
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-text">
      <p id="confirm-text">${ask.text}</p>
      <div class="actions">
        <button type="button" class="danger" id="confirm-yes" disabled=${busy} onClick=${go}>${ask.confirm}</button>
        <button type="button" id="confirm-no" disabled=${busy} onClick=${onClose}>Cancel</button>
      </div>
    </div>
  </div>`;
}

/** Parses "team=ops, env=prod" (or team:ops) into a label map; throws with a sentence. */
export function parseLabels(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = part.match(/^([^=:]+)[=:](.*)$/);
    if (!m) throw new Error(`the label "${part}" needs a key and a value, like team=ops`);
    out[m[1].trim()] = m[2].trim();
  }
  return out;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `rows` with `t` in place of the row of the same id when `t` is at least as new (every
 * state change raises a timer's version, so an answer that arrives after a later event
 * does not undo it).
 */
export function mergeTimer(rows, t) {
  const i = rows.findIndex((o) => o.id === t.id);
  if (i < 0 || rows[i].version > t.version || rows[i] === t) return rows;
  if (rows[i].version === t.version && rows[i].status === t.status) return rows;
  const copy = rows.slice();
  copy[i] = t;
  return copy;
}

/** The most live events a list holds while its first page loads. */
export const MAX_HELD_EVENTS = 10000;
export const OVERFLOW_NOTICE = "More live updates arrived while the list loaded than it holds; reload the page to see every change.";

/**
 * Live events that arrive while a list's first page is fetched. The server reads the page
 * at some moment during the fetch, so such an event may be newer than the page: applied
 * only to the rows shown before the answer, it would be lost when the answer replaces
 * them. The list holds them and applies them again to the page it receives (applying an
 * event twice changes nothing: a timer's newer version wins and a row is added once).
 */
export class Held {
  constructor() {
    this.events = null;
    this.overflowed = false;
  }

  /** Starts holding (a first page is about to be fetched). */
  start() {
    this.events = [];
    this.overflowed = false;
  }

  hold(ev) {
    if (!this.events) return;
    if (this.events.length < MAX_HELD_EVENTS) this.events.push(ev);
    else this.overflowed = true;
  }

  /** Stops holding, and returns what was held. */
  take() {
    const out = { events: this.events || [], overflowed: this.overflowed };
    this.events = null;
    this.overflowed = false;
    return out;
  }
}
