//! Command actions: runs a program from the operator's allow-list when a timer fires.
//!
//! This module owns the allow-list (`CommandConfig`) and the life of one command: spawn,
//! capture of its output, its timeout, and the cleanup of everything it started. A tenant
//! names a command; the operator decides which program that name runs and with which
//! leading arguments. The tenant's arguments are appended to the program's argument
//! vector as they are.
//!
//! It must never run anything through a shell (tenant text is never interpreted), never
//! pass the orchestrator's own environment to a child (only the tenant's variables are
//! set, and dynamic-loader variables are refused), never read output without a bound, and
//! never leave a process behind: each command runs in its own process group, and that
//! group is killed when the command exits, times out, or the call is cancelled.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use minoots_core::limits::MAX_ATTEMPT_RESPONSE_BYTES;
use minoots_core::{AttemptOutcome, CommandAction};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::time::Instant;

use crate::ExecResult;

/// Default cap on the output kept from one run (stdout and stderr together).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Largest `max_output_bytes` an operator may configure: output is held in memory per run.
pub const MAX_OUTPUT_BYTES_LIMIT: usize = 16 * 1024 * 1024;
/// Default time between SIGTERM and SIGKILL when a command times out.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// Longest `kill_grace` an operator may configure; it adds to every timed-out attempt.
pub const MAX_KILL_GRACE: Duration = Duration::from_secs(60);

/// How long output is still read after the command exited and its group was killed. Only
/// what is already in the pipes remains by then, unless a process left the group and
/// still holds them; this bounds the wait for such a process.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long to wait for the kernel to reap a child after SIGKILL. A process stuck in
/// uninterruptible sleep may take longer; tokio then reaps it in the background.
const REAP_AFTER_KILL: Duration = Duration::from_secs(5);
/// Size of each read from a pipe.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Environment variables glibc's loader honours and drops for setuid programs because they
/// let the caller load code into the process (`LD_*` as a prefix, the rest exactly).
/// A tenant must not be able to set them for a program the operator chose.
const LOADER_ENV_PREFIX: &str = "LD_";
const LOADER_ENV_NAMES: [&str; 11] = [
    "GCONV_PATH",
    "GETCONF_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TZDIR",
];

/// A program the operator allows tenants to run under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedCommand {
    /// Absolute path of the executable. Absolute so that no `PATH` lookup decides what
    /// runs (children get no `PATH` from us anyway).
    pub program: PathBuf,
    /// Arguments placed before the tenant's. End them with `--` when the program must not
    /// take options from tenants.
    pub fixed_args: Vec<String>,
}

/// The operator's configuration of command actions. Commands are off unless `allowed` is
/// non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Command name (as tenants write it) → program. Empty means command actions are off.
    pub allowed: BTreeMap<String, AllowedCommand>,
    /// Directory every command starts in; absolute and existing, checked by `check`.
    pub working_dir: PathBuf,
    /// Output kept per run, stdout and stderr together, so a chatty command cannot grow
    /// the orchestrator's memory; the rest is read and discarded so the child never
    /// blocks on a full pipe. At most `MAX_OUTPUT_BYTES_LIMIT`.
    pub max_output_bytes: usize,
    /// Time a timed-out command's process group gets between SIGTERM and SIGKILL to
    /// clean up. At most `MAX_KILL_GRACE`.
    pub kill_grace: Duration,
}

impl Default for CommandConfig {
    /// Commands off.
    fn default() -> Self {
        Self {
            allowed: BTreeMap::new(),
            working_dir: PathBuf::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            kill_grace: DEFAULT_KILL_GRACE,
        }
    }
}

