//! The gRPC server: `minoots.timer.v1.HorologyKernel` over any [`KernelApi`].
//!
//! Refuses to start on a non-loopback address without a token: the kernel trusts the
//! tenant named in each request, so only the control plane and orchestrators may reach it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use minoots_core::ConfigError;
use minoots_core::limits::MAX_PAGE_SIZE;
use minoots_core::records::TenantUpdate;
use minoots_core::schedule::{ScheduleFilter, ScheduleRequest, ScheduleStatus};
use minoots_kernel_api::api::{
    KernelApi, LeaseRequest, NewTenant, RenewLeasesRequest, ScheduleQuotas,
};
use minoots_kernel_api::grpc::billing;
use minoots_kernel_api::grpc::convert::*;
use minoots_kernel_api::grpc::dashboard::{activity_pb, counts_pb};
use minoots_kernel_api::grpc::schedules::{
    change_of, changed_pb, run_pb, schedule_id_of, schedule_pb,
};
use minoots_kernel_api::grpc::sessions::{grant_pb, hash_of, new_session_of, session_pb};
use minoots_kernel_api::grpc::{MAX_MESSAGE_BYTES, pb, to_status};
use minoots_kernel_api::{KernelError, KernelResult};

/// Calls open at once on one connection (event and lease streams stay open).
pub const MAX_CONCURRENT_STREAMS: u32 = 1_024;
/// Shortest kernel token accepted: shorter ones are guessable, not secrets.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct GrpcServerConfig {
    /// Required as `authorization: Bearer <token>` on every call when set; must be set
    /// when listening beyond loopback.
    pub token: Option<String>,
}

struct Service {
    kernel: Arc<dyn KernelApi>,
}

