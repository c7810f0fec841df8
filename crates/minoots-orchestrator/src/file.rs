//! File actions: appending a JSON line to, or atomically replacing, a file under the
//! operator-configured root directory.
//!
//! This module owns the path walk from the root to the target file, the write itself and
//! the mapping of what went wrong to an attempt outcome. File actions are off unless the
//! operator configures a root. The walk is done on directory file descriptors
//! (`openat`/`mkdirat` with `O_NOFOLLOW`), one component at a time, so a path is resolved
//! exactly once and a symbolic link planted anywhere under the root, or swapped in while a
//! write is under way, is refused instead of followed.
//!
//! It must never write outside the root, never follow a symbolic link below the root,
//! and never report success before the data (and any new directory entry) is on disk.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use minoots_core::limits::MAX_FILE_PATH_BYTES;
use minoots_core::{AttemptOutcome, FileAction, FileMode};

use crate::ExecResult;

/// Default bound on the size of one file written by file actions: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Permissions of the directories file actions create (before the umask).
const DIR_MODE: libc::mode_t = 0o755;
/// Permissions of the files file actions create (before the umask).
const FILE_MODE: libc::mode_t = 0o644;
/// Prefix of the temporary files an overwrite writes before renaming them into place, so
/// an operator can recognise (and delete) one a crash left behind.
const TEMP_PREFIX: &str = ".minoots-tmp-";
/// How many temporary names an overwrite tries before giving up; a name only collides
/// with a file left by a crashed process that had the same pid.
const MAX_TEMP_NAME_TRIES: u32 = 16;

/// Makes temporary file names unique within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where file actions may write, set by the operator. Without one, file actions are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The directory every file action path is relative to. Tenants choose paths, so
    /// nothing may ever be written outside it; the root itself may be reached through a
    /// symbolic link (it is canonicalised), but nothing below it may be.
    pub root: PathBuf,
    /// The largest a file may become through file actions, in bytes
    /// ([`DEFAULT_MAX_FILE_BYTES`] by default), so a timer firing every second cannot
    /// fill the operator's disk. An append that would grow a file past it, or an
    /// overwrite with more than this, fails permanently.
    pub max_file_bytes: u64,
}

impl FileConfig {
    /// A root with the default size bound.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Refuses a root that does not exist or is not a directory, and a zero size bound.
    /// Run it at startup so a typo fails the server instead of every file action.
    pub fn check(&self) -> Result<(), FileError> {
        if self.max_file_bytes == 0 {
            return Err(FileError::ZeroMaxFileBytes);
        }
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(FileError::RootNotDirectory(self.root.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(FileError::RootMissing(self.root.clone()))
            }
            Err(source) => Err(FileError::RootUnusable {
                path: self.root.clone(),
                source,
            }),
        }
    }
}

/// Why a file action (or the file configuration) was refused or failed. Messages of the
/// errors a file action returns are shown to the tenant and so name only the relative
/// path, never the operator's root.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file actions are not enabled on this server")]
    NotEnabled,
    #[error("the file root {0} does not exist")]
    RootMissing(PathBuf),
    #[error("the file root {0} is not a directory")]
    RootNotDirectory(PathBuf),
    #[error("the file root {path} cannot be used: {source}")]
    RootUnusable { path: PathBuf, source: io::Error },
    #[error("the maximum file size for file actions must be at least 1 byte")]
    ZeroMaxFileBytes,
    #[error("the server's file root is not available: {0}")]
    RootUnavailable(io::Error),
    #[error(
        "the path \"{0}\" is refused: it must be a relative path to a file under the file root, without \"..\", empty segments or backslashes"
    )]
    InvalidPath(String),
    #[error(
        "\"{0}\" is a symbolic link; file actions never follow links, so nothing can be written outside the file root"
    )]
    Symlink(String),
    #[error("\"{0}\" exists and is not a directory")]
    NotADirectory(String),
    #[error("\"{0}\" is a directory, not a file")]
    IsADirectory(String),
    #[error("\"{0}\" is not a regular file")]
    NotRegularFile(String),
    #[error(
        "writing {len} bytes to \"{path}\" would make it {total} bytes, over this server's limit of {max} bytes per file"
    )]
    TooLarge {
        path: String,
        len: u64,
        total: u64,
        max: u64,
    },
    #[error("could not {op} \"{path}\": {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
}