/// Why a `CommandConfig` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandConfigError {
    #[error(
        "allowed command {name:?}: a name must be 1 to {max} letters, digits, '_', '.' or '-', not starting with '.', or tenants could never name it",
        max = minoots_core::limits::MAX_COMMAND_NAME_BYTES
    )]
    BadName { name: String },
    #[error(
        "allowed command {name:?}: program {program:?} must be an absolute path, so no PATH lookup decides what runs"
    )]
    RelativeProgram { name: String, program: PathBuf },
    #[error("command working directory {path:?} {reason}")]
    WorkingDir { path: PathBuf, reason: String },
    #[error("command max_output_bytes is {0}; at most {MAX_OUTPUT_BYTES_LIMIT} is allowed")]
    OutputTooLarge(usize),
    #[error("command kill_grace is {0:?}; at most {MAX_KILL_GRACE:?} is allowed")]
    KillGraceTooLong(Duration),
}

impl CommandConfig {
    /// Whether tenants may create command actions at all.
    pub fn enabled(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// Whether `name` is on the allow-list; the control plane refuses other names when a
    /// timer is created.
    pub fn is_allowed(&self, name: &str) -> bool {
        self.allowed.contains_key(name)
    }

    /// Checks the configuration at startup. With an empty allow-list there is nothing to
    /// check: commands are off.
    pub fn check(&self) -> Result<(), CommandConfigError> {
        if self.max_output_bytes > MAX_OUTPUT_BYTES_LIMIT {
            return Err(CommandConfigError::OutputTooLarge(self.max_output_bytes));
        }
        if self.kill_grace > MAX_KILL_GRACE {
            return Err(CommandConfigError::KillGraceTooLong(self.kill_grace));
        }
        if !self.enabled() {
            return Ok(());
        }
        for (name, allowed) in &self.allowed {
            if !is_valid_name(name) {
                return Err(CommandConfigError::BadName { name: name.clone() });
            }
            if !allowed.program.is_absolute() {
                return Err(CommandConfigError::RelativeProgram {
                    name: name.clone(),
                    program: allowed.program.clone(),
                });
            }
        }
        let dir_error = |reason: &str| CommandConfigError::WorkingDir {
            path: self.working_dir.clone(),
            reason: reason.to_string(),
        };
        if !self.working_dir.is_absolute() {
            return Err(dir_error(
                "must be an absolute path (commands are allowed, so they need one)",
            ));
        }
        match std::fs::metadata(&self.working_dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(dir_error("is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(dir_error("does not exist")),
            Err(e) => Err(dir_error(&format!("cannot be read: {e}"))),
        }
    }
}

/// The same rule `CommandAction` validation applies to names, so every allowed name can
/// be written by a tenant.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= minoots_core::limits::MAX_COMMAND_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Whether a tenant may not set the environment variable `name` for a command, because it
/// changes which code the program loads. The control plane can refuse such names at
/// timer creation; `run_command` refuses them again.
pub fn is_env_name_refused(name: &str) -> bool {
    name.starts_with(LOADER_ENV_PREFIX) || LOADER_ENV_NAMES.contains(&name)
}

/// Runs one command action and reports what it came to. Never panics on the child's
/// behaviour and never returns before the child is reaped (or, after SIGKILL, handed to
/// tokio's background reaper); if this future is dropped, the process group is killed.
pub async fn run_command(config: &CommandConfig, action: &CommandAction) -> ExecResult {
    let name = action.command.as_str();
    let Some(allowed) = config.allowed.get(name) else {
        return ExecResult::failure(
            AttemptOutcome::Permanent,
            format!(
                "command '{name}' is not allowed: the operator has not put it on this server's command allow-list"
            ),
        );
    };
    if let Some(key) = action.env.keys().find(|k| is_env_name_refused(k)) {
        return ExecResult::failure(
            AttemptOutcome::Permanent,
            format!(
                "command '{name}' cannot be given environment variable {key}: it changes which code a program loads"
            ),
        );
    }

    let mut cmd = Command::new(&allowed.program);
    cmd.args(&allowed.fixed_args)
        .args(&action.args)
        .env_clear()
        .envs(&action.env)
        .current_dir(&config.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(command = name, program = %allowed.program.display(), error = %e, "command could not be started");
            let outcome = match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                    AttemptOutcome::Permanent
                }
                _ => AttemptOutcome::Retryable,
            };
            return ExecResult::failure(
                outcome,
                format!("command '{name}' could not be started: {e}"),
            );
        }
    };
    let pid = child
        .id()
        .expect("a child that has not been waited for has a pid");
    let pgid = libc::pid_t::try_from(pid).expect("pids fit in pid_t");
    // Declared after `child` so it drops first, while the leader is still unreaped and
    // its pid cannot name another group.
    let mut group = GroupGuard { pgid, armed: true };
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let timeout_ms = action.timeout_ms();
    let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    let mut captured = Vec::new();

