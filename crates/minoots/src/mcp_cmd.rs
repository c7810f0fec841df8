//! `minoots mcp`: the MCP server over stdio for desktop agents, acting through a MINOOTS
//! server's REST API with one API key; and the settings of the `/mcp` endpoint that the
//! HTTP servers mount. It only parses flags and wires: the tools live in `minoots-mcp`.
//! It must never write to stdout (the MCP channel) anything but protocol messages.

use anyhow::Context;
use minoots_mcp::{Backend, RemoteApi};

#[derive(clap::Args, Debug, Clone)]
pub struct McpArgs {
    /// The MINOOTS server's REST address.
    #[arg(long, env = "MINOOTS_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// The API key the tools act with (its tenant is the only one they can see).
    #[arg(long, env = "MINOOTS_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

/// Settings of the `/mcp` endpoint on `minoots serve` and `minoots control-plane`.
#[derive(clap::Args, Debug, Clone)]
pub struct McpHttpArgs {
    /// Host names (or name:port) under which clients reach `/mcp`, comma-separated;
    /// requests with another `Host` are refused (DNS-rebinding protection). Loopback
    /// names are always accepted.
    #[arg(long, env = "MINOOTS_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub mcp_allowed_hosts: Vec<String>,
    /// Browser origins allowed to call `/mcp` besides the allowed hosts themselves,
    /// comma-separated, like https://app.example.com:443.
    #[arg(long, env = "MINOOTS_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Vec<String>,
}

impl McpHttpArgs {
    pub fn config(&self) -> minoots_mcp::http::McpHttpConfig {
        let mut config = minoots_mcp::http::McpHttpConfig::default();
        let trimmed = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        config
            .allowed_hosts
            .extend(trimmed(&self.mcp_allowed_hosts));
        config.allowed_origins = trimmed(&self.mcp_allowed_origins);
        config
    }
}

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    let api = RemoteApi::new(&args.url, &args.api_key)?;
    tracing::info!(url = %args.url, "MINOOTS MCP server on stdio");
    minoots_mcp::serve_stdio(Backend::Remote(api))
        .await
        .context("serving MCP on stdio")
}