impl FileError {
    /// Whether trying again later may help: a full disk or an I/O error may clear, a bad
    /// path, a link, a size overrun or a permission problem will not.
    pub fn outcome(&self) -> AttemptOutcome {
        match self {
            FileError::RootUnavailable(_) => AttemptOutcome::Retryable,
            FileError::Io { source, .. } => io_outcome(source),
            _ => AttemptOutcome::Permanent,
        }
    }
}

/// Classifies an OS error; unknown errors are assumed transient, since the retry policy
/// bounds how often they are retried.
fn io_outcome(e: &io::Error) -> AttemptOutcome {
    match e.raw_os_error() {
        Some(
            libc::EACCES
            | libc::EPERM
            | libc::EISDIR
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::ENAMETOOLONG
            | libc::EINVAL
            | libc::EFBIG,
        ) => AttemptOutcome::Permanent,
        _ if e.kind() == io::ErrorKind::PermissionDenied => AttemptOutcome::Permanent,
        _ => AttemptOutcome::Retryable,
    }
}

/// Executes one file action: writes `action.content`, or the event envelope when it has
/// none, as one line of compact JSON. Success is reported only once the data is on disk.
pub async fn run_file(
    config: Option<&FileConfig>,
    action: &FileAction,
    envelope: &serde_json::Value,
) -> ExecResult {
    let Some(config) = config else {
        return ExecResult::failure(AttemptOutcome::Permanent, FileError::NotEnabled.to_string());
    };
    let value = action.content.as_ref().unwrap_or(envelope);
    let mut line = match serde_json::to_vec(value) {
        Ok(line) => line,
        Err(e) => {
            return ExecResult::failure(
                AttemptOutcome::Permanent,
                format!("the content could not be written as JSON: {e}"),
            );
        }
    };
    line.push(b'\n');
    let root = config.root.clone();
    let max_file_bytes = config.max_file_bytes;
    let path = action.path.clone();
    let mode = action.mode;
    let written =
        tokio::task::spawn_blocking(move || write_file(&root, max_file_bytes, &path, mode, &line))
            .await;
    match written {
        Ok(Ok(())) => ExecResult::success(),
        Ok(Err(e)) => {
            if let FileError::Symlink(link) = &e {
                tracing::warn!(path = %action.path, link = %link, "file action refused: symbolic link under the file root");
            }
            ExecResult::failure(e.outcome(), e.to_string())
        }
        Err(e) => ExecResult::failure(
            AttemptOutcome::Retryable,
            format!("the file write did not finish: {e}"),
        ),
    }
}

/// The blocking part of [`run_file`]: resolves `path` under `root` and writes `line`.
fn write_file(
    root: &Path,
    max_file_bytes: u64,
    path: &str,
    mode: FileMode,
    line: &[u8],
) -> Result<(), FileError> {
    let (parents, file_name) = split_path(path)?;
    let root = std::fs::canonicalize(root).map_err(FileError::RootUnavailable)?;
    let mut dir = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&root)
        .map_err(FileError::RootUnavailable)?;

    let mut shown = String::new();
    for segment in parents {
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(segment);
        dir = open_or_create_dir(&dir, &c_name(segment, path)?, &shown)?;
    }
    if !shown.is_empty() {
        shown.push('/');
    }
    shown.push_str(file_name);
    let name = c_name(file_name, path)?;
    match mode {
        FileMode::Append => append(&dir, &name, &shown, max_file_bytes, line),
        FileMode::Overwrite => overwrite(&dir, &name, &shown, max_file_bytes, line),
    }
}

/// Splits a tenant path into its directory segments and file name, refusing anything core
/// validation should already have refused (the check is repeated, not trusted). `.`
/// segments are skipped, except as the last one, which names a directory.
fn split_path(path: &str) -> Result<(Vec<&str>, &str), FileError> {
    let invalid = || FileError::InvalidPath(path.to_string());
    if path.is_empty()
        || path.len() > MAX_FILE_PATH_BYTES
        || path.starts_with('/')
        || path.contains(['\\', '\0'])
    {
        return Err(invalid());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || *s == "..") || segments.last() == Some(&".") {
        return Err(invalid());
    }
    let mut segments: Vec<&str> = segments.into_iter().filter(|s| *s != ".").collect();
    let file_name = segments.pop().ok_or_else(invalid)?;
    Ok((segments, file_name))
}

