//! Dashboard sessions, for [`Kernel`]'s [`KernelApi`](minoots_kernel_api::KernelApi)
//! methods: a session is opened for a key the control plane authenticated, found by the
//! hash of its token on every request, and used only while it has not expired and its key
//! is live. Sessions are never cached: one read of the store per request finds the
//! session, its key and its tenant together, so a sign-out, a revocation or an expiry made
//! through any kernel of the store applies to the very next request. Caps are
//! [`MAX_UI_SESSIONS_PER_KEY`] and [`MAX_UI_SESSIONS`].

use minoots_kernel_api::api::{
    MAX_UI_SESSION_TTL, MAX_UI_SESSIONS, MAX_UI_SESSIONS_PER_KEY, MIN_UI_SESSION_TTL, NewUiSession,
};
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::{UiSession, UiSessionGrant};

use super::Kernel;
use crate::admin::{self, key_is_live};
use crate::error::from_store;

pub(super) async fn create_ui_session(
    kernel: &Kernel,
    new: NewUiSession,
) -> KernelResult<UiSession> {
    admin::check_tenant_id(&new.tenant_id)?;
    if new.key_id.is_empty() || new.key_id.len() > minoots_kernel_api::api::MAX_KEY_ID_BYTES {
        return Err(KernelError::invalid("keyId", "must be a key id"));
    }
    let (min, max) = (
        MIN_UI_SESSION_TTL.as_millis() as u64,
        MAX_UI_SESSION_TTL.as_millis() as u64,
    );
    if !(min..=max).contains(&new.ttl_ms) {
        return Err(KernelError::invalid(
            "ttlMs",
            format!("must be between {min} and {max}"),
        ));
    }
    let now = kernel.clock.now_us();
    let mut expires = now.saturating_add(new.ttl_ms as i64 * 1_000);
    if let Some(key_expiry) = new.key_expires_at_us {
        expires = expires.min(key_expiry);
    }
    let session = UiSession {
        token_hash: new.token_hash,
        key_id: new.key_id,
        tenant_id: new.tenant_id,
        created_at_us: now,
        expires_at_us: expires,
    };
    let stored = kernel
        .store
        .create_ui_session(session.clone(), MAX_UI_SESSIONS_PER_KEY, MAX_UI_SESSIONS)
        .await
        .map_err(from_store)?;
    if !stored {
        return Err(KernelError::Unavailable(format!(
            "the server holds its maximum of {MAX_UI_SESSIONS} dashboard sessions; sign-in works again as sessions end or expire, and API keys keep working meanwhile"
        )));
    }
    Ok(session)
}

pub(super) async fn ui_session(
    kernel: &Kernel,
    token_hash: [u8; 32],
) -> KernelResult<Option<UiSessionGrant>> {
    let found = kernel
        .store
        .ui_session(token_hash)
        .await
        .map_err(from_store)?;
    let now = kernel.clock.now_us();
    Ok(found
        .filter(|g| usable(g, now))
        .inspect(|g| kernel.keys.touch(&g.key.id, now)))
}

/// True when the session may act at `now_us`: not expired, its key live, and the key
/// still of the tenant the session was opened for.
fn usable(g: &UiSessionGrant, now_us: i64) -> bool {
    now_us < g.session.expires_at_us
        && key_is_live(&g.key, now_us)
        && g.key.tenant_id == g.session.tenant_id
        && g.tenant.id == g.session.tenant_id
}

pub(super) async fn end_ui_session(kernel: &Kernel, token_hash: [u8; 32]) -> KernelResult<bool> {
    kernel
        .store
        .end_ui_session(token_hash)
        .await
        .map_err(from_store)
}

#[cfg(test)]
mod tests {
    use minoots_store::{ApiKey, Tenant};

    use super::*;

    #[test]
    fn a_session_acts_only_while_it_and_its_key_are_live() {
        let grant = UiSessionGrant {
            session: UiSession {
                token_hash: [1; 32],
                key_id: "k".into(),
                tenant_id: "acme".into(),
                created_at_us: 0,
                expires_at_us: 100,
            },
            key: ApiKey {
                id: "k".into(),
                tenant_id: "acme".into(),
                name: "n".into(),
                key_hash: [2; 32],
                prefix: "mnt_".into(),
                roles: vec!["timers:read".into()],
                created_at_us: 0,
                expires_at_us: Some(50),
                revoked_at_us: None,
                last_used_at_us: None,
            },
            tenant: Tenant {
                id: "acme".into(),
                name: "Acme".into(),
                tier: "free".into(),
                created_at_us: 0,
                updated_at_us: 0,
            },
        };
        assert!(usable(&grant, 49));
        assert!(!usable(&grant, 50), "the key expired first");
        let mut no_key_expiry = grant.clone();
        no_key_expiry.key.expires_at_us = None;
        assert!(usable(&no_key_expiry, 99));
        assert!(!usable(&no_key_expiry, 100), "expiry is exclusive");
        let mut revoked = no_key_expiry.clone();
        revoked.key.revoked_at_us = Some(10);
        assert!(!usable(&revoked, 11));
        let mut moved = no_key_expiry;
        moved.key.tenant_id = "other".into();
        assert!(!usable(&moved, 1));
    }
}
