// Sign-in: the API key is exchanged once for an HttpOnly session cookie (POST
// /ui/session) and is not kept anywhere by the page.
import { html, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, setCsrfToken } from "./api.js";
import { ErrorText } from "./util.js";

export function SignIn({ onSignedIn }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await api("POST", "/ui/session", { apiKey: key.trim() }, { quiet401: true });
      setCsrfToken(r.csrfToken);
      setKey("");
      await onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form class="card" id="sign-in" onSubmit=${submit}>
      <h1>MINOOTS</h1>
      <p class="muted">Sign in with an API key. The key is exchanged for a session cookie and is not stored by this page.</p>
      <label for="api-key">API key</label>
      <input id="api-key" type="password" autocomplete="off" spellcheck="false" required
        value=${key} onInput=${(e) => setKey(e.target.value)} placeholder="mnt_…" />
      <button type="submit" class="primary" disabled=${busy}>Sign in</button>
      <${ErrorText} error=${error} />
      <p class="muted small"><a href="/docs">API docs</a></p>
    </form>
  </main>`;
}