fn c_name(segment: &str, path: &str) -> Result<CString, FileError> {
    CString::new(segment).map_err(|_| FileError::InvalidPath(path.to_string()))
}

/// Opens the directory `name` under `dir` without following a link, creating it (and
/// making its entry durable) when it is missing.
fn open_or_create_dir(dir: &File, name: &CStr, shown: &str) -> Result<File, FileError> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    match open_at(dir, name, flags, 0) {
        Ok(d) => return Ok(d),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(component_error(dir, name, shown, e, "open the directory")),
    }
    match mkdir_at(dir, name, DIR_MODE) {
        Ok(()) => dir.sync_all().map_err(|source| FileError::Io {
            op: "make the new directory durable",
            path: shown.to_string(),
            source,
        })?,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(source) => {
            return Err(FileError::Io {
                op: "create the directory",
                path: shown.to_string(),
                source,
            });
        }
    }
    open_at(dir, name, flags, 0)
        .map_err(|e| component_error(dir, name, shown, e, "open the directory"))
}

/// Names what an `openat` with `O_NOFOLLOW` ran into.
fn component_error(
    dir: &File,
    name: &CStr,
    shown: &str,
    e: io::Error,
    op: &'static str,
) -> FileError {
    let is_link = || lstat_at(dir, name).is_ok_and(|m| m == libc::S_IFLNK);
    match e.raw_os_error() {
        Some(libc::ELOOP) => FileError::Symlink(shown.to_string()),
        Some(libc::ENOTDIR) if is_link() => FileError::Symlink(shown.to_string()),
        Some(libc::ENOTDIR) => FileError::NotADirectory(shown.to_string()),
        Some(libc::EISDIR) => FileError::IsADirectory(shown.to_string()),
        _ => FileError::Io {
            op,
            path: shown.to_string(),
            source: e,
        },
    }
}

/// Appends `line` in one write and syncs it. If the file's last line was torn by an
/// earlier failed write, a newline is written first so this line stands on its own.
fn append(
    dir: &File,
    name: &CStr,
    shown: &str,
    max_file_bytes: u64,
    line: &[u8],
) -> Result<(), FileError> {
    let io_err = |op| {
        move |source| FileError::Io {
            op,
            path: shown.to_string(),
            source,
        }
    };
    // O_NONBLOCK: opening a FIFO planted under the root must not hang; it is refused below.
    let flags = libc::O_RDWR | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let (mut file, created) = loop {
        match open_at(dir, name, flags, 0) {
            Ok(f) => break (f, false),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(component_error(dir, name, shown, e, "open")),
        }
        match open_at(dir, name, flags | libc::O_CREAT | libc::O_EXCL, FILE_MODE) {
            Ok(f) => break (f, true),
            // Created by someone else in between (or it is a link): open it again.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(component_error(dir, name, shown, e, "create")),
        }
    };
    let meta = file.metadata().map_err(io_err("inspect"))?;
    if !meta.is_file() {
        return Err(FileError::NotRegularFile(shown.to_string()));
    }
    let len = meta.len();
    let mut last = [0u8; 1];
    let torn = len > 0 && {
        file.read_exact_at(&mut last, len - 1)
            .map_err(io_err("read"))?;
        last[0] != b'\n'
    };
    let data: std::borrow::Cow<[u8]> = if torn {
        [b"\n", line].concat().into()
    } else {
        line.into()
    };
    let total = len.saturating_add(data.len() as u64);
    if total > max_file_bytes {
        return Err(FileError::TooLarge {
            path: shown.to_string(),
            len: data.len() as u64,
            total,
            max: max_file_bytes,
        });
    }
    file.write_all(&data).map_err(io_err("append to"))?;
    file.sync_data().map_err(io_err("sync"))?;
    if created {
        dir.sync_all()
            .map_err(io_err("make the new file durable"))?;
    }
    Ok(())
}