    let ended = {
        let drain = drain_output(stdout, stderr, config.max_output_bytes, &mut captured);
        tokio::pin!(drain);
        let mut drained = false;
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);

        let exited = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                () = &mut drain, if !drained => drained = true,
                () = &mut timer => break None,
            }
        };

        match exited {
            Some(status) => {
                // The command's life is its process's life: whatever it left in its group
                // is killed. Any member still alive keeps the group id from being reused.
                signal_group(pgid, libc::SIGKILL);
                group.armed = false;
                if !drained {
                    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut drain).await;
                }
                match status {
                    Ok(status) => Ended::Exited(status),
                    Err(e) => Ended::WaitFailed(e),
                }
            }
            None => {
                // The leader is not reaped yet, so `pgid` still names its group.
                signal_group(pgid, libc::SIGTERM);
                let grace_end = Instant::now() + config.kill_grace;
                if !drained {
                    drained = tokio::time::timeout_at(grace_end, &mut drain).await.is_ok();
                }
                tokio::time::sleep_until(grace_end).await;
                signal_group(pgid, libc::SIGKILL);
                if tokio::time::timeout(REAP_AFTER_KILL, child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        command = name,
                        pid,
                        "command not reaped after SIGKILL; left to the background reaper"
                    );
                }
                group.armed = false;
                if !drained {
                    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut drain).await;
                }
                Ended::TimedOut
            }
        }
    };

    let mut result = match ended {
        Ended::Exited(status) => exit_result(name, status),
        Ended::TimedOut => ExecResult::failure(
            AttemptOutcome::Retryable,
            format!("command '{name}' timed out after {timeout_ms} ms and was killed"),
        ),
        Ended::WaitFailed(e) => ExecResult::failure(
            AttemptOutcome::Retryable,
            format!("command '{name}' could not be waited for: {e}"),
        ),
    };
    result.response_excerpt = excerpt(&captured);
    result
}

/// How the child's run ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(io::Error),
}

fn exit_result(name: &str, status: ExitStatus) -> ExecResult {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => ExecResult {
            exit_code: Some(0),
            ..ExecResult::success()
        },
        (Some(code), _) => ExecResult {
            exit_code: Some(code),
            ..ExecResult::failure(
                AttemptOutcome::Retryable,
                format!("command '{name}' exited with status {code}"),
            )
        },
        (None, Some(sig)) => ExecResult::failure(
            AttemptOutcome::Retryable,
            format!(
                "command '{name}' was killed by signal {sig}{}",
                signal_name(sig)
            ),
        ),
        (None, None) => ExecResult::failure(
            AttemptOutcome::Retryable,
            format!("command '{name}' ended with an unknown status ({status})"),
        ),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

/// The captured output as the attempt's excerpt: lossy UTF-8, at most
/// `MAX_ATTEMPT_RESPONSE_BYTES`, cut at a char boundary; `None` when there was none.
fn excerpt(captured: &[u8]) -> Option<String> {
    if captured.is_empty() {
        return None;
    }
    let mut text = String::from_utf8_lossy(captured).into_owned();
    if text.len() > MAX_ATTEMPT_RESPONSE_BYTES {
        let mut end = MAX_ATTEMPT_RESPONSE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(text)
}

/// Reads stdout and stderr together until both close, keeping the first `max_bytes` in
/// arrival order in `captured` and discarding the rest. A read error ends that stream.
async fn drain_output(
    mut stdout: ChildStdout,
    mut stderr: ChildStderr,
    max_bytes: usize,
    captured: &mut Vec<u8>,
) {
    let mut out_buf = vec![0u8; READ_CHUNK_BYTES];
    let mut err_buf = vec![0u8; READ_CHUNK_BYTES];
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        // `read` is cancel safe: the branch that loses the race has read nothing.
        let (read, from_stdout) = tokio::select! {
            r = stdout.read(&mut out_buf), if out_open => (r, true),
            r = stderr.read(&mut err_buf), if err_open => (r, false),
        };
        let (buf, open) = if from_stdout {
            (&out_buf, &mut out_open)
        } else {
            (&err_buf, &mut err_open)
        };
        match read {
            Ok(0) => *open = false,
            Ok(n) => {
                let room = max_bytes.saturating_sub(captured.len());
                captured.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading command output failed");
                *open = false;
            }
        }
    }
}

/// Sends `sig` to every process in group `pgid`. A group that no longer exists is fine.
fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    debug_assert!(
        pgid > 1,
        "a negated pid of 0 or -1 would signal far more than one group"
    );
    // SAFETY: kill(2) takes no pointers; a negative pid names exactly one process group.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, sig, error = %e, "could not signal a command's process group");
        }
    }
}

