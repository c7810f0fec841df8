// The dashboard's shell: the session (sign-in state, CSRF token, roles), the header with
// navigation and the live indicator, and the client-side routes under /ui.
import { html, render, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, setCsrfToken, setUnauthorizedHandler } from "./api.js";
import * as live from "./live.js";
import { Link, navigate, useLocation } from "./util.js";
import { SignIn } from "./signin.js";
import { Overview } from "./overview.js";
import { Timers } from "./timers.js";
import { Timer } from "./timer.js";
import { DeadLetters } from "./dead.js";
import { Admin } from "./admin.js";
import { Account } from "./account.js";

/**
 * Set while this browser believes it holds a session. The cookie itself is HttpOnly and
 * cannot be seen from here; this flag only spares a signed-out visitor the 401 of asking.
 */
const SIGNED_IN_HINT = "minoots.signedIn";

function LiveIndicator() {
  const state = useLiveState();
  const label = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", paused: "Paused", off: "Off" }[state];
  const toggle = () => (state === "paused" ? live.resume() : live.pause());
  return html`<span class="live">
    <span id="live-state" class=${`live-dot live-${state}`} title="Event stream: ${label}">${label}</span>
    <button type="button" class="link" id="live-toggle" onClick=${toggle}>${state === "paused" ? "Resume" : "Pause"}</button>
  </span>`;
}
const useLiveState = live.useLiveState;

function Header({ session, onSignOut, path }) {
  const isAdmin = session.roles.includes("admin");
  const nav = [
    ["/ui", "Overview", (p) => p === "/ui" || p === "/ui/"],
    ["/ui/timers", "Timers", (p) => p.startsWith("/ui/timers")],
    ["/ui/dead", "Dead letters", (p) => p.startsWith("/ui/dead")],
    ["/ui/account", "Account", (p) => p.startsWith("/ui/account")],
    ...(isAdmin ? [["/ui/admin", "Admin", (p) => p.startsWith("/ui/admin")]] : []),
  ];
  return html`<header class="top">
    <${Link} href="/ui" class="brand">MINOOTS<//>
    <nav>
      ${nav.map(([href, text, active]) => html`<${Link} key=${href} href=${href} class=${active(path) ? "active" : ""}>${text}<//>`)}
      <a href="/docs">API docs</a>
      <a href="/metrics">Metrics</a>
    </nav>
    <${LiveIndicator} />
    <span class="who" id="who" title=${`roles: ${session.roles.join(", ")}`}>${session.tenantId} · ${session.keyName}</span>
    <button type="button" id="sign-out" onClick=${onSignOut}>Sign out</button>
  </header>`;
}

function NotFound() {
  return html`<section><h1>Not found</h1><p>There is no such page. <${Link} href="/ui">Go to the overview<//>.</p></section>`;
}

function Page({ path, session }) {
  const isAdmin = session.roles.includes("admin");
  if (path === "/ui" || path === "/ui/") return html`<${Overview} session=${session} />`;
  if (path === "/ui/timers") return html`<${Timers} session=${session} />`;
  const m = path.match(/^\/ui\/timers\/([^/]+)$/);
  if (m) return html`<${Timer} key=${m[1]} id=${decodeURIComponent(m[1])} />`;
  if (path === "/ui/dead") return html`<${DeadLetters} />`;
  if (path === "/ui/account") return html`<${Account} session=${session} />`;
  if (path === "/ui/admin" && isAdmin) return html`<${Admin} />`;
  return html`<${NotFound} />`;
}

function App() {
  const loc = useLocation();
  const path = loc.split("?")[0];
  // undefined: still asking; null: signed out.
  const [session, setSession] = useState(undefined);

  const signedOut = () => {
    localStorage.removeItem(SIGNED_IN_HINT);
    setCsrfToken(null);
    live.stop();
    setSession(null);
  };
  const load = async () => {
    try {
      const s = await api("GET", "/ui/session", undefined, { quiet401: true });
      setCsrfToken(s.csrfToken);
      localStorage.setItem(SIGNED_IN_HINT, "1");
      live.start();
      setSession(s);
    } catch {
      signedOut();
    }
  };
  useEffect(() => {
    setUnauthorizedHandler(signedOut);
    if (localStorage.getItem(SIGNED_IN_HINT)) load();
    else setSession(null);
  }, []);
  useEffect(() => {
    document.title = session ? `MINOOTS · ${session.tenantId}` : "MINOOTS";
  }, [session]);

  const signOut = async () => {
    try {
      await api("DELETE", "/ui/session", undefined, { quiet401: true });
    } catch {
      // Signed out either way.
    }
    signedOut();
    navigate("/ui");
  };

  if (session === undefined) return html`<p class="boot">Loading…</p>`;
  if (session === null) return html`<${SignIn} onSignedIn=${load} />`;
  return html`<${Header} session=${session} onSignOut=${signOut} path=${path} />
    <main><${Page} path=${path} session=${session} /></main>`;
}

render(html`<${App} />`, document.getElementById("app"));