/// Replaces the file with `line`: writes a temporary file beside it, syncs it, renames it
/// over the target and syncs the directory. The temporary file never outlives an error.
fn overwrite(
    dir: &File,
    name: &CStr,
    shown: &str,
    max_file_bytes: u64,
    line: &[u8],
) -> Result<(), FileError> {
    let io_err = |op| {
        move |source| FileError::Io {
            op,
            path: shown.to_string(),
            source,
        }
    };
    let len = line.len() as u64;
    if len > max_file_bytes {
        return Err(FileError::TooLarge {
            path: shown.to_string(),
            len,
            total: len,
            max: max_file_bytes,
        });
    }
    match lstat_at(dir, name) {
        Ok(libc::S_IFLNK) => return Err(FileError::Symlink(shown.to_string())),
        Ok(libc::S_IFDIR) => return Err(FileError::IsADirectory(shown.to_string())),
        Ok(libc::S_IFREG) => {}
        Ok(_) => return Err(FileError::NotRegularFile(shown.to_string())),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(io_err("inspect")(e)),
    }
    let (temp_name, mut temp) = create_temp(dir).map_err(io_err("create a temporary file for"))?;
    let replaced = temp
        .write_all(line)
        .map_err(io_err("write a temporary file for"))
        .and_then(|()| temp.sync_all().map_err(io_err("sync a temporary file for")))
        .and_then(|()| rename_at(dir, &temp_name, name).map_err(io_err("replace")));
    if let Err(e) = replaced {
        // Best effort: the error being reported matters more than a failed cleanup.
        let _ = unlink_at(dir, &temp_name);
        return Err(e);
    }
    dir.sync_all()
        .map_err(io_err("make the replacement durable for"))
}

/// Creates a new, empty temporary file in `dir` with `O_EXCL`, so it is never an existing
/// file or a link.
fn create_temp(dir: &File) -> io::Result<(CString, File)> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let mut tries = 0;
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = CString::new(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
            .expect("a temporary name has no NUL byte");
        match open_at(dir, &name, flags, FILE_MODE) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < MAX_TEMP_NAME_TRIES => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `openat(2)` relative to `dir`; `O_CLOEXEC` is always added.
fn open_at(dir: &File, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both alive
    // for the call.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn mkdir_at(dir: &File, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: as in `open_at`.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

fn rename_at(dir: &File, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: as in `open_at`.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })
        .map(drop)
}

