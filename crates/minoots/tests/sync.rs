//! Acknowledged means synced. A SIGKILL keeps the page cache, so crash tests cannot see
//! a missing sync; these tests can. The first runs a real `minoots serve` under `strace`,
//! creates timers over the REST API one after another, and checks in the trace that every
//! create was answered (the HTTP response written to its socket) only after an
//! fsync/fdatasync of the WAL file that holds it: a sync that started after the commit
//! frame of the transaction holding the timer was written, and returned before the
//! answer. The second checks that every connection that writes the database files runs
//! with `synchronous = FULL`. Either fails if the writer's `synchronous` is NORMAL or OFF.
//!
//! When `strace` is not installed the first test prints "skipped: strace not installed"
//! (CI installs it).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::free_port;
use minoots_core::{Clock, SystemClock};
use minoots_store::{SqliteConfig, SqliteStore, Store};

/// Creates checked, one after another (the demo tenant's tier allows 5 pending timers):
/// with a WAL left unsynced by the writer, a checkpoint's sync (every 100 ms) landing by
/// chance between every commit and its answer is out of reach.
const CREATES: usize = 5;
/// Bytes of each buffer strace prints: a whole 4 KiB WAL page and an HTTP answer.
const STRACE_STRING_BYTES: &str = "8192";
/// How long a traced server may take to start or to answer (tracing slows it).
const TRACED_WAIT: Duration = Duration::from_secs(120);
/// `PRAGMA synchronous` FULL.
const SYNCHRONOUS_FULL: i64 = 2;

#[test]
fn every_connection_that_writes_syncs_fully() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            SqliteConfig::new(dir.path()),
            Arc::new(SystemClock) as Arc<dyn Clock>,
        )
        .unwrap();
        let conns = store.writing_connections_synchronous().await.unwrap();
        assert!(conns.iter().any(|(name, _)| *name == "writer"), "{conns:?}");
        for (name, level) in &conns {
            assert_eq!(
                *level, SYNCHRONOUS_FULL,
                "the {name} connection must run with synchronous = FULL: {conns:?}"
            );
        }
        store.close().await;
    });
}

/// strace and the server it runs; SIGKILLs the server when dropped, so a failing test
/// leaves nothing running.
struct Traced(Child);

