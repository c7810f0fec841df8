//! The gRPC client of the kernel: the second implementation of [`KernelApi`], used by the
//! control plane and the orchestrator when they run as separate processes.

use std::time::Duration;

use async_trait::async_trait;
use minoots_core::billing::{BillingApplied, BillingEvent, BillingState, GraceSweep, MeterUsage};
use minoots_core::records::{
    ApiKey, AttemptReport, DeliveryActivity, DeliveryWithAttempts, EventQuery, LeaseRenewal,
    LeasedDelivery, ReportOutcome, Tenant, TenantUpdate, TenantUsage, TimerCounts, TimerPage,
    TimerQuery, UiSession, UiSessionGrant,
};
use minoots_core::schedule::{Schedule, ScheduleFilter, ScheduleRequest, ScheduleRun};
use minoots_core::{DeliveryId, Event, ScheduleId, Timer, TimerId, TimerPatch, TimerRequest};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::billing;
use super::convert::*;
use super::dashboard::{activity_of, counts_of};
use super::schedules::{change_pb, changed_of, run_of, schedule_of};
use super::sessions::{grant_of, new_session_pb, session_of};
use super::{from_status, pb};
use crate::api::{
    BoxStream, KernelApi, LeaseRequest, NewTenant, NewUiSession, RenewLeasesRequest,
    ScheduleChange, ScheduleChanged, ScheduleOutcome, ScheduleQuotas, TenantQuotas,
};
use crate::error::{KernelError, KernelResult};

/// How long a unary call may take before the caller is told the kernel is unavailable.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct GrpcKernelClient {
    client: pb::horology_kernel_client::HorologyKernelClient<Channel>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    call_timeout: Duration,
}

