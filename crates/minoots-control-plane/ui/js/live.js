// The tenant's event stream (GET /events with the session cookie), one EventSource for
// the whole app so moving between pages neither reopens it nor misses an event. It
// resumes after the last sequence number seen (kept for the tab in sessionStorage, and
// sent by the browser as Last-Event-ID when it reconnects by itself). It also counts
// delivery outcomes per minute for the overview, over the events this tab has read.
import { useEffect, useState } from "../vendor/htm-preact-3.1.1.js";

export const EVENT_TYPES = [
  "timer.scheduled", "timer.fired", "timer.settled", "timer.failed", "timer.cancelled",
  "delivery.attempted", "delivery.retrying", "delivery.dead",
];
const SEQ_KEY = "minoots.lastSeq";
/** Minutes of delivery counts kept for the overview's chart. */
const MINUTES_KEPT = 60;
/** Wait before reopening a stream the server closed (401, 503, restart). */
const RECONNECT_MS = 3000;

const listeners = new Set();
const stateListeners = new Set();
/** minute start (ms) → {succeeded, retried, dead} */
export const perMinute = new Map();
let source = null;
let state = "off"; // off | connecting | live | reconnecting | paused
let wanted = false;
let paused = false;
let retryTimer = null;

function setState(s) {
  state = s;
  stateListeners.forEach((fn) => fn(s));
}

function lastSeq() {
  return Number(sessionStorage.getItem(SEQ_KEY) || 0);
}

function count(ev) {
  let kind = null;
  if (ev.type === "delivery.attempted" && ev.data && ev.data.outcome === "succeeded") kind = "succeeded";
  else if (ev.type === "delivery.retrying") kind = "retried";
  else if (ev.type === "delivery.dead") kind = "dead";
  if (!kind) return;
  const at = new Date(ev.occurredAt).getTime();
  const minute = at - (at % 60000);
  if (minute < Date.now() - MINUTES_KEPT * 60000) return;
  const b = perMinute.get(minute) || { succeeded: 0, retried: 0, dead: 0 };
  b[kind] += 1;
  perMinute.set(minute, b);
  for (const k of perMinute.keys()) if (k < Date.now() - MINUTES_KEPT * 60000) perMinute.delete(k);
}

function onMessage(e) {
  let ev;
  try {
    ev = JSON.parse(e.data);
  } catch {
    return;
  }
  if (ev.seq) sessionStorage.setItem(SEQ_KEY, String(ev.seq));
  count(ev);
  listeners.forEach((fn) => fn(ev));
}

function open() {
  clearTimeout(retryTimer);
  if (source || !wanted || paused) return;
  const seq = lastSeq();
  source = new EventSource(`/events${seq ? `?after=${seq}` : ""}`);
  setState("connecting");
  source.onopen = () => setState("live");
  source.onerror = () => {
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setState("reconnecting");
      retryTimer = setTimeout(open, RECONNECT_MS);
    } else {
      setState("reconnecting");
    }
  };
  for (const t of EVENT_TYPES) source.addEventListener(t, onMessage);
}

function close() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
}

/** Opens the stream (after sign-in). */
export function start() {
  wanted = true;
  open();
}

/** Closes the stream and forgets the tab's position (at sign-out). */
export function stop() {
  wanted = false;
  close();
  sessionStorage.removeItem(SEQ_KEY);
  perMinute.clear();
  setState("off");
}

export function pause() {
  paused = true;
  close();
  setState("paused");
}

export function resume() {
  paused = false;
  open();
}

/** Calls `fn(event)` for each event while the component is mounted. */
export function useEvents(fn, deps = []) {
  useEffect(() => {
    listeners.add(fn);
    return () => listeners.delete(fn);
  }, deps);
}

/** The stream's state: off, connecting, live, reconnecting or paused. */
export function useLiveState() {
  const [s, setS] = useState(state);
  useEffect(() => {
    stateListeners.add(setS);
    setS(state);
    return () => stateListeners.delete(setS);
  }, []);
  return s;
}

// A page kept in the back/forward cache would keep its stream, and with it one of the
// browser's six connections to this server: close it when the page is hidden, reopen
// it (resuming after the last event) if the page comes back.
addEventListener("pagehide", () => close());
addEventListener("pageshow", (e) => {
  if (e.persisted) open();
});
