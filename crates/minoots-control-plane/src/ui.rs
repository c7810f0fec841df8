//! `/ui`: the dashboard, a single-page app whose files are compiled into the binary
//! (`include_bytes!` of `crates/minoots-control-plane/ui/`), so `minoots serve` started
//! from any directory serves the same pages with no build step and no files on disk.
//!
//! It owns serving those files and nothing else: the app calls only the public REST API
//! (sign-in included, at `/ui/session`, which is routed elsewhere). `/ui`, `/ui/` and any
//! `/ui/...` path whose last segment has no dot (a client route such as `/ui/timers/{id}`)
//! answer `index.html`, so a reload or a shared link opens the same view; a path with a
//! dot that names no file is a 404. Every answer carries a strict Content-Security-Policy
//! (no inline script or style, no eval, no framing), `nosniff` and a same-origin referrer
//! policy. Files answer with an ETag and `no-cache` (revalidated, 304 when unchanged),
//! except the vendored library, whose name carries its version and which is cached as
//! immutable. This module must never read the file system or serve anything outside
//! [`FILES`].

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::problem::ApiError;

/// The policy of every `/ui` answer: only this origin's scripts, styles, images and
/// connections (the REST API and its event stream); no inline code, no eval, no plugins,
/// and the pages may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its path under `/ui/`, its bytes and its content type.
pub struct UiFile {
    pub path: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

macro_rules! ui_files {
    ($($path:literal => $ty:expr),* $(,)?) => {
        &[$(UiFile {
            path: $path,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
            content_type: $ty,
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the dashboard serves (a test checks that the `ui/` folder holds no other
/// servable file, so one added there and forgotten here is caught).
pub static FILES: &[UiFile] = ui_files![
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/live.js" => JS,
    "js/util.js" => JS,
    "js/vlist.js" => JS,
    "js/signin.js" => JS,
    "js/overview.js" => JS,
    "js/timers.js" => JS,
    "js/timer.js" => JS,
    "js/dead.js" => JS,
    "js/admin.js" => JS,
    "js/account.js" => JS,
    "vendor/htm-preact-3.1.1.js" => JS,
];

/// Files under this folder carry their version in their name: cached as immutable.
const IMMUTABLE_PREFIX: &str = "vendor/";

/// Each file's ETag (a prefix of its SHA-256), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|f| {
                let h = minoots_core::digest::sha256(f.bytes);
                let hex: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The routes of the dashboard's files (GET and HEAD).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let last = path.rsplit('/').next().unwrap_or("");
    if FILES.iter().any(|f| f.path == path) || last.contains('.') {
        serve(&path, &headers)
    } else {
        serve("index.html", &headers)
    }
}

/// The headers every `/ui` answer carries.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    r
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|f| f.path == path) else {
        return secure(
            ApiError::not_found(format!(
                "the dashboard has no file /ui/{path}; open /ui for the dashboard"
            ))
            .into_response(),
        );
    };
    let file = &FILES[i];
    let etag = &etags()[i];
    let cache = if path.starts_with(IMMUTABLE_PREFIX) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag = HeaderValue::from_str(etag).expect("an ETag is hex in quotes");
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
    ];
    if fresh {
        return secure((StatusCode::NOT_MODIFIED, common).into_response());
    }
    secure(
        (
            StatusCode::OK,
            common,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            )],
            file.bytes,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every servable file in `ui/` is listed in [`FILES`] (the README and licences are
    /// documentation, not served).
    #[test]
    fn every_ui_file_is_embedded() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut found = Vec::new();
        walk(&base, &base, &mut found);
        let docs = |p: &str| p.ends_with(".md") || p.contains("LICENSE");
        for p in found.iter().filter(|p| !docs(p)) {
            assert!(
                FILES.iter().any(|f| f.path == p),
                "ui/{p} is not in ui::FILES, so it would not be served"
            );
        }
    }

    #[test]
    fn client_routes_answer_index_and_unknown_files_404() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = HeaderMap::new();
            for p in ["timers", "timers/0193abcd", "admin"] {
                let r = asset(Path(p.to_string()), h.clone()).await;
                assert_eq!(r.status(), StatusCode::OK, "{p}");
                assert!(
                    r.headers()[header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .starts_with("text/html")
                );
            }
            let r = asset(Path("nope.js".into()), h.clone()).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert!(
                r.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("frame-ancestors 'none'")
            );
            let r = asset(Path("app.css".into()), h.clone()).await;
            assert_eq!(r.status(), StatusCode::OK);
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, r.headers()[header::ETAG].clone());
            let r = asset(Path("app.css".into()), again).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        });
    }
}
