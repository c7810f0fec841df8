//! The operator's action settings, shared by `minoots kernel` (which refuses timers using
//! actions that are not enabled) and `minoots orchestrator` (which runs them). One
//! environment can be handed to both.

use std::path::PathBuf;

use anyhow::Context;
use minoots_core::ActionPolicy;
use minoots_orchestrator::command::{AllowedCommand, CommandConfig};
use minoots_orchestrator::file::FileConfig;
use minoots_orchestrator::ssrf::{Cidr, TargetPolicy};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ActionArgs {
    /// A command tenants may run: NAME=/absolute/program [fixed args...]. Repeat the flag,
    /// or separate entries with ';' in the environment variable.
    #[arg(
        long = "allow-command",
        env = "MINOOTS_COMMANDS",
        value_delimiter = ';'
    )]
    pub commands: Vec<String>,
    /// Directory commands start in (default: the current directory).
    #[arg(long, env = "MINOOTS_COMMAND_DIR")]
    pub command_dir: Option<PathBuf>,
    /// Root directory for file actions; without it file actions are off.
    #[arg(long, env = "MINOOTS_FILE_ROOT")]
    pub file_root: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Let webhooks reach loopback and private addresses (never metadata addresses).
    #[arg(long, env = "MINOOTS_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Networks webhooks may reach whatever their kind (comma-separated CIDRs).
    #[arg(
        long = "allow-cidr",
        env = "MINOOTS_ALLOWED_CIDRS",
        value_delimiter = ','
    )]
    pub allowed_cidrs: Vec<String>,
}

impl ActionArgs {
    pub fn commands(&self) -> anyhow::Result<CommandConfig> {
        let mut config = CommandConfig::default();
        for entry in self
            .commands
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
        {
            let (name, rest) = entry.split_once('=').with_context(|| {
                format!("--allow-command \"{entry}\" must look like NAME=/absolute/program [args]")
            })?;
            let mut words = rest.split_whitespace();
            let program = words
                .next()
                .with_context(|| format!("--allow-command \"{entry}\" names no program"))?;
            config.allowed.insert(
                name.trim().to_string(),
                AllowedCommand {
                    program: PathBuf::from(program),
                    fixed_args: words.map(str::to_string).collect(),
                },
            );
        }
        config.working_dir = match &self.command_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir()?,
        };
        if config.enabled() {
            config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(config)
    }

    pub fn files(&self) -> anyhow::Result<Option<FileConfig>> {
        match &self.file_root {
            None => Ok(None),
            Some(root) => {
                let c = FileConfig::new(root);
                c.check().map_err(|e| anyhow::anyhow!("--file-root: {e}"))?;
                Ok(Some(c))
            }
        }
    }

    /// What the kernel needs to refuse disabled actions at creation.
    pub fn policy(&self) -> anyhow::Result<ActionPolicy> {
        Ok(ActionPolicy {
            allowed_commands: self.commands()?.allowed.keys().cloned().collect(),
            file_actions: self.file_root.is_some(),
        })
    }
}

impl TargetArgs {
    pub fn policy(&self) -> anyhow::Result<TargetPolicy> {
        let allowed_cidrs = self
            .allowed_cidrs
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|c| c.parse::<Cidr>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(TargetPolicy {
            allow_private: self.allow_private_targets,
            allowed_cidrs,
        })
    }
}

/// The loopback networks demo mode lets webhooks reach.
pub fn loopback_cidrs() -> anyhow::Result<Vec<Cidr>> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|c| c.parse::<Cidr>().map_err(anyhow::Error::msg))
        .collect()
}