impl Traced {
    /// Sends `signal` to the server: strace's child running the `minoots` binary (strace
    /// also starts short-lived probe children of its own).
    fn signal_server(&self, signal: i32) -> bool {
        let me = std::fs::canonicalize(env!("CARGO_BIN_EXE_minoots")).ok();
        let strace = self.0.id();
        let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
            .unwrap_or_default();
        let mut sent = false;
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if std::fs::read_link(format!("/proc/{pid}/exe")).ok() == me {
                // SAFETY: signalling the server process this test started.
                sent |= unsafe { libc::kill(pid, signal) } == 0;
            }
        }
        sent
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        self.signal_server(libc::SIGKILL);
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_create_was_synced_to_the_wal_before_its_answer() {
    if Command::new("strace").arg("-V").output().is_err() {
        println!("skipped: strace not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("strace.log");
    let port = free_port();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-xx", "-s", STRACE_STRING_BYTES])
        .args(["-e", "signal=none"])
        .args([
            "-e",
            "trace=write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,fsync,fdatasync",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_minoots"))
        .args(["serve", "--demo", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
        .env("MINOOTS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strace");
    let stdout = strace.stdout.take().unwrap();
    let traced = Traced(strace);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("minoots ready on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(TRACED_WAIT)
        .expect("the traced server became ready");

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(TRACED_WAIT)
        .build()
        .unwrap();
    let run = fastrand::u64(..);
    let mut created = Vec::new();
    for i in 0..CREATES {
        let name = format!("sync-probe-{run:016x}-{i:03}");
        let resp = http
            .post(format!("http://127.0.0.1:{port}/timers"))
            .header("X-API-Key", "mnt_demo_key_free")
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"name": "{name}", "duration": "1h"}}"#))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(resp.status(), 201, "create {i}");
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let id = body["id"].as_str().expect("an id").to_string();
        created.push((name, id));
    }

    // A graceful stop ends the trace, then strace exits with the server.
    assert!(
        traced.signal_server(libc::SIGTERM),
        "the server runs under strace"
    );
    let mut traced = traced;
    let waited = tokio::task::spawn_blocking(move || {
        let status = traced.0.wait();
        (traced, status)
    });
    let (traced, status) = tokio::time::timeout(TRACED_WAIT, waited)
        .await
        .expect("the traced server stops on SIGTERM")
        .unwrap();
    drop(traced);
    assert!(status.unwrap().success(), "strace and the server exit 0");

    let calls = parse_trace(&std::fs::read_to_string(&trace).unwrap());
    let wal_syncs = calls.iter().filter(|c| c.is_wal_sync()).count();
    let mut unsynced = Vec::new();
    for (name, id) in &created {
        let commit = commit_frame_holding(&calls, name.as_bytes())
            .unwrap_or_else(|| panic!("no committed WAL frame holds timer {name}"));
        let ack = calls
            .iter()
            .find(|c| c.is_socket_write() && contains(&c.data, id.as_bytes()))
            .unwrap_or_else(|| panic!("no answer on a socket carries timer {id}"));
        assert!(
            commit.done < ack.start,
            "timer {id} answered before its commit"
        );
        let synced = calls.iter().any(|c| {
            c.is_wal_sync() && c.ret == Some(0) && c.start > commit.done && c.done < ack.start
        });
        if !synced {
            unsynced.push(id.clone());
        }
    }
    assert!(
        unsynced.is_empty(),
        "{} of {CREATES} creates were answered before the WAL holding them was synced \
         ({wal_syncs} WAL syncs in the trace): {unsynced:?}",
        unsynced.len()
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One system call of the trace. `start` and `done` are the indexes of the lines where it
/// began and returned: strace prints a call's return before the thread that made it can
/// run on, so a call whose `done` is below another's `start` returned before it began.
#[derive(Debug)]
struct Call {
    start: usize,
    done: usize,
    pid: u32,
    name: String,
    /// What strace shows for the first argument's file descriptor (`-yy`): a path, `TCP:[…]`.
    fd_target: String,
    /// Every buffer the call wrote, decoded, one after another.
    data: Vec<u8>,
    ret: Option<i64>,
}

impl Call {
    fn is_wal_sync(&self) -> bool {
        matches!(self.name.as_str(), "fsync" | "fdatasync") && self.fd_target.ends_with("-wal")
    }

    fn is_wal_write(&self) -> bool {
        matches!(
            self.name.as_str(),
            "pwrite64" | "pwritev" | "pwritev2" | "write"
        ) && self.fd_target.ends_with("-wal")
    }

    fn is_socket_write(&self) -> bool {
        matches!(
            self.name.as_str(),
            "write" | "writev" | "sendto" | "sendmsg"
        ) && self.fd_target.starts_with("TCP")
    }
}

/// The page write that ends the transaction holding `needle`: after the first WAL page
/// holding it, the first frame (by the same thread) whose 24-byte header marks a commit
/// (a non-zero database size, bytes 4..8).
fn commit_frame_holding<'a>(calls: &'a [Call], needle: &[u8]) -> Option<&'a Call> {
    let first = calls
        .iter()
        .position(|c| c.is_wal_write() && contains(&c.data, needle))?;
    let pid = calls[first].pid;
    let frames: Vec<&Call> = calls
        .iter()
        .filter(|c| c.pid == pid && c.is_wal_write())
        .collect();
    let at = frames
        .iter()
        .position(|c| std::ptr::eq(*c, &calls[first]))?;
    // The header of the first page holding it is the write just before it.
    let mut i = at.checked_sub(1)?;
    while i + 1 < frames.len() {
        let (header, page) = (frames[i], frames[i + 1]);
        if header.data.len() == 24 {
            let size = u32::from_be_bytes(header.data[4..8].try_into().unwrap());
            if size != 0 {
                return Some(page);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// Parses `strace -f -yy -xx` output, joining calls split into `<unfinished ...>` and
/// `<... resumed>` lines.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut open: HashMap<u32, (usize, String)> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid, (index, head.to_string()));
            continue;
        }
        let (start, whole) = if let Some(tail) = rest.strip_prefix("<... ") {
            let Some((_, after)) = tail.split_once(" resumed>") else {
                continue;
            };
            match open.remove(&pid) {
                Some((start, head)) => (start, format!("{head}{after}")),
                None => continue,
            }
        } else {
            (index, rest.to_string())
        };
        if let Some(call) = parse_call(start, index, pid, &whole) {
            calls.push(call);
        }
    }
    calls
}

/// One joined call: `name(fd<target>, "\x..", len, offset) = ret`.
fn parse_call(start: usize, done: usize, pid: u32, text: &str) -> Option<Call> {
    let (name, args) = text.split_once('(')?;
    let fd_target = args
        .split_once('<')
        .and_then(|(fd, t)| {
            fd.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| t.split_once('>'))
        })
        .flatten()
        .map(|(t, _)| String::from_utf8_lossy(&decode(t)).into_owned())
        .unwrap_or_default();
    // `) = 0`, or `)              = 0` after a resumed call (strace pads it); the
    // strings are hex-escaped (`-xx`), so the last `)` closes the arguments.
    let ret = text
        .rfind(')')
        .and_then(|i| text[i + 1..].trim_start().strip_prefix('='))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok());
    let data = decode_strings(args);
    Some(Call {
        start,
        done,
        pid,
        name: name.to_string(),
        fd_target,
        data,
        ret,
    })
}

/// Decodes every `"\xNN…"` string of `args` (strace `-xx`) into one byte buffer.
fn decode_strings(args: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(open) = rest.find('"') {
        let body = &rest[open + 1..];
        let Some(close) = body.find('"') else { break };
        out.extend(decode(&body[..close]));
        rest = &body[close + 1..];
    }
    out
}

/// Decodes strace's `\xNN` escapes (`-xx`); other characters are kept as they are.
fn decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4);
    let mut i = 0;
    while i < s.len() {
        match s.get(i + 2..i + 4).map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(b)) if s.as_bytes()[i..].starts_with(b"\\x") => {
                out.push(b);
                i += 4;
            }
            _ => {
                out.push(s.as_bytes()[i]);
                i += 1;
            }
        }
    }
    out
}

#[test]
fn a_call_split_by_another_thread_is_joined_with_its_return() {
    let trace = "\
7 fsync(12</db-wal> <unfinished ...>
8 fsync(20</db-wal> <unfinished ...>
8 <... fsync resumed>)              = 0
7 <... fsync resumed>)              = 0
9 writev(25<TCP:[1->2]>, [{iov_base=\"\\x48\\x49\", iov_len=2}], 1) = 2
";
    let calls = parse_trace(trace);
    let sync = calls.iter().find(|c| c.pid == 7).expect("the joined fsync");
    assert!(sync.is_wal_sync());
    assert_eq!((sync.start, sync.done, sync.ret), (0, 3, Some(0)));
    let answer = calls.iter().find(|c| c.pid == 9).expect("the socket write");
    assert!(answer.is_socket_write());
    assert_eq!(
        (answer.data.as_slice(), answer.ret),
        (b"HI".as_slice(), Some(2))
    );
}
