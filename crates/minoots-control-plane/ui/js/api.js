// The REST API as the dashboard calls it: same-origin fetches that carry the session
// cookie, with the CSRF token on every write. Errors become ApiError, whose message is
// the API's own sentence (problem+json `detail`, then each field's message).

let csrfToken = null;
let onUnauthorized = () => {};

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Called when a request answers 401 (the session ended or was revoked). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, problem, text) {
    super(sentence(status, problem, text));
    this.status = status;
    this.problem = problem;
  }
}

function sentence(status, problem, text) {
  if (problem && typeof problem === "object") {
    const parts = problem.detail ? [problem.detail] : [];
    for (const e of problem.errors || []) {
      // A field's message that repeats the detail and adds advice replaces it.
      const i = parts.findIndex((p) => e.message.includes(p));
      if (i >= 0) parts[i] = e.message;
      else if (!parts.some((p) => p.includes(e.message))) parts.push(`${e.field}: ${e.message}`);
    }
    if (parts.length) return parts.join(" ");
    if (problem.title) return problem.title;
  }
  return text ? `${status}: ${text.slice(0, 200)}` : `the server answered ${status}`;
}

/** Sends `method path` with an optional JSON body; returns the parsed answer. */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let r;
  try {
    r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    throw new ApiError(0, null, `the server could not be reached (${e.message})`);
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    if (r.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(r.status, data, text);
  }
  return data;
}

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight; returns
 * `{ok, failed: [{item, error}]}`. Used for bulk actions, which the API offers one
 * object at a time.
 */
export async function each(items, fn, limit = 4, onProgress = () => {}) {
  let next = 0;
  let done = 0;
  const failed = [];
  async function worker() {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (error) {
        failed.push({ item, error });
      }
      onProgress(++done, items.length);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return { ok: items.length - failed.length, failed };
}