fn unlink_at(dir: &File, name: &CStr) -> io::Result<()> {
    // SAFETY: as in `open_at`.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// The file type bits (`S_IFMT`) of `name` in `dir`, not following a link.
fn lstat_at(dir: &File, name: &CStr) -> io::Result<libc::mode_t> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as in `open_at`; `st` is large enough for a `stat`.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: `fstatat` succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::os::unix::fs::symlink;

    fn action(path: &str, mode: FileMode, content: Option<Value>) -> FileAction {
        FileAction {
            path: path.to_string(),
            mode,
            content,
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("file exists")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn assert_permanent(r: &ExecResult, needle: &str) {
        assert_eq!(r.outcome, AttemptOutcome::Permanent, "{r:?}");
        let error = r.error.as_deref().expect("an error sentence");
        assert!(
            error.contains(needle),
            "{error:?} should mention {needle:?}"
        );
    }

    #[tokio::test]
    async fn append_twice_writes_two_lines_in_order() {
        let root = tempfile::tempdir().unwrap();
        let config = FileConfig::new(root.path());
        let envelope = json!({"type": "timer.fired", "seq": 1});
        let r = run_file(
            Some(&config),
            &action("out.jsonl", FileMode::Append, None),
            &envelope,
        )
        .await;
        assert_eq!(r, ExecResult::success());
        let content = json!({"hello": "a\nb"});
        let a = action("out.jsonl", FileMode::Append, Some(content.clone()));
        assert_eq!(
            run_file(Some(&config), &a, &envelope).await,
            ExecResult::success()
        );
        assert_eq!(
            lines(&root.path().join("out.jsonl")),
            vec![envelope, content]
        );
    }

    #[tokio::test]
    async fn append_closes_a_torn_last_line_first() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("out.jsonl"), "{\"torn\":").unwrap();
        let config = FileConfig::new(root.path());
        let r = run_file(
            Some(&config),
            &action("out.jsonl", FileMode::Append, None),
            &json!(7),
        )
        .await;
        assert_eq!(r, ExecResult::success());
        let text = std::fs::read_to_string(root.path().join("out.jsonl")).unwrap();
        assert_eq!(text, "{\"torn\":\n7\n");
    }

    #[tokio::test]
    async fn overwrite_replaces_content_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let config = FileConfig::new(root.path());
        std::fs::write(root.path().join("state.json"), "old\nold\n").unwrap();
        let a = action("state.json", FileMode::Overwrite, Some(json!({"v": 2})));
        assert_eq!(
            run_file(Some(&config), &a, &json!(null)).await,
            ExecResult::success()
        );
        let b = action("state.json", FileMode::Overwrite, None);
        let envelope = json!({"v": 3});
        assert_eq!(
            run_file(Some(&config), &b, &envelope).await,
            ExecResult::success()
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("state.json")).unwrap(),
            "{\"v\":3}\n"
        );
        assert_eq!(dir_names(root.path()), vec!["state.json"]);
    }

    #[tokio::test]
    async fn nested_path_creates_directories() {
        let root = tempfile::tempdir().unwrap();
        let config = FileConfig::new(root.path());
        let r = run_file(
            Some(&config),
            &action("a/b/c.jsonl", FileMode::Append, None),
            &json!(1),
        )
        .await;
        assert_eq!(r, ExecResult::success());
        let r = run_file(
            Some(&config),
            &action("a/./b/d.json", FileMode::Overwrite, None),
            &json!(2),
        )
        .await;
        assert_eq!(r, ExecResult::success());
        assert_eq!(lines(&root.path().join("a/b/c.jsonl")), vec![json!(1)]);
        assert_eq!(lines(&root.path().join("a/b/d.json")), vec![json!(2)]);
    }

    #[tokio::test]
    async fn symlinked_directory_under_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("link")).unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        symlink(outside.path(), root.path().join("real/deeper")).unwrap();
        let config = FileConfig::new(root.path());
        for path in ["link/x.jsonl", "real/deeper/x.jsonl", "link/new/x.jsonl"] {
            for mode in [FileMode::Append, FileMode::Overwrite] {
                let r = run_file(Some(&config), &action(path, mode, None), &json!(1)).await;
                assert_permanent(&r, "symbolic link");
            }
        }
        assert!(
            dir_names(outside.path()).is_empty(),
            "nothing written outside the root"
        );
    }

    #[tokio::test]
    async fn symlinked_final_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim.jsonl");
        std::fs::write(&target, "original\n").unwrap();
        symlink(&target, root.path().join("f.jsonl")).unwrap();
        let config = FileConfig::new(root.path());
        for mode in [FileMode::Append, FileMode::Overwrite] {
            let r = run_file(Some(&config), &action("f.jsonl", mode, None), &json!(1)).await;
            assert_permanent(&r, "symbolic link");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "original\n");
        assert!(
            std::fs::symlink_metadata(root.path().join("f.jsonl"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(
            dir_names(root.path()),
            vec!["f.jsonl"],
            "no temp file left behind"
        );
    }

    #[tokio::test]
    async fn root_reached_through_a_symlink_is_allowed() {
        let holder = tempfile::tempdir().unwrap();
        let real = holder.path().join("real");
        std::fs::create_dir(&real).unwrap();
        symlink(&real, holder.path().join("root")).unwrap();
        let config = FileConfig::new(holder.path().join("root"));
        let r = run_file(
            Some(&config),
            &action("x.jsonl", FileMode::Append, None),
            &json!(1),
        )
        .await;
        assert_eq!(r, ExecResult::success());
        assert_eq!(lines(&real.join("x.jsonl")), vec![json!(1)]);
    }

    #[tokio::test]
    async fn escaping_paths_are_refused_even_without_core_validation() {
        let holder = tempfile::tempdir().unwrap();
        let root = holder.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let config = FileConfig::new(&root);
        let absolute = holder.path().join("abs.jsonl");
        let long = "a".repeat(MAX_FILE_PATH_BYTES + 1);
        let paths = [
            "../escape.jsonl",
            "a/../../escape.jsonl",
            "..",
            absolute.to_str().unwrap(),
            "",
            "a//b.jsonl",
            "a\\b.jsonl",
            "a/b/",
            "a/.",
            ".",
            "nul\0.jsonl",
            long.as_str(),
        ];
        for path in paths {
            for mode in [FileMode::Append, FileMode::Overwrite] {
                let r = run_file(Some(&config), &action(path, mode, None), &json!(1)).await;
                assert_permanent(&r, "is refused");
            }
        }
        assert_eq!(dir_names(holder.path()), vec!["root"]);
        assert!(dir_names(&root).is_empty());
    }

    #[tokio::test]
    async fn directories_and_files_in_the_way_are_permanent() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("f"), "x\n").unwrap();
        let config = FileConfig::new(root.path());
        for mode in [FileMode::Append, FileMode::Overwrite] {
            let r = run_file(Some(&config), &action("d", mode, None), &json!(1)).await;
            assert_permanent(&r, "is a directory");
            let r = run_file(Some(&config), &action("f/x.jsonl", mode, None), &json!(1)).await;
            assert_permanent(&r, "not a directory");
        }
        assert_eq!(dir_names(root.path()), vec!["d", "f"]);
    }

    #[tokio::test]
    async fn no_config_means_not_enabled() {
        let r = run_file(None, &action("x.jsonl", FileMode::Append, None), &json!(1)).await;
        assert_permanent(&r, "file actions are not enabled on this server");
    }

    #[tokio::test]
    async fn exceeding_max_file_bytes_is_permanent_and_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let config = FileConfig {
            root: root.path().to_path_buf(),
            max_file_bytes: 10,
        };
        let small = action("x.jsonl", FileMode::Append, Some(json!("abcdef")));
        // "\"abcdef\"\n" is 9 bytes: the first fits, the second would make 18.
        assert_eq!(
            run_file(Some(&config), &small, &json!(null)).await,
            ExecResult::success()
        );
        let r = run_file(Some(&config), &small, &json!(null)).await;
        assert_permanent(&r, "over this server's limit of 10 bytes");
        assert_eq!(lines(&root.path().join("x.jsonl")), vec![json!("abcdef")]);
        let big = action("y.json", FileMode::Overwrite, Some(json!("0123456789")));
        let r = run_file(Some(&config), &big, &json!(null)).await;
        assert_permanent(&r, "over this server's limit");
        assert_eq!(dir_names(root.path()), vec!["x.jsonl"]);
    }

    #[test]
    fn check_refuses_missing_or_non_directory_roots() {
        let holder = tempfile::tempdir().unwrap();
        assert!(FileConfig::new(holder.path()).check().is_ok());
        let missing = FileConfig::new(holder.path().join("missing"));
        assert!(matches!(missing.check(), Err(FileError::RootMissing(_))));
        let file = holder.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            FileConfig::new(&file).check(),
            Err(FileError::RootNotDirectory(_))
        ));
        let zero = FileConfig {
            max_file_bytes: 0,
            ..FileConfig::new(holder.path())
        };
        assert!(matches!(zero.check(), Err(FileError::ZeroMaxFileBytes)));
    }

    #[test]
    fn disk_errors_retry_and_permission_errors_do_not() {
        for errno in [libc::ENOSPC, libc::EIO, libc::EDQUOT, libc::EROFS] {
            assert_eq!(
                io_outcome(&io::Error::from_raw_os_error(errno)),
                AttemptOutcome::Retryable
            );
        }
        for errno in [libc::EACCES, libc::EPERM, libc::ENAMETOOLONG] {
            assert_eq!(
                io_outcome(&io::Error::from_raw_os_error(errno)),
                AttemptOutcome::Permanent
            );
        }
        let e = FileError::Io {
            op: "append to",
            path: "x".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(e.outcome(), AttemptOutcome::Retryable);
        assert!(
            e.to_string().starts_with("could not append to \"x\": "),
            "{e}"
        );
    }
}
