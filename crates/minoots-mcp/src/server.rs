//! The MCP server handler: lists the tools and runs tool calls against a [`Backend`].
//!
//! It owns the MCP side of a call — argument errors and API refusals become tool results
//! with `isError: true` (never protocol failures), results carry the API's JSON both as
//! text and as structured content (after a summary sentence for the tools that have one), long waits are cut into bounded long-polls with
//! progress notifications between them, and a cancelled call stops waiting. It must never
//! hold a caller's key beyond the call, nor act without one.

use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;

use crate::backend::{ApiRequest, Backend};
use crate::tools::{self, Plan, ToolError, WAIT_SLICE};

const INSTRUCTIONS: &str = "MINOOTS is a durable timer service. create_timer schedules a \
one-off timer (optionally calling a webhook when it fires); wait_for_timer blocks until a \
timer fires; sleep pauses for a duration; list_timers, get_timer, cancel_timer, \
reschedule_timer, fire_timer_now, list_deliveries and redrive_timer manage timers. For \
recurring work, preview_schedule shows when a cron expression or interval would fire (DST \
included) and create_schedule makes a schedule that fires a run (a timer) at each slot; \
list_schedules, get_schedule and list_schedule_runs (what happened at each slot) read them; \
pause_schedule, resume_schedule (catchUp: true to fire the runs missed while paused), \
trigger_schedule (one extra run now) and delete_schedule change them. Timers and schedules \
survive restarts; keep the ids you get.";

/// The MINOOTS MCP server; cheap to clone (one per MCP session).
#[derive(Clone)]
pub struct MinootsMcp {
    backend: Backend,
}

impl MinootsMcp {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    /// Runs one tool call to its result (success or tool error).
    pub async fn run_tool(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let Some(plan) = tools::plan(name, arguments) else {
            return Err(McpError::invalid_params(
                format!("unknown tool \"{name}\"; tools/list names the tools"),
                None,
            ));
        };
        let outcome = match plan {
            Err(e) => Err(e),
            Ok(plan) => {
                tokio::select! {
                    r = self.execute(plan, ctx) => r,
                    _ = ctx.ct.cancelled() => Err(ToolError::new("the call was cancelled")),
                }
            }
        };
        Ok(match outcome {
            Ok(value) => {
                let summary = tools::summary(name, &value);
                success(value, summary)
            }
            Err(e) => failure(e),
        })
    }

    async fn execute(
        &self,
        plan: Plan,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        match plan {
            Plan::Single(req) => self.request(req, ctx).await,
            Plan::NoContent { req, answer } => self.request(req, ctx).await.map(|_| answer),
            Plan::Wait { id, total } => self.wait(&id, total, ctx).await,
            Plan::Sleep { body, total } => {
                let timer = self
                    .request(
                        ApiRequest {
                            method: http::Method::POST,
                            path_and_query: "/timers".into(),
                            body: Some(body),
                            wait: Duration::ZERO,
                        },
                        ctx,
                    )
                    .await?;
                let id = timer
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ToolError::new("MINOOTS created the timer but returned no id"))?
                    .to_string();
                self.wait(&id, total, ctx).await
            }
        }
    }

    /// One API request; a non-2xx answer is a tool error with the API's sentence.
    async fn request(
        &self,
        req: ApiRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        let incoming = ctx
            .extensions
            .get::<http::request::Parts>()
            .map(|p| &p.headers);
        let reply = self
            .backend
            .call(req, incoming)
            .await
            .map_err(|e| ToolError::new(e.to_string()))?;
        if reply.is_success() {
            Ok(reply.body)
        } else {
            Err(ToolError::from_reply(&reply))
        }
    }

    /// Long-polls in slices of at most [`WAIT_SLICE`] until the timer is no longer
    /// scheduled or `total` passed; reports progress before each slice when asked to.
    async fn wait(
        &self,
        id: &str,
        total: Duration,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        let started = Instant::now();
        let progress_token = ctx.meta.get_progress_token();
        loop {
            let remaining = total.saturating_sub(started.elapsed());
            let slice = remaining.min(WAIT_SLICE);
            if let Some(token) = &progress_token {
                let waited = started.elapsed();
                let param = ProgressNotificationParam::new(token.clone(), waited.as_secs_f64())
                    .with_total(total.as_secs_f64())
                    .with_message(format!(
                        "waiting for timer {id} to fire: {} s of at most {} s",
                        waited.as_secs(),
                        total.as_secs()
                    ));
                // A client that stopped listening to progress still gets the result.
                let _ = ctx.peer.notify_progress(param).await;
            }
            let timer = self.request(tools::wait_request(id, slice), ctx).await?;
            let status = timer.get("status").and_then(Value::as_str).unwrap_or("");
            if status != "scheduled" || started.elapsed() >= total {
                return Ok(timer);
            }
        }
    }
}

/// A result with the API's JSON as text and as structured content, after the summary
/// sentence when there is one.
fn success(value: Value, summary: Option<String>) -> CallToolResult {
    let json = ContentBlock::text(serde_json::to_string_pretty(&value).unwrap_or_default());
    let content = match summary {
        Some(s) => vec![ContentBlock::text(s), json],
        None => vec![json],
    };
    let mut r = CallToolResult::success(content);
    if value.is_object() {
        r.structured_content = Some(value);
    }
    r
}

/// A tool error: the sentence as text, the API's problem document as structured content.
fn failure(e: ToolError) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(e.message)]);
    r.structured_content = e.problem;
    r
}

impl ServerHandler for MinootsMcp {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("minoots", env!("CARGO_PKG_VERSION")).with_title("MINOOTS"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::definitions()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::definitions().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.run_tool(&request.name, request.arguments, &ctx)
            .await
            .map(CallToolResponse::from)
    }
}