impl GrpcKernelClient {
    /// A client for the kernel at `url` (`http://127.0.0.1:50051`). Connects lazily, so it
    /// can be created before the kernel is up; calls fail with `Unavailable` until it is.
    pub fn connect_lazy(url: &str, token: Option<&str>) -> KernelResult<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| KernelError::invalid("kernelUrl", format!("\"{url}\" is not a URL: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20));
        let authorization = match token.filter(|t| !t.is_empty()) {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| KernelError::invalid("kernelToken", "must be printable ASCII"))?,
            ),
            None => None,
        };
        let client = pb::horology_kernel_client::HorologyKernelClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
        Ok(Self {
            client,
            authorization,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn unary<T>(&self, msg: T) -> Request<T> {
        let mut r = self.streaming(msg);
        r.set_timeout(self.call_timeout);
        r
    }

    fn streaming<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(a) = &self.authorization {
            r.metadata_mut().insert("authorization", a.clone());
        }
        r
    }
}

fn err(s: Status) -> KernelError {
    from_status(s)
}

#[async_trait]
impl KernelApi for GrpcKernelClient {
    async fn schedule_timer_with(
        &self,
        tenant_id: &str,
        request: TimerRequest,
        quotas: TenantQuotas,
    ) -> KernelResult<ScheduleOutcome> {
        let msg = schedule_request_pb(tenant_id, request, quotas);
        let r = self
            .client
            .clone()
            .schedule_timer(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        let timer = timer_of(
            r.timer
                .ok_or_else(|| KernelError::Internal("response without timer".into()))?,
        )?;
        Ok(ScheduleOutcome {
            timer,
            created: r.created,
        })
    }

    async fn get_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        let msg = pb::GetTimerRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
        };
        timer_of(
            self.client
                .clone()
                .get_timer(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn list_timers(&self, query: TimerQuery) -> KernelResult<TimerPage> {
        let r = self
            .client
            .clone()
            .list_timers(self.unary(list_request_pb(&query)))
            .await
            .map_err(err)?
            .into_inner();
        let next = if r.next_page_token.is_empty() {
            None
        } else {
            Some(
                minoots_core::records::DueTimer::decode_cursor(&r.next_page_token).ok_or_else(
                    || KernelError::Internal("bad page token from the kernel".into()),
                )?,
            )
        };
        Ok(TimerPage {
            timers: r
                .timers
                .into_iter()
                .map(timer_of)
                .collect::<KernelResult<_>>()?,
            next,
        })
    }

    async fn cancel_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        reason: Option<String>,
    ) -> KernelResult<Timer> {
        let msg = pb::CancelTimerRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
            reason,
        };
        timer_of(
            self.client
                .clone()
                .cancel_timer(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn update_timer(
        &self,
        tenant_id: &str,
        id: TimerId,
        patch: TimerPatch,
    ) -> KernelResult<Timer> {
        let msg = super::patch::update_request_pb(tenant_id, id, patch);
        timer_of(
            self.client
                .clone()
                .update_timer(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn create_schedule(
        &self,
        tenant_id: &str,
        request: ScheduleRequest,
        quotas: ScheduleQuotas,
    ) -> KernelResult<Schedule> {
        let request_json = serde_json::to_string(&request)
            .map_err(|e| KernelError::Internal(format!("cannot encode a schedule request: {e}")))?;
        let msg = pb::CreateScheduleRequest {
            tenant_id: tenant_id.to_string(),
            request_json,
            max_schedules: quotas.max_schedules,
            min_interval_ms: quotas.min_interval_ms,
        };
        schedule_of(
            self.client
                .clone()
                .create_schedule(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn get_schedule(&self, tenant_id: &str, id: ScheduleId) -> KernelResult<Schedule> {
        let msg = pb::GetScheduleRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
        };
        schedule_of(
            self.client
                .clone()
                .get_schedule(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn list_schedules(
        &self,
        tenant_id: &str,
        filter: &ScheduleFilter,
        after: Option<ScheduleId>,
        limit: usize,
    ) -> KernelResult<Vec<Schedule>> {
        let (label_key, label_value) = filter.label.clone().unzip();
        let msg = pb::ListSchedulesRequest {
            tenant_id: tenant_id.to_string(),
            after: after.map(|a| a.to_string()),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            status: filter.status.map(|s| s.as_str().to_string()),
            label_key,
            label_value,
        };
        self.client
            .clone()
            .list_schedules(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner()
            .schedules
            .into_iter()
            .map(schedule_of)
            .collect()
    }

    async fn list_schedule_runs(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        after_us: Option<i64>,
        limit: usize,
    ) -> KernelResult<Vec<ScheduleRun>> {
        let msg = pb::ListScheduleRunsRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
            after_us,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        self.client
            .clone()
            .list_schedule_runs(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner()
            .runs
            .into_iter()
            .map(|r| run_of(id, r))
            .collect()
    }

    async fn change_schedule(
        &self,
        tenant_id: &str,
        id: ScheduleId,
        change: ScheduleChange,
        quotas: ScheduleQuotas,
    ) -> KernelResult<ScheduleChanged> {
        let msg = change_pb(tenant_id, id, &change, quotas);
        changed_of(
            self.client
                .clone()
                .change_schedule(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn fire_timer_now(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        let msg = pb::FireTimerNowRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
        };
        timer_of(
            self.client
                .clone()
                .fire_timer_now(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        id: TimerId,
    ) -> KernelResult<Vec<DeliveryWithAttempts>> {
        let msg = pb::ListDeliveriesRequest {
            tenant_id: tenant_id.to_string(),
            timer_id: id.to_string(),
        };
        let r = self
            .client
            .clone()
            .list_deliveries(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        r.deliveries.into_iter().map(delivery_of).collect()
    }

    async fn stream_events(&self, query: EventQuery) -> KernelResult<BoxStream<Event>> {
        let s = self
            .client
            .clone()
            .stream_timer_events(self.streaming(event_query_pb(&query)))
            .await
            .map_err(err)?
            .into_inner();
        Ok(Box::pin(s.map(|r| r.map_err(err).and_then(event_of))))
    }

    async fn lease_deliveries(
        &self,
        request: LeaseRequest,
    ) -> KernelResult<BoxStream<LeasedDelivery>> {
        let msg = pb::LeaseDeliveriesRequest {
            lease_owner: request.lease_owner,
            lease_ttl_ms: request.lease_ttl_ms,
            max_in_flight: request.max_in_flight,
        };
        let s = self
            .client
            .clone()
            .lease_deliveries(self.streaming(msg))
            .await
            .map_err(err)?
            .into_inner();
        Ok(Box::pin(s.map(|r| r.map_err(err).and_then(leased_of))))
    }

    async fn report_attempt(&self, report: AttemptReport) -> KernelResult<ReportOutcome> {
        let r = self
            .client
            .clone()
            .report_attempt(self.unary(report_pb(&report)))
            .await
            .map_err(err)?
            .into_inner();
        report_outcome_of(r)
    }

    async fn renew_leases(&self, request: RenewLeasesRequest) -> KernelResult<LeaseRenewal> {
        let msg = pb::RenewLeasesRequest {
            lease_owner: request.lease_owner,
            lease_ttl_ms: request.lease_ttl_ms,
            leases: request
                .leases
                .iter()
                .map(|(id, attempt)| pb::HeldLease {
                    delivery_id: id.to_string(),
                    attempt: *attempt,
                })
                .collect(),
        };
        let r = self
            .client
            .clone()
            .renew_leases(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        let lost = r
            .lost_delivery_ids
            .iter()
            .map(|id| delivery_id_of(id, "lostDeliveryIds"))
            .collect::<KernelResult<Vec<_>>>()?;
        Ok(LeaseRenewal {
            now_us: r.kernel_now.as_ref().map(us_of).unwrap_or_default(),
            expires_at_us: r.expires_at.as_ref().map(us_of).unwrap_or_default(),
            lost,
        })
    }

    async fn release_delivery(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
    ) -> KernelResult<()> {
        self.release_delivery_after(delivery_id, lease_owner, attempt, 0)
            .await
    }

    async fn release_delivery_after(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
        delay_ms: u32,
    ) -> KernelResult<()> {
        let msg = pb::ReleaseDeliveryRequest {
            delivery_id: delivery_id.to_string(),
            lease_owner: lease_owner.to_string(),
            attempt,
            delay_ms,
        };
        self.client
            .clone()
            .release_delivery(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn redrive_timer(&self, tenant_id: &str, id: TimerId) -> KernelResult<Timer> {
        let msg = pb::RedriveTimerRequest {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
        };
        timer_of(
            self.client
                .clone()
                .redrive_timer(self.unary(msg))
                .await
                .map_err(err)?
                .into_inner(),
        )
    }

    async fn webhook_secrets(&self, tenant_id: &str) -> KernelResult<Vec<String>> {
        let msg = pb::GetWebhookSecretsRequest {
            tenant_id: tenant_id.to_string(),
        };
        Ok(self
            .client
            .clone()
            .get_webhook_secrets(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner()
            .secrets)
    }

    async fn rotate_webhook_secret(&self, tenant_id: &str) -> KernelResult<String> {
        let msg = pb::RotateWebhookSecretRequest {
            tenant_id: tenant_id.to_string(),
        };
        let secrets = self
            .client
            .clone()
            .rotate_webhook_secret(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner()
            .secrets;
        secrets
            .into_iter()
            .next()
            .ok_or_else(|| KernelError::Internal("rotation returned no secret".into()))
    }

    async fn create_tenant(&self, tenant: NewTenant) -> KernelResult<Tenant> {
        let msg = pb::CreateTenantRequest {
            id: tenant.id,
            name: tenant.name,
            tier: tenant.tier,
        };
        let t = self
            .client
            .clone()
            .create_tenant(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(tenant_of(t.into_inner()))
    }

    async fn get_tenant(&self, id: &str) -> KernelResult<Tenant> {
        let msg = pb::GetTenantRequest { id: id.to_string() };
        let t = self
            .client
            .clone()
            .get_tenant(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(tenant_of(t.into_inner()))
    }

    async fn list_tenants(&self, after: Option<String>, limit: usize) -> KernelResult<Vec<Tenant>> {
        let msg = pb::ListTenantsRequest {
            after: after.unwrap_or_default(),
            limit: limit.min(u32::MAX as usize) as u32,
        };
        let r = self
            .client
            .clone()
            .list_tenants(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(r.into_inner().tenants.into_iter().map(tenant_of).collect())
    }

    async fn update_tenant(&self, id: &str, update: TenantUpdate) -> KernelResult<Tenant> {
        let msg = pb::UpdateTenantRequest {
            id: id.to_string(),
            name: update.name,
            tier: update.tier,
        };
        let t = self
            .client
            .clone()
            .update_tenant(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(tenant_of(t.into_inner()))
    }

    async fn create_api_key(&self, key: ApiKey) -> KernelResult<ApiKey> {
        let k = self
            .client
            .clone()
            .create_api_key(self.unary(api_key_pb(&key)))
            .await
            .map_err(err)?;
        api_key_of(k.into_inner())
    }

    async fn authenticate(&self, key_hash: [u8; 32]) -> KernelResult<Option<(ApiKey, Tenant)>> {
        let msg = pb::AuthenticateRequest {
            key_hash: key_hash.to_vec(),
        };
        let r = self
            .client
            .clone()
            .authenticate(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        match (r.key, r.tenant) {
            (Some(k), Some(t)) => Ok(Some((api_key_of(k)?, tenant_of(t)))),
            _ => Ok(None),
        }
    }

    async fn list_api_keys(
        &self,
        tenant_id: Option<String>,
        after: Option<String>,
        limit: usize,
    ) -> KernelResult<Vec<ApiKey>> {
        let msg = pb::ListApiKeysRequest {
            tenant_id: tenant_id.unwrap_or_default(),
            after: after.unwrap_or_default(),
            limit: limit.min(u32::MAX as usize) as u32,
        };
        let r = self
            .client
            .clone()
            .list_api_keys(self.unary(msg))
            .await
            .map_err(err)?;
        r.into_inner().keys.into_iter().map(api_key_of).collect()
    }

    async fn revoke_api_key(&self, id: &str) -> KernelResult<ApiKey> {
        let msg = pb::RevokeApiKeyRequest { id: id.to_string() };
        let k = self
            .client
            .clone()
            .revoke_api_key(self.unary(msg))
            .await
            .map_err(err)?;
        api_key_of(k.into_inner())
    }

    async fn tenant_usage(&self, tenant_id: &str) -> KernelResult<TenantUsage> {
        let msg = pb::GetTenantUsageRequest {
            tenant_id: tenant_id.to_string(),
        };
        let u = self
            .client
            .clone()
            .get_tenant_usage(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        Ok(TenantUsage {
            created_today: u.created_today,
            pending: u.pending,
        })
    }

    async fn create_ui_session(&self, session: NewUiSession) -> KernelResult<UiSession> {
        let s = self
            .client
            .clone()
            .create_ui_session(self.unary(new_session_pb(&session)))
            .await
            .map_err(err)?;
        session_of(s.into_inner())
    }

    async fn ui_session(&self, token_hash: [u8; 32]) -> KernelResult<Option<UiSessionGrant>> {
        let msg = pb::UiSessionRequest {
            token_hash: token_hash.to_vec(),
        };
        let r = self
            .client
            .clone()
            .get_ui_session(self.unary(msg))
            .await
            .map_err(err)?;
        grant_of(r.into_inner())
    }

    async fn end_ui_session(&self, token_hash: [u8; 32]) -> KernelResult<bool> {
        let msg = pb::UiSessionRequest {
            token_hash: token_hash.to_vec(),
        };
        let r = self
            .client
            .clone()
            .end_ui_session(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(r.into_inner().ended)
    }

    async fn timer_counts(&self, tenant_id: &str) -> KernelResult<TimerCounts> {
        let msg = pb::GetTimerCountsRequest {
            tenant_id: tenant_id.to_string(),
        };
        let c = self
            .client
            .clone()
            .get_timer_counts(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(counts_of(c.into_inner()))
    }

    async fn delivery_activity(
        &self,
        tenant_id: &str,
        minutes: u32,
    ) -> KernelResult<DeliveryActivity> {
        let msg = pb::GetDeliveryActivityRequest {
            tenant_id: tenant_id.to_string(),
            minutes,
        };
        let a = self
            .client
            .clone()
            .get_delivery_activity(self.unary(msg))
            .await
            .map_err(err)?;
        Ok(activity_of(a.into_inner()))
    }

    async fn record_billing_event(&self, event: BillingEvent) -> KernelResult<BillingApplied> {
        let r = self
            .client
            .clone()
            .record_billing_event(self.unary(billing::event_pb(&event)))
            .await
            .map_err(err)?
            .into_inner();
        billing::applied_of(r)
    }

    async fn billing_state(&self, tenant_id: &str) -> KernelResult<BillingState> {
        let msg = pb::GetBillingStateRequest {
            tenant_id: tenant_id.to_string(),
        };
        let r = self
            .client
            .clone()
            .get_billing_state(self.unary(msg))
            .await
            .map_err(err)?
            .into_inner();
        billing::state_of(r)
    }

    async fn expire_billing_grace(&self) -> KernelResult<GraceSweep> {
        let r = self
            .client
            .clone()
            .expire_billing_grace(self.unary(pb::ExpireBillingGraceRequest {}))
            .await
            .map_err(err)?
            .into_inner();
        Ok(billing::sweep_of(r))
    }

    async fn meter_usage_ready(&self, limit: u32) -> KernelResult<Vec<MeterUsage>> {
        let r = self
            .client
            .clone()
            .get_meter_usage_ready(self.unary(pb::GetMeterUsageReadyRequest { limit }))
            .await
            .map_err(err)?
            .into_inner();
        Ok(billing::usage_of(r))
    }

    async fn mark_meter_sent(&self, rows: Vec<(String, String, i64)>) -> KernelResult<u64> {
        let r = self
            .client
            .clone()
            .mark_meter_sent(self.unary(billing::keys_pb(&rows)))
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.marked)
    }
}
