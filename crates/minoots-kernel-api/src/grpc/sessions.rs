//! Dashboard sessions over gRPC: the conversions between the core's session records and
//! the `minoots.timer.v1` messages. Only the SHA-256 of a session token crosses the wire.

use minoots_core::records::{UiSession, UiSessionGrant};

use super::convert::{api_key_of, api_key_pb, tenant_of, tenant_pb};
use super::pb;
use crate::api::NewUiSession;
use crate::error::{KernelError, KernelResult};

/// A 32-byte hash from the wire; `field` names it in the refusal.
pub fn hash_of(bytes: &[u8], field: &str) -> KernelResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| KernelError::invalid(field, "must be 32 bytes (a SHA-256)"))
}

pub fn session_pb(s: &UiSession) -> pb::UiSession {
    pb::UiSession {
        token_hash: s.token_hash.to_vec(),
        key_id: s.key_id.clone(),
        tenant_id: s.tenant_id.clone(),
        created_at_us: s.created_at_us,
        expires_at_us: s.expires_at_us,
    }
}

pub fn session_of(s: pb::UiSession) -> KernelResult<UiSession> {
    Ok(UiSession {
        token_hash: hash_of(&s.token_hash, "tokenHash")?,
        key_id: s.key_id,
        tenant_id: s.tenant_id,
        created_at_us: s.created_at_us,
        expires_at_us: s.expires_at_us,
    })
}

pub fn new_session_pb(s: &NewUiSession) -> pb::CreateUiSessionRequest {
    pb::CreateUiSessionRequest {
        token_hash: s.token_hash.to_vec(),
        key_id: s.key_id.clone(),
        tenant_id: s.tenant_id.clone(),
        ttl_ms: s.ttl_ms,
        key_expires_at_us: s.key_expires_at_us,
    }
}

pub fn new_session_of(s: pb::CreateUiSessionRequest) -> KernelResult<NewUiSession> {
    Ok(NewUiSession {
        token_hash: hash_of(&s.token_hash, "tokenHash")?,
        key_id: s.key_id,
        tenant_id: s.tenant_id,
        ttl_ms: s.ttl_ms,
        key_expires_at_us: s.key_expires_at_us,
    })
}

pub fn grant_pb(g: Option<&UiSessionGrant>) -> pb::GetUiSessionResponse {
    match g {
        Some(g) => pb::GetUiSessionResponse {
            session: Some(session_pb(&g.session)),
            key: Some(api_key_pb(&g.key)),
            tenant: Some(tenant_pb(&g.tenant)),
        },
        None => pb::GetUiSessionResponse::default(),
    }
}

pub fn grant_of(r: pb::GetUiSessionResponse) -> KernelResult<Option<UiSessionGrant>> {
    match (r.session, r.key, r.tenant) {
        (Some(s), Some(k), Some(t)) => Ok(Some(UiSessionGrant {
            session: session_of(s)?,
            key: api_key_of(k)?,
            tenant: tenant_of(t),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_and_a_new_session_cross_the_wire_unchanged() {
        let new = NewUiSession {
            token_hash: [7; 32],
            key_id: "key-1".into(),
            tenant_id: "acme".into(),
            ttl_ms: 3_600_000,
            key_expires_at_us: Some(42),
        };
        assert_eq!(new_session_of(new_session_pb(&new)).unwrap(), new);
        let grant = UiSessionGrant {
            session: UiSession {
                token_hash: [7; 32],
                key_id: "key-1".into(),
                tenant_id: "acme".into(),
                created_at_us: 1,
                expires_at_us: 2,
            },
            key: minoots_core::records::ApiKey {
                id: "key-1".into(),
                tenant_id: "acme".into(),
                name: "ui".into(),
                key_hash: [9; 32],
                prefix: "mnt_0123".into(),
                roles: vec!["timers:read".into()],
                created_at_us: 0,
                expires_at_us: None,
                revoked_at_us: None,
                last_used_at_us: None,
            },
            tenant: minoots_core::records::Tenant {
                id: "acme".into(),
                name: "Acme".into(),
                tier: "free".into(),
                created_at_us: 0,
                updated_at_us: 0,
            },
        };
        assert_eq!(grant_of(grant_pb(Some(&grant))).unwrap(), Some(grant));
        assert_eq!(grant_of(grant_pb(None)).unwrap(), None);
        assert!(hash_of(&[1; 31], "tokenHash").is_err());
    }
}