/// Kills the command's process group if `run_command` is dropped before it reaped the
/// child, so a cancelled attempt leaves nothing running.
struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant as StdInstant;

    fn config(dir: &Path, allowed: &[(&str, &str, &[&str])]) -> CommandConfig {
        CommandConfig {
            allowed: allowed
                .iter()
                .map(|(name, program, fixed)| {
                    (
                        name.to_string(),
                        AllowedCommand {
                            program: PathBuf::from(program),
                            fixed_args: fixed.iter().map(|s| s.to_string()).collect(),
                        },
                    )
                })
                .collect(),
            working_dir: dir.to_path_buf(),
            ..CommandConfig::default()
        }
    }

    fn action(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        timeout_ms: Option<u32>,
    ) -> CommandAction {
        CommandAction {
            command: name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms,
        }
    }

    /// Whether `pid` is gone or a zombie (dead, waiting for a parent that is not us: a
    /// container's pid 1 may never reap it).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => {
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
            }
        }
    }

    /// Bounded wait for a process killed by SIGKILL to disappear.
    async fn wait_dead(pid: i32) -> bool {
        let until = StdInstant::now() + Duration::from_secs(2);
        while StdInstant::now() < until {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        is_dead(pid)
    }

    fn read_pid(path: &Path) -> i32 {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn child_sees_only_the_tenants_environment() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &[
                ("env", "/usr/bin/env", &[]),
                (
                    "greet",
                    "/bin/sh",
                    &["-c", "echo \"greeting=$GREETING home=$HOME\""],
                ),
            ],
        );
        let r = run_command(&cfg, &action("env", &[], &[("GREETING", "hi")], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.response_excerpt.as_deref(), Some("GREETING=hi\n"));

        let r = run_command(&cfg, &action("greet", &[], &[("GREETING", "hi")], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        assert_eq!(r.response_excerpt.as_deref(), Some("greeting=hi home=\n"));
    }

    #[tokio::test]
    async fn unknown_name_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[("env", "/usr/bin/env", &[])]);
        assert!(cfg.is_allowed("env"));
        assert!(!cfg.is_allowed("rm"));
        for cfg in [cfg, CommandConfig::default()] {
            let r = run_command(&cfg, &action("rm", &["-rf", "/"], &[], None)).await;
            assert_eq!(r.outcome, AttemptOutcome::Permanent);
            let error = r.error.unwrap();
            assert!(
                error.contains("'rm'") && error.contains("not allowed"),
                "{error}"
            );
            assert_eq!(r.exit_code, None);
        }
    }

    #[tokio::test]
    async fn loader_environment_variables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[("env", "/usr/bin/env", &[])]);
        for key in ["LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH"] {
            let r = run_command(&cfg, &action("env", &[], &[(key, "/tmp/x.so")], None)).await;
            assert_eq!(r.outcome, AttemptOutcome::Permanent, "{key}");
            assert!(r.error.unwrap().contains(key));
            assert_eq!(
                r.response_excerpt, None,
                "{key}: the program must not have run"
            );
        }
        assert!(!is_env_name_refused("OLD_PRELOAD"));
    }

    #[tokio::test]
    async fn shell_metacharacters_in_args_stay_literal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[("print", "/usr/bin/printf", &["[%s]\n"])]);
        let args = [
            "$(touch PWNED)",
            "; rm -rf x",
            "`id`",
            "a && b",
            "> out",
            "*",
        ];
        let r = run_command(&cfg, &action("print", &args, &[], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
        assert_eq!(r.response_excerpt.as_deref(), Some(expected.as_str()));
        assert!(!dir.path().join("PWNED").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group_even_when_term_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            dir.path(),
            &[(
                "stubborn",
                "/bin/sh",
                &[
                    "-c",
                    "trap '' TERM; echo $$ > leader; sleep 30 & echo $! > grandchild; wait",
                ],
            )],
        );
        cfg.kill_grace = Duration::from_millis(200);
        let started = StdInstant::now();
        let r = run_command(&cfg, &action("stubborn", &[], &[], Some(300))).await;
        let elapsed = started.elapsed();
        assert_eq!(r.outcome, AttemptOutcome::Retryable, "{r:?}");
        assert_eq!(r.exit_code, None);
        assert!(r.error.unwrap().contains("timed out after 300 ms"));
        assert!(
            elapsed >= Duration::from_millis(500),
            "grace not given: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

        let leader = read_pid(&dir.path().join("leader"));
        let grandchild = read_pid(&dir.path().join("grandchild"));
        // We reaped the leader ourselves: it is gone, not a zombie.
        assert!(
            !Path::new(&format!("/proc/{leader}")).exists(),
            "leader {leader} remains"
        );
        assert!(
            wait_dead(grandchild).await,
            "grandchild {grandchild} survived"
        );
    }

    #[tokio::test]
    async fn leftovers_are_killed_when_the_command_exits() {
        let dir = tempfile::tempdir().unwrap();
        // The background sleep keeps stdout open; without the group kill this would
        // wait for it (30 s).
        let cfg = config(
            dir.path(),
            &[(
                "bg",
                "/bin/sh",
                &["-c", "sleep 30 & echo $! > grandchild; echo started"],
            )],
        );
        let started = StdInstant::now();
        let r = run_command(&cfg, &action("bg", &[], &[], Some(20_000))).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        assert_eq!(r.response_excerpt.as_deref(), Some("started\n"));
        let grandchild = read_pid(&dir.path().join("grandchild"));
        assert!(
            wait_dead(grandchild).await,
            "grandchild {grandchild} survived"
        );
    }

    #[tokio::test]
    async fn output_is_capped_and_stderr_is_captured() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &[
                (
                    "flood",
                    "/bin/sh",
                    &["-c", "head -c 1000000 /dev/zero | tr '\\0' 'x'"],
                ),
                ("both", "/bin/sh", &["-c", "echo out; echo err >&2"]),
            ],
        );
        assert_eq!(cfg.max_output_bytes, 64 * 1024);
        let started = StdInstant::now();
        let r = run_command(&cfg, &action("flood", &[], &[], Some(4_000))).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        let excerpt = r.response_excerpt.unwrap();
        assert_eq!(excerpt.len(), MAX_ATTEMPT_RESPONSE_BYTES);
        assert!(excerpt.bytes().all(|b| b == b'x'));

        let r = run_command(&cfg, &action("both", &[], &[], None)).await;
        let excerpt = r.response_excerpt.unwrap();
        assert!(
            excerpt.contains("out\n") && excerpt.contains("err\n"),
            "{excerpt:?}"
        );
    }

    #[tokio::test]
    async fn capture_keeps_at_most_max_output_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            dir.path(),
            &[(
                "flood",
                "/bin/sh",
                &["-c", "head -c 100000 /dev/zero | tr '\\0' 'y'"],
            )],
        );
        cfg.max_output_bytes = 10;
        let r = run_command(&cfg, &action("flood", &[], &[], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Succeeded, "{r:?}");
        assert_eq!(r.response_excerpt.as_deref(), Some("yyyyyyyyyy"));
    }

    #[test]
    fn excerpt_cuts_at_a_char_boundary() {
        let text = "é".repeat(MAX_ATTEMPT_RESPONSE_BYTES); // two bytes each
        let cut = excerpt(format!("a{text}").as_bytes()).unwrap();
        assert_eq!(cut.len(), MAX_ATTEMPT_RESPONSE_BYTES - 1);
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b"ok\xff").as_deref(), Some("ok\u{fffd}"));
    }

    #[tokio::test]
    async fn non_zero_exit_is_retryable_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &[("fail", "/bin/sh", &["-c", "echo oops >&2; exit 3"])],
        );
        let r = run_command(&cfg, &action("fail", &[], &[], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Retryable);
        assert_eq!(r.exit_code, Some(3));
        assert!(r.error.unwrap().contains("exited with status 3"));
        assert_eq!(r.response_excerpt.as_deref(), Some("oops\n"));
    }

    #[tokio::test]
    async fn death_by_signal_is_retryable_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &[("die", "/bin/sh", &["-c", "kill -KILL $$"])]);
        let r = run_command(&cfg, &action("die", &[], &[], None)).await;
        assert_eq!(r.outcome, AttemptOutcome::Retryable);
        assert_eq!(r.exit_code, None);
        assert!(r.error.unwrap().contains("signal 9 (SIGKILL)"));
    }

    #[tokio::test]
    async fn missing_or_non_executable_program_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let not_exec = dir.path().join("not-exec");
        std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
        let cfg = config(
            dir.path(),
            &[
                ("missing", "/nonexistent/minoots-no-such-program", &[]),
                ("noexec", not_exec.to_str().unwrap(), &[]),
            ],
        );
        for name in ["missing", "noexec"] {
            let r = run_command(&cfg, &action(name, &[], &[], None)).await;
            assert_eq!(r.outcome, AttemptOutcome::Permanent, "{name}: {r:?}");
            assert!(r.error.unwrap().contains("could not be started"));
        }
    }

    #[test]
    fn check_refuses_relative_programs_and_bad_working_dirs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            CommandConfig::default().check(),
            Ok(()),
            "commands off: nothing to check"
        );
        assert!(!CommandConfig::default().enabled());

        let ok = config(dir.path(), &[("env", "/usr/bin/env", &[])]);
        assert!(ok.enabled());
        assert_eq!(ok.check(), Ok(()));

        let relative = config(dir.path(), &[("env", "env", &[])]);
        let e = relative.check().unwrap_err();
        assert!(matches!(e, CommandConfigError::RelativeProgram { .. }));
        assert!(e.to_string().contains("absolute path"), "{e}");

        let missing = config(&dir.path().join("nope"), &[("env", "/usr/bin/env", &[])]);
        let e = missing.check().unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");

        let not_dir = config(Path::new("/usr/bin/env"), &[("env", "/usr/bin/env", &[])]);
        assert!(
            not_dir
                .check()
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );

        let no_dir = config(Path::new(""), &[("env", "/usr/bin/env", &[])]);
        assert!(matches!(
            no_dir.check(),
            Err(CommandConfigError::WorkingDir { .. })
        ));

        let bad_name = config(dir.path(), &[("../env", "/usr/bin/env", &[])]);
        assert!(matches!(
            bad_name.check(),
            Err(CommandConfigError::BadName { .. })
        ));

        let mut huge = ok.clone();
        huge.max_output_bytes = MAX_OUTPUT_BYTES_LIMIT + 1;
        assert!(matches!(
            huge.check(),
            Err(CommandConfigError::OutputTooLarge(_))
        ));
        let mut slow = ok;
        slow.kill_grace = MAX_KILL_GRACE + Duration::from_secs(1);
        assert!(matches!(
            slow.check(),
            Err(CommandConfigError::KillGraceTooLong(_))
        ));
    }
}
