//! The gRPC client of the kernel: the second implementation of [`KernelApi`], used by the
//! control plane and the orchestrator when they run as separate processes.

use std::time::Duration;

use async_trait::async_trait;
use minoots_core::{DeliveryId, Event, Timer, TimerId, TimerRequest};
use minoots_store::{
    AttemptReport, DeliveryWithAttempts, EventQuery, LeasedDelivery, ReportOutcome, TimerPage,
    TimerQuery,
};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::convert::*;
use super::{from_status, pb};
use crate::api::{BoxStream, KernelApi, LeaseRequest, ScheduleOutcome};
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
            .max_decoding_message_size(super::server::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::server::MAX_MESSAGE_BYTES);
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
    async fn schedule_timer(
        &self,
        tenant_id: &str,
        request: TimerRequest,
    ) -> KernelResult<ScheduleOutcome> {
        let msg = schedule_request_pb(tenant_id, request);
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
                minoots_store::DueTimer::decode_cursor(&r.next_page_token).ok_or_else(|| {
                    KernelError::Internal("bad page token from the kernel".into())
                })?,
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

    async fn release_delivery(
        &self,
        delivery_id: DeliveryId,
        lease_owner: &str,
        attempt: u32,
    ) -> KernelResult<()> {
        let msg = pb::ReleaseDeliveryRequest {
            delivery_id: delivery_id.to_string(),
            lease_owner: lease_owner.to_string(),
            attempt,
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
}