type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::horology_kernel_server::HorologyKernel for Service {
    async fn schedule_timer(
        &self,
        request: Request<pb::ScheduleTimerRequest>,
    ) -> Result<Response<pb::ScheduleTimerResponse>, Status> {
        let (tenant, req, quotas) = schedule_request_of(request.into_inner()).map_err(to_status)?;
        let out = self
            .kernel
            .schedule_timer_with(&tenant, req, quotas)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ScheduleTimerResponse {
            timer: Some(timer_pb(&out.timer)),
            created: out.created,
        }))
    }

    async fn get_timer(
        &self,
        request: Request<pb::GetTimerRequest>,
    ) -> Result<Response<pb::Timer>, Status> {
        let r = request.into_inner();
        let id = timer_id_of(&r.id, "id").map_err(to_status)?;
        let t = self
            .kernel
            .get_timer(&r.tenant_id, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(timer_pb(&t)))
    }

    async fn list_timers(
        &self,
        request: Request<pb::ListTimersRequest>,
    ) -> Result<Response<pb::ListTimersResponse>, Status> {
        let q = list_request_of(request.into_inner()).map_err(to_status)?;
        let page = self.kernel.list_timers(q).await.map_err(to_status)?;
        Ok(Response::new(pb::ListTimersResponse {
            timers: page.timers.iter().map(timer_pb).collect(),
            next_page_token: page.next.map(|n| n.encode_cursor()).unwrap_or_default(),
        }))
    }

    async fn cancel_timer(
        &self,
        request: Request<pb::CancelTimerRequest>,
    ) -> Result<Response<pb::Timer>, Status> {
        let r = request.into_inner();
        let id = timer_id_of(&r.id, "id").map_err(to_status)?;
        let t = self
            .kernel
            .cancel_timer(&r.tenant_id, id, r.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(timer_pb(&t)))
    }

    async fn update_timer(
        &self,
        request: Request<pb::UpdateTimerRequest>,
    ) -> Result<Response<pb::Timer>, Status> {
        let (tenant_id, id, patch) =
            minoots_kernel_api::grpc::patch::update_request_of(request.into_inner())
                .map_err(to_status)?;
        let t = self
            .kernel
            .update_timer(&tenant_id, id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(timer_pb(&t)))
    }

    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let r = request.into_inner();
        let schedule_request = ScheduleRequest::from_json(r.request_json.as_bytes())
            .map_err(|e| to_status(KernelError::Invalid(e)))?;
        let quotas = ScheduleQuotas {
            max_schedules: r.max_schedules,
            min_interval_ms: r.min_interval_ms,
        };
        let s = self
            .kernel
            .create_schedule(&r.tenant_id, schedule_request, quotas)
            .await
            .map_err(to_status)?;
        Ok(Response::new(schedule_pb(&s)))
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let r = request.into_inner();
        let id = schedule_id_of(&r.id, "id").map_err(to_status)?;
        let s = self
            .kernel
            .get_schedule(&r.tenant_id, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(schedule_pb(&s)))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let r = request.into_inner();
        let after = match r.after.as_deref() {
            Some(a) => Some(schedule_id_of(a, "after").map_err(to_status)?),
            None => None,
        };
        let limit = (r.limit as usize).clamp(1, MAX_PAGE_SIZE);
        let status = match r.status.as_deref() {
            None => None,
            Some(s) => Some(ScheduleStatus::parse(s).ok_or_else(|| {
                to_status(KernelError::invalid(
                    "status",
                    "is not one of active, paused, completed",
                ))
            })?),
        };
        let filter = ScheduleFilter {
            status,
            label: r.label_key.zip(r.label_value),
        };
        let list = self
            .kernel
            .list_schedules(&r.tenant_id, &filter, after, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: list.iter().map(schedule_pb).collect(),
        }))
    }

    async fn list_schedule_runs(
        &self,
        request: Request<pb::ListScheduleRunsRequest>,
    ) -> Result<Response<pb::ListScheduleRunsResponse>, Status> {
        let r = request.into_inner();
        let id = schedule_id_of(&r.id, "id").map_err(to_status)?;
        let limit = (r.limit as usize).clamp(1, MAX_PAGE_SIZE);
        let runs = self
            .kernel
            .list_schedule_runs(&r.tenant_id, id, r.after_us, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListScheduleRunsResponse {
            runs: runs.iter().map(run_pb).collect(),
        }))
    }

    async fn change_schedule(
        &self,
        request: Request<pb::ChangeScheduleRequest>,
    ) -> Result<Response<pb::ChangeScheduleResponse>, Status> {
        let r = request.into_inner();
        let id = schedule_id_of(&r.id, "id").map_err(to_status)?;
        let (change, quotas) = change_of(&r).map_err(to_status)?;
        let c = self
            .kernel
            .change_schedule(&r.tenant_id, id, change, quotas)
            .await
            .map_err(to_status)?;
        Ok(Response::new(changed_pb(&c)))
    }

    async fn fire_timer_now(
        &self,
        request: Request<pb::FireTimerNowRequest>,
    ) -> Result<Response<pb::Timer>, Status> {
        let r = request.into_inner();
        let id = timer_id_of(&r.id, "id").map_err(to_status)?;
        let t = self
            .kernel
            .fire_timer_now(&r.tenant_id, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(timer_pb(&t)))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let r = request.into_inner();
        let id = timer_id_of(&r.timer_id, "timerId").map_err(to_status)?;
        let ds = self
            .kernel
            .list_deliveries(&r.tenant_id, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: ds
                .iter()
                .map(|d| delivery_pb(&d.delivery, &d.attempts))
                .collect(),
        }))
    }

    type StreamTimerEventsStream = GrpcStream<pb::TimerEvent>;

    async fn stream_timer_events(
        &self,
        request: Request<pb::StreamTimerEventsRequest>,
    ) -> Result<Response<Self::StreamTimerEventsStream>, Status> {
        let q = event_query_of(request.into_inner()).map_err(to_status)?;
        let stream = self.kernel.stream_events(q).await.map_err(to_status)?;
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map(|e| event_pb(&e)).map_err(to_status)),
        )))
    }

    type LeaseDeliveriesStream = GrpcStream<pb::LeasedDelivery>;

    async fn lease_deliveries(
        &self,
        request: Request<pb::LeaseDeliveriesRequest>,
    ) -> Result<Response<Self::LeaseDeliveriesStream>, Status> {
        let r = request.into_inner();
        let stream = self
            .kernel
            .lease_deliveries(LeaseRequest {
                lease_owner: r.lease_owner,
                lease_ttl_ms: r.lease_ttl_ms,
                max_in_flight: r.max_in_flight,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map(|d| leased_pb(&d)).map_err(to_status)),
        )))
    }

    async fn report_attempt(
        &self,
        request: Request<pb::ReportAttemptRequest>,
    ) -> Result<Response<pb::ReportAttemptResponse>, Status> {
        let report = report_of(request.into_inner()).map_err(to_status)?;
        let out = self
            .kernel
            .report_attempt(report)
            .await
            .map_err(to_status)?;
        Ok(Response::new(report_outcome_pb(&out)))
    }

    async fn renew_leases(
        &self,
        request: Request<pb::RenewLeasesRequest>,
    ) -> Result<Response<pb::RenewLeasesResponse>, Status> {
        let r = request.into_inner();
        if r.leases.len() > minoots_kernel_api::api::MAX_RENEW_LEASES {
            return Err(to_status(KernelError::invalid(
                "leases",
                format!(
                    "at most {} per call; send the rest in another call",
                    minoots_kernel_api::api::MAX_RENEW_LEASES
                ),
            )));
        }
        let leases = r
            .leases
            .iter()
            .map(|l| {
                Ok((
                    delivery_id_of(&l.delivery_id, "leases.deliveryId")?,
                    l.attempt,
                ))
            })
            .collect::<KernelResult<Vec<_>>>()
            .map_err(to_status)?;
        let renewal = self
            .kernel
            .renew_leases(RenewLeasesRequest {
                lease_owner: r.lease_owner,
                lease_ttl_ms: r.lease_ttl_ms,
                leases,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RenewLeasesResponse {
            kernel_now: Some(ts(renewal.now_us)),
            expires_at: Some(ts(renewal.expires_at_us)),
            lost_delivery_ids: renewal.lost.iter().map(|id| id.to_string()).collect(),
        }))
    }

    async fn release_delivery(
        &self,
        request: Request<pb::ReleaseDeliveryRequest>,
    ) -> Result<Response<pb::ReleaseDeliveryResponse>, Status> {
        let r = request.into_inner();
        let id = delivery_id_of(&r.delivery_id, "deliveryId").map_err(to_status)?;
        self.kernel
            .release_delivery_after(id, &r.lease_owner, r.attempt, r.delay_ms)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReleaseDeliveryResponse {}))
    }

    async fn redrive_timer(
        &self,
        request: Request<pb::RedriveTimerRequest>,
    ) -> Result<Response<pb::Timer>, Status> {
        let r = request.into_inner();
        let id = timer_id_of(&r.id, "id").map_err(to_status)?;
        let t = self
            .kernel
            .redrive_timer(&r.tenant_id, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(timer_pb(&t)))
    }

    async fn get_webhook_secrets(
        &self,
        request: Request<pb::GetWebhookSecretsRequest>,
    ) -> Result<Response<pb::WebhookSecrets>, Status> {
        let secrets = self
            .kernel
            .webhook_secrets(&request.into_inner().tenant_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::WebhookSecrets { secrets }))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::WebhookSecrets>, Status> {
        let tenant = request.into_inner().tenant_id;
        self.kernel
            .rotate_webhook_secret(&tenant)
            .await
            .map_err(to_status)?;
        let secrets = self
            .kernel
            .webhook_secrets(&tenant)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::WebhookSecrets { secrets }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let r = request.into_inner();
        let t = self
            .kernel
            .create_tenant(NewTenant {
                id: r.id,
                name: r.name,
                tier: r.tier,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(tenant_pb(&t)))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let t = self
            .kernel
            .get_tenant(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(tenant_pb(&t)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let r = request.into_inner();
        let tenants = self
            .kernel
            .list_tenants(non_empty(r.after), r.limit as usize)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.iter().map(tenant_pb).collect(),
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let r = request.into_inner();
        let t = self
            .kernel
            .update_tenant(
                &r.id,
                TenantUpdate {
                    name: r.name,
                    tier: r.tier,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(tenant_pb(&t)))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::ApiKey>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let key = api_key_of(request.into_inner()).map_err(to_status)?;
        let k = self.kernel.create_api_key(key).await.map_err(to_status)?;
        Ok(Response::new(api_key_pb(&k)))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let hash: [u8; 32] = request
            .into_inner()
            .key_hash
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("keyHash must be 32 bytes"))?;
        let found = self.kernel.authenticate(hash).await.map_err(to_status)?;
        Ok(Response::new(match found {
            Some((k, t)) => pb::AuthenticateResponse {
                key: Some(api_key_pb(&k)),
                tenant: Some(tenant_pb(&t)),
            },
            None => pb::AuthenticateResponse::default(),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let r = request.into_inner();
        let keys = self
            .kernel
            .list_api_keys(non_empty(r.tenant_id), non_empty(r.after), r.limit as usize)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.iter().map(api_key_pb).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let k = self
            .kernel
            .revoke_api_key(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(api_key_pb(&k)))
    }

    async fn create_ui_session(
        &self,
        request: Request<pb::CreateUiSessionRequest>,
    ) -> Result<Response<pb::UiSession>, Status> {
        let new = new_session_of(request.into_inner()).map_err(to_status)?;
        let s = self
            .kernel
            .create_ui_session(new)
            .await
            .map_err(to_status)?;
        Ok(Response::new(session_pb(&s)))
    }

    async fn get_ui_session(
        &self,
        request: Request<pb::UiSessionRequest>,
    ) -> Result<Response<pb::GetUiSessionResponse>, Status> {
        let hash = hash_of(&request.into_inner().token_hash, "tokenHash").map_err(to_status)?;
        let found = self.kernel.ui_session(hash).await.map_err(to_status)?;
        Ok(Response::new(grant_pb(found.as_ref())))
    }

    async fn end_ui_session(
        &self,
        request: Request<pb::UiSessionRequest>,
    ) -> Result<Response<pb::EndUiSessionResponse>, Status> {
        let hash = hash_of(&request.into_inner().token_hash, "tokenHash").map_err(to_status)?;
        let ended = self.kernel.end_ui_session(hash).await.map_err(to_status)?;
        Ok(Response::new(pb::EndUiSessionResponse { ended }))
    }

    async fn get_timer_counts(
        &self,
        request: Request<pb::GetTimerCountsRequest>,
    ) -> Result<Response<pb::TimerCounts>, Status> {
        let tenant = request.into_inner().tenant_id;
        let c = self.kernel.timer_counts(&tenant).await.map_err(to_status)?;
        Ok(Response::new(counts_pb(&c)))
    }

    async fn get_delivery_activity(
        &self,
        request: Request<pb::GetDeliveryActivityRequest>,
    ) -> Result<Response<pb::DeliveryActivity>, Status> {
        let r = request.into_inner();
        let a = self
            .kernel
            .delivery_activity(&r.tenant_id, r.minutes)
            .await
            .map_err(to_status)?;
        Ok(Response::new(activity_pb(&a)))
    }

    async fn get_tenant_usage(
        &self,
        request: Request<pb::GetTenantUsageRequest>,
    ) -> Result<Response<pb::TenantUsage>, Status> {
        let u = self
            .kernel
            .tenant_usage(&request.into_inner().tenant_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::TenantUsage {
            created_today: u.created_today,
            pending: u.pending,
        }))
    }

    async fn record_billing_event(
        &self,
        request: Request<pb::BillingEvent>,
    ) -> Result<Response<pb::RecordBillingEventResponse>, Status> {
        let event = billing::event_of(request.into_inner()).map_err(to_status)?;
        let applied = self
            .kernel
            .record_billing_event(event)
            .await
            .map_err(to_status)?;
        Ok(Response::new(billing::applied_pb(applied)))
    }

    async fn get_billing_state(
        &self,
        request: Request<pb::GetBillingStateRequest>,
    ) -> Result<Response<pb::BillingState>, Status> {
        let tenant_id = request.into_inner().tenant_id;
        let state = self
            .kernel
            .billing_state(&tenant_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(billing::state_pb(&state)))
    }

    async fn expire_billing_grace(
        &self,
        _request: Request<pb::ExpireBillingGraceRequest>,
    ) -> Result<Response<pb::ExpireBillingGraceResponse>, Status> {
        let sweep = self
            .kernel
            .expire_billing_grace()
            .await
            .map_err(to_status)?;
        Ok(Response::new(billing::sweep_pb(sweep)))
    }

    async fn get_meter_usage_ready(
        &self,
        request: Request<pb::GetMeterUsageReadyRequest>,
    ) -> Result<Response<pb::MeterUsageList>, Status> {
        let rows = self
            .kernel
            .meter_usage_ready(request.into_inner().limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(billing::usage_pb(&rows)))
    }

    async fn mark_meter_sent(
        &self,
        request: Request<pb::MarkMeterSentRequest>,
    ) -> Result<Response<pb::MarkMeterSentResponse>, Status> {
        let rows = billing::keys_of(request.into_inner());
        let marked = self.kernel.mark_meter_sent(rows).await.map_err(to_status)?;
        Ok(Response::new(pb::MarkMeterSentResponse { marked }))
    }
}

/// Serves the kernel on `listener` until `shutdown` completes. Refuses to start, with
/// [`KernelError::Config`] naming `MINOOTS_KERNEL_TOKEN`, beyond loopback without a token
/// or with one too short to be a secret.
pub async fn serve(
    kernel: Arc<dyn KernelApi>,
    listener: TcpListener,
    config: GrpcServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> KernelResult<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| KernelError::Unavailable(format!("the gRPC listener has no address: {e}")))?;
    let token = config.token.filter(|t| !t.is_empty());
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ConfigError::new(
            "MINOOTS_KERNEL_TOKEN",
            format!(
                "must be set to serve the kernel on {addr}, beyond loopback; or listen on 127.0.0.1"
            ),
        )
        .into());
    }
    if let Some(t) = &token
        && t.len() < MIN_TOKEN_CHARS
    {
        return Err(ConfigError::new(
            "MINOOTS_KERNEL_TOKEN",
            format!("must be at least {MIN_TOKEN_CHARS} characters"),
        )
        .into());
    }
    let expected = token.map(|t| format!("Bearer {t}"));
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        if let Some(expected) = &expected {
            let given = req
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !minoots_kernel_api::api::constant_time_eq(given, expected.as_bytes()) {
                return Err(Status::unauthenticated(
                    "missing or wrong kernel token (authorization: Bearer <MINOOTS_KERNEL_TOKEN>)",
                ));
            }
        }
        Ok(req)
    };
    let server = pb::horology_kernel_server::HorologyKernelServer::new(Service { kernel })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(server, check);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| KernelError::Unavailable(format!("the gRPC server failed: {e}")))
}
