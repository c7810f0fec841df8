// Account: the tenant's plan and its billing — subscription status, period end, the grace
// period after a failed payment, the usage of the current period — with Upgrade (Stripe
// Checkout) and Manage billing (Stripe's customer portal). A server without billing says
// so: tiers are then set by an administrator.
import { html, useEffect, useState } from "../vendor/htm-preact-3.1.1.js";
import { api } from "./api.js";
import { ErrorText } from "./util.js";

/** The tiers that can be bought, in order; the server says which have a price. */
const PAID_TIERS = ["pro", "team", "enterprise"];

function when(t) {
  return t ? new Date(t).toLocaleString(undefined, { hour12: false }) : "—";
}

/** Sends the browser to the Stripe page whose link `path` answers. */
async function goTo(path, body, setError, setBusy) {
  setBusy(true);
  try {
    const { url } = await api("POST", path, body);
    window.location.assign(url);
  } catch (e) {
    setError(e);
    setBusy(false);
  }
}

export function Account({ session }) {
  const [usage, setUsage] = useState(null);
  // undefined: loading; null: billing not configured on this server.
  const [billing, setBilling] = useState(undefined);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const canWrite = session.roles.includes("timers:write") || session.roles.includes("admin");
  useEffect(() => {
    (async () => {
      try {
        setUsage(await api("GET", "/usage"));
      } catch (e) {
        setError(e);
      }
      try {
        setBilling(await api("GET", "/billing"));
      } catch (e) {
        if (e.status === 404) setBilling(null);
        else setError(e);
      }
    })();
  }, []);

  const live = billing && ["active", "trialing", "past_due"].includes(billing.status);
  return html`<section id="account">
    <h1>Account</h1>
    <${ErrorText} error=${error} />
    <table class="kv" id="plan">
      <tbody>
        <tr><th>Tenant</th><td>${session.tenantId}</td></tr>
        <tr><th>Plan</th><td id="plan-tier">${usage ? usage.tier : "…"}</td></tr>
        ${billing && html`
          <tr><th>Subscription</th><td id="plan-status">${billing.status || "none"}${billing.paidTier ? ` (${billing.paidTier})` : ""}</td></tr>
          <tr><th>Current period ends</th><td>${when(billing.currentPeriodEnd)}</td></tr>
          ${billing.graceUntil && html`<tr><th>Payment failed</th><td id="plan-grace" class="warn">
            The plan stays until ${when(billing.graceUntil)}; then the free tier applies. Update the card under Manage billing.</td></tr>`}
          <tr><th>Timers created this period</th><td id="usage-created">${billing.usage.timersCreated.toLocaleString()}</td></tr>
          <tr><th>Successful deliveries this period</th><td id="usage-delivered">${billing.usage.deliveriesSucceeded.toLocaleString()}</td></tr>
          <tr><th>Counted since</th><td>${when(billing.usage.since)}</td></tr>`}
      </tbody>
    </table>
    ${billing === null && html`<p class="muted" id="billing-off">Billing is not configured on this server: an administrator sets your plan.</p>`}
    ${billing && canWrite && html`<p class="actions">
      ${!live && PAID_TIERS.filter((t) => t !== (usage && usage.tier)).map((t) => html`<button type="button" key=${t} id=${`upgrade-${t}`} disabled=${busy}
          onClick=${() => goTo("/billing/checkout", { tier: t }, setError, setBusy)}>Upgrade to ${t}</button>`)}
      ${billing.hasCustomer && html`<button type="button" id="manage-billing" disabled=${busy}
          onClick=${() => goTo("/billing/portal", undefined, setError, setBusy)}>Manage billing</button>`}
    </p>`}
    ${billing && !canWrite && html`<p class="muted">Changing the plan needs a key with the timers:write role.</p>`}
  </section>`;
}
