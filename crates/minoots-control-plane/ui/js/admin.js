// Admin (role `admin`): tenants with their tiers, and API keys — create (the plaintext is
// shown once, here, and never again), revoke.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api, qs } from "./api.js";
import { Confirm, ErrorText, fmtTime } from "./util.js";

const ROLES = ["timers:read", "timers:write", "admin"];

/** The tier names this server knows, from its OpenAPI document. */
async function tierNames() {
  const doc = await api("GET", "/openapi.json");
  const e = doc?.components?.schemas?.TenantPatch?.properties?.tier?.enum || [];
  return e.filter((t) => t !== null);
}

function Tenants({ tiers, tenants, reload, selected, onSelect }) {
  const [v, setV] = useState({ id: "", name: "", tier: "free" });
  const [error, setError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await api("POST", "/admin/tenants", { id: v.id.trim(), name: v.name.trim() || undefined, tier: v.tier });
      setV({ ...v, id: "", name: "" });
      await reload();
    } catch (err) {
      setError(err);
    }
  };
  const setTier = async (id, tier) => {
    setError(null);
    try {
      await api("PATCH", `/admin/tenants/${encodeURIComponent(id)}`, { tier });
      await reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<div>
    <h2>Tenants</h2>
    <form class="filters" id="new-tenant" onSubmit=${create}>
      <label>Id <input id="tenant-id" required value=${v.id} onInput=${(e) => setV({ ...v, id: e.target.value })} /></label>
      <label>Name <input id="tenant-name" value=${v.name} onInput=${(e) => setV({ ...v, name: e.target.value })} /></label>
      <label>Tier <select id="tenant-tier" value=${v.tier} onChange=${(e) => setV({ ...v, tier: e.target.value })}>${tiers.map((t) => html`<option key=${t}>${t}</option>`)}</select></label>
      <button type="submit" class="primary">Create tenant</button>
    </form>
    <${ErrorText} error=${error} />
    <table class="list" id="tenants-table">
      <thead><tr><th>Id</th><th>Name</th><th>Tier</th><th>Created</th><th></th></tr></thead>
      <tbody>${tenants.map((t) => html`<tr key=${t.id} data-tenant-id=${t.id} class=${selected === t.id ? "selected" : ""}>
        <td class="mono">${t.id}</td><td>${t.name}</td>
        <td><select aria-label=${`tier of ${t.id}`} class="tier" value=${t.tier} onChange=${(e) => setTier(t.id, e.target.value)}>${tiers.map((x) => html`<option key=${x}>${x}</option>`)}</select></td>
        <td>${fmtTime(t.createdAt)}</td>
        <td><button type="button" class="small" onClick=${() => onSelect(t.id)}>Keys</button></td>
      </tr>`)}</tbody>
    </table>
  </div>`;
}

function Keys({ tenantId, tenants }) {
  const [keys, setKeys] = useState([]);
  const [v, setV] = useState({ tenantId: tenantId || "", name: "", roles: ["timers:read", "timers:write"] });
  const [shown, setShown] = useState(null);
  const [error, setError] = useState(null);
  const [ask, setAsk] = useState(null);
  const reload = async () => {
    try {
      const r = await api("GET", `/admin/keys${qs({ tenantId, limit: 1000 })}`);
      setKeys(r.keys);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    setV((x) => ({ ...x, tenantId: tenantId || x.tenantId }));
    reload();
  }, [tenantId]);
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const k = await api("POST", "/admin/keys", { tenantId: v.tenantId, name: v.name.trim() || undefined, roles: v.roles });
      setShown(k);
      setV({ ...v, name: "" });
      await reload();
    } catch (err) {
      setError(err);
    }
  };
  const role = (r) => (e) => setV({ ...v, roles: e.target.checked ? [...v.roles, r] : v.roles.filter((x) => x !== r) });
  const revoke = (k) =>
    setAsk({
      text: `Revoke the key "${k.name}" (${k.prefix}…) of ${k.tenantId}? Requests and sessions with it stop at once.`,
      confirm: "Revoke",
      run: async () => {
        try {
          await api("DELETE", `/admin/keys/${k.id}`);
          await reload();
        } catch (err) {
          setError(err);
        }
      },
    });
  return html`<div>
    <h2>API keys${tenantId ? ` of ${tenantId}` : ""}</h2>
    <form class="filters" id="new-key" onSubmit=${create}>
      <label>Tenant <select id="key-tenant" required value=${v.tenantId} onChange=${(e) => setV({ ...v, tenantId: e.target.value })}>
        <option value="">choose…</option>${tenants.map((t) => html`<option key=${t.id} value=${t.id}>${t.id}</option>`)}</select></label>
      <label>Name <input id="key-name" value=${v.name} onInput=${(e) => setV({ ...v, name: e.target.value })} /></label>
      <fieldset class="roles">${ROLES.map((r) => html`<label class="inline" key=${r}><input type="checkbox" checked=${v.roles.includes(r)} onChange=${role(r)} /> ${r}</label>`)}</fieldset>
      <button type="submit" class="primary" id="key-create">Create key</button>
    </form>
    <${ErrorText} error=${error} />
    ${shown && html`<div class="card new-key" id="new-key-shown" role="status">
      <p><strong>New key for ${shown.tenantId}.</strong> Copy it now: it is shown only once.</p>
      <pre class="mono key-text" id="new-key-text">${shown.key}</pre>
      <button type="button" id="new-key-done" onClick=${() => setShown(null)}>I have copied it</button>
    </div>`}
    <table class="list" id="keys-table">
      <thead><tr><th>Name</th><th>Tenant</th><th>Prefix</th><th>Roles</th><th>Created</th><th>Last used</th><th></th></tr></thead>
      <tbody>${keys.map((k) => html`<tr key=${k.id} data-key-id=${k.id} class=${k.revokedAt ? "revoked" : ""}>
        <td>${k.name}</td><td class="mono">${k.tenantId}</td><td class="mono">${k.prefix}…</td><td>${k.roles.join(", ")}</td>
        <td>${fmtTime(k.createdAt)}</td><td>${fmtTime(k.lastUsedAt)}</td>
        <td>${k.revokedAt ? html`<span class="muted">revoked ${fmtTime(k.revokedAt)}</span>` : html`<button type="button" class="small danger revoke" onClick=${() => revoke(k)}>Revoke</button>`}</td>
      </tr>`)}</tbody>
    </table>
    <${Confirm} ask=${ask} onClose=${() => setAsk(null)} />
  </div>`;
}

export function Admin() {
  const [tiers, setTiers] = useState([]);
  const [tenants, setTenants] = useState([]);
  const [selected, setSelected] = useState("");
  const [error, setError] = useState(null);
  const reload = async () => {
    try {
      const r = await api("GET", "/admin/tenants?limit=1000");
      setTenants(r.tenants);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    tierNames().then(setTiers, setError);
    reload();
  }, []);
  return html`<section id="admin">
    <h1>Admin</h1>
    <${ErrorText} error=${error} />
    <${Tenants} tiers=${tiers} tenants=${tenants} reload=${reload} selected=${selected} onSelect=${setSelected} />
    <${Keys} tenantId=${selected} tenants=${tenants} />
  </section>`;
}
