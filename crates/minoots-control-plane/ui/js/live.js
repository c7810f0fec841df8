// The tenant's event stream (GET /events with the session cookie), one EventSource for
// the whole app so moving between pages neither reopens it nor misses an event. A tab
// that has seen no event starts from now (`after=latest`: the pages read the present
// from the REST API, so replaying the tenant's whole log would only delay live events);
// afterwards it resumes after the last sequence number seen (kept for the tab in
// sessionStorage, and sent by the browser as Last-Event-ID when it reconnects by itself).
import { useEffect, useState } from "../vendor/htm-preact-3.1.1.js";

export const EVENT_TYPES = [
  "timer.scheduled", "timer.fired", "timer.settled", "timer.failed", "timer.cancelled",
  "delivery.attempted", "delivery.retrying", "delivery.dead",
];
const SEQ_KEY = "minoots.lastSeq";
/** Wait before reopening a stream the server closed (401, 503, restart). */
const RECONNECT_MS = 3000;
/**
 * How often the last sequence number seen is written to sessionStorage: at hundreds of
 * events a second a write per event costs more than the rest of the event's handling.
 * It is also written when the page is hidden or the stream closed.
 */
const SAVE_SEQ_MS = 250;

const listeners = new Set();
const stateListeners = new Set();
let source = null;
let state = "off"; // off | connecting | live | reconnecting | paused
let wanted = false;
let paused = false;
let retryTimer = null;
/** The last sequence number seen, ahead of sessionStorage by up to SAVE_SEQ_MS. */
let seenSeq = 0;
let saveTimer = null;

function setState(s) {
  state = s;
  stateListeners.forEach((fn) => fn(s));
}

function lastSeq() {
  return Math.max(seenSeq, Number(sessionStorage.getItem(SEQ_KEY) || 0));
}

function saveSeq() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (seenSeq) sessionStorage.setItem(SEQ_KEY, String(seenSeq));
}

function onMessage(e) {
  let ev;
  try {
    ev = JSON.parse(e.data);
  } catch {
    return;
  }
  if (ev.seq) {
    seenSeq = ev.seq;
    if (!saveTimer) saveTimer = setTimeout(saveSeq, SAVE_SEQ_MS);
  }
  listeners.forEach((fn) => fn(ev));
}

function open() {
  clearTimeout(retryTimer);
  if (source || !wanted || paused) return;
  const seq = lastSeq();
  source = new EventSource(`/events?after=${seq || "latest"}`);
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
  saveSeq();
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
  seenSeq = 0;
  sessionStorage.removeItem(SEQ_KEY);
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
