//! What a timer does when it fires: an ordered bundle of webhook, command and file actions.
//!
//! Unknown fields are refused (a typo such as `timeoutMS` must not silently fall back to
//! a default). Each action becomes one delivery with its own attempts and retries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationErrors;
use crate::limits::*;
use crate::retry::RetryPolicy;

/// The actions of a timer and how failed ones are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionBundle {
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
}

/// One action, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    Webhook(WebhookAction),
    Command(CommandAction),
    File(FileAction),
}

/// An HTTP request to a client's endpoint, signed by the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAction {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body; when absent the orchestrator sends the event envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// A program from the operator's allow-list, run without a shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandAction {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// How a file action writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FileMode {
    /// Append one JSON line per firing (the default).
    #[default]
    Append,
    /// Replace the file's content.
    Overwrite,
}

/// A write under the operator-configured root directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileAction {
    pub path: String,
    #[serde(default)]
    pub mode: FileMode,
    /// What to write; when absent the event envelope is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
}

/// What the operator enabled on this server. Timers using anything else are refused when
/// they are created, not when they fire an hour later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionPolicy {
    /// Names of the commands tenants may run (empty: command actions are off).
    pub allowed_commands: std::collections::BTreeSet<String>,
    /// Whether file actions are enabled (an operator configured a root directory).
    pub file_actions: bool,
}

const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers about the connection or the message's framing, which HTTP sets per hop and the
/// client library sets from the body: a tenant's value would be dropped, duplicated or
/// would contradict the real framing (request smuggling), so none is forwarded.
const HOP_BY_HOP_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What is wrong with one webhook header a tenant set, if anything: a name that is not an
/// HTTP token, a name MINOOTS or HTTP itself sets, or a value HTTP cannot carry as given.
/// Validation refuses such headers at creation; the orchestrator checks again before
/// sending (a timer stored by an older version may carry one) and never sends a header
/// other than exactly as written.
pub fn webhook_header_problem(name: &str, value: &str) -> Option<String> {
    let valid_name = !name.is_empty()
        && name.len() <= MAX_HEADER_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Some(format!(
            "is not a valid HTTP header name (1 to {MAX_HEADER_NAME_BYTES} letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("webhook-")
        || lower.starts_with("x-minoots-")
        || lower == "host"
        || lower == "content-length"
    {
        return Some("is set by MINOOTS itself and cannot be overridden".to_string());
    }
    if HOP_BY_HOP_HEADERS.contains(&lower.as_str()) {
        return Some(
            "is a connection header that HTTP sets per hop; MINOOTS cannot forward it".to_string(),
        );
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Some(format!(
            "value is {} bytes; at most {MAX_HEADER_VALUE_BYTES} are allowed",
            value.len()
        ));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Some(
            "value must not contain control characters (such as CR, LF or NUL)".to_string(),
        );
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Some(
            "value must not start or end with a space or tab (HTTP drops them, so the receiver would see another value)"
                .to_string(),
        );
    }
    None
}

/// The JSON encoding of a webhook body or file content, or why it has none. (A JSON
/// value read from a request always encodes; this keeps the failure explicit anyway.)
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot be encoded as JSON ({e})"))
}

/// Checks the size of a JSON body at `field`, refusing one that cannot be encoded.
fn check_json_size<T: Serialize + ?Sized>(
    value: &T,
    field: String,
    max_bytes: usize,
    errors: &mut ValidationErrors,
) {
    match encode_json(value) {
        Ok(bytes) if bytes.len() > max_bytes => errors.push(
            field,
            format!("is {} bytes; at most {max_bytes} are allowed", bytes.len()),
        ),
        Ok(_) => {}
        Err(e) => errors.push(field, e),
    }
}

impl ActionBundle {
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry_policy.clone().unwrap_or_default()
    }

    /// Checks every action and the retry policy; `path` is the bundle's field name.
    pub fn validate(&self, path: &str, errors: &mut ValidationErrors) {
        if self.actions.len() > MAX_ACTIONS {
            errors.push(
                format!("{path}.actions"),
                format!(
                    "has {} actions; at most {MAX_ACTIONS} are allowed",
                    self.actions.len()
                ),
            );
        }
        for (i, action) in self.actions.iter().enumerate() {
            let p = format!("{path}.actions[{i}]");
            match action {
                Action::Webhook(w) => w.validate(&p, errors),
                Action::Command(c) => c.validate(&p, errors),
                Action::File(f) => f.validate(&p, errors),
            }
        }
        if let Some(rp) = &self.retry_policy {
            rp.validate(&format!("{path}.retryPolicy"), errors);
        }
    }
}

impl ActionBundle {
    /// Refuses actions the operator has not enabled, naming each one.
    pub fn check_policy(&self, policy: &ActionPolicy, path: &str, errors: &mut ValidationErrors) {
        for (i, action) in self.actions.iter().enumerate() {
            match action {
                Action::Command(c) if policy.allowed_commands.is_empty() => errors.push(
                    format!("{path}.actions[{i}].type"),
                    "command actions are not enabled on this server; use a webhook",
                ),
                Action::Command(c) if !policy.allowed_commands.contains(&c.command) => {
                    let names: Vec<&str> =
                        policy.allowed_commands.iter().map(String::as_str).collect();
                    errors.push(
                        format!("{path}.actions[{i}].command"),
                        format!(
                            "\"{}\" is not a command this server allows; use one of {}",
                            c.command,
                            names.join(", ")
                        ),
                    )
                }
                Action::File(_) if !policy.file_actions => errors.push(
                    format!("{path}.actions[{i}].type"),
                    "file actions are not enabled on this server; use a webhook",
                ),
                _ => {}
            }
        }
    }
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Webhook(_) => "webhook",
            Action::Command(_) => "command",
            Action::File(_) => "file",
        }
    }
}

impl WebhookAction {
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("POST")
    }
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS)
    }

    fn validate(&self, p: &str, errors: &mut ValidationErrors) {
        if self.url.len() > MAX_URL_BYTES {
            errors.push(
                format!("{p}.url"),
                format!("is longer than {MAX_URL_BYTES} bytes"),
            );
        } else {
            match url::Url::parse(&self.url) {
                Ok(u) if u.scheme() != "http" && u.scheme() != "https" => errors.push(
                    format!("{p}.url"),
                    format!(
                        "uses scheme \"{}\"; only http and https URLs are allowed",
                        u.scheme()
                    ),
                ),
                Ok(u) if u.host_str().is_none_or(str::is_empty) => errors.push(
                    format!("{p}.url"),
                    "has no host; write a full URL like https://example.com/hook",
                ),
                Ok(u) if !u.username().is_empty() || u.password().is_some() => errors.push(
                    format!("{p}.url"),
                    "must not carry credentials; send them in headers instead",
                ),
                Ok(_) => {}
                Err(e) => errors.push(
                    format!("{p}.url"),
                    format!(
                        "is not a valid URL ({e}); write a full URL like https://example.com/hook"
                    ),
                ),
            }
        }
        if let Some(m) = &self.method
            && !HTTP_METHODS.contains(&m.as_str())
        {
            errors.push(
                format!("{p}.method"),
                format!(
                    "\"{m}\" is not supported; use one of {}",
                    HTTP_METHODS.join(", ")
                ),
            );
        }
        if self.headers.len() > MAX_WEBHOOK_HEADERS {
            errors.push(
                format!("{p}.headers"),
                format!("at most {MAX_WEBHOOK_HEADERS} headers are allowed"),
            );
        }
        // Header names are case-insensitive: two spellings of one name would both be sent.
        let mut seen = std::collections::BTreeMap::<String, &str>::new();
        for (name, value) in &self.headers {
            if let Some(problem) = webhook_header_problem(name, value) {
                errors.push(format!("{p}.headers.{name}"), problem);
            }
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), name) {
                errors.push(
                    format!("{p}.headers.{name}"),
                    format!(
                        "is also given as \"{first}\" (header names are case-insensitive); keep one"
                    ),
                );
            }
        }
        if let Some(body) = &self.body {
            check_json_size(body, format!("{p}.body"), MAX_WEBHOOK_BODY_BYTES, errors);
        }
        if let Some(t) = self.timeout_ms
            && (t == 0 || t > MAX_WEBHOOK_TIMEOUT_MS)
        {
            errors.push(
                format!("{p}.timeoutMs"),
                format!("must be between 1 and {MAX_WEBHOOK_TIMEOUT_MS}"),
            );
        }
    }
}

impl CommandAction {
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms.unwrap_or(DEFAULT_COMMAND_TIMEOUT_MS)
    }

    fn validate(&self, p: &str, errors: &mut ValidationErrors) {
        let valid = !self.command.is_empty()
            && self.command.len() <= MAX_COMMAND_NAME_BYTES
            && self
                .command
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !self.command.starts_with('.');
        if !valid {
            errors.push(
                format!("{p}.command"),
                format!("must be the name of a command the operator allowed (letters, digits, _ . -; at most {MAX_COMMAND_NAME_BYTES} bytes), not a path or shell text"),
            );
        }
        if self.args.len() > MAX_COMMAND_ARGS {
            errors.push(
                format!("{p}.args"),
                format!("at most {MAX_COMMAND_ARGS} arguments are allowed"),
            );
        }
        for (i, a) in self.args.iter().enumerate() {
            if a.len() > MAX_COMMAND_ARG_BYTES || a.contains('\0') {
                errors.push(
                    format!("{p}.args[{i}]"),
                    format!("must be at most {MAX_COMMAND_ARG_BYTES} bytes without NUL"),
                );
            }
        }
        if self.env.len() > MAX_COMMAND_ENV {
            errors.push(
                format!("{p}.env"),
                format!("at most {MAX_COMMAND_ENV} variables are allowed"),
            );
        }
        for (k, v) in &self.env {
            let ok = !k.is_empty()
                && k.len() <= 128
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !k.as_bytes()[0].is_ascii_digit()
                && v.len() <= MAX_COMMAND_ARG_BYTES
                && !v.contains('\0');
            if !ok {
                errors.push(format!("{p}.env.{k}"), "names must be letters, digits and _ (not starting with a digit); values at most 4096 bytes");
            }
        }
        if let Some(t) = self.timeout_ms
            && (t == 0 || t > MAX_COMMAND_TIMEOUT_MS)
        {
            errors.push(
                format!("{p}.timeoutMs"),
                format!("must be between 1 and {MAX_COMMAND_TIMEOUT_MS}"),
            );
        }
    }
}

impl FileAction {
    fn validate(&self, p: &str, errors: &mut ValidationErrors) {
        let path = self.path.as_str();
        let bad = path.is_empty()
            || path.len() > MAX_FILE_PATH_BYTES
            || path.starts_with('/')
            || path.starts_with('\\')
            || path.contains('\0')
            || path.contains('\\')
            || path.split('/').any(|seg| seg == ".." || seg.is_empty());
        if bad {
            errors.push(
                format!("{p}.path"),
                "must be a relative path under the operator's file root, like \"reports/out.jsonl\" (no leading /, no .., no empty segments)",
            );
        }
        if let Some(c) = &self.content {
            check_json_size(c, format!("{p}.content"), MAX_WEBHOOK_BODY_BYTES, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ActionBundle, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    fn check(json: &str) -> ValidationErrors {
        let b = parse(json).expect("parses");
        let mut e = ValidationErrors::new();
        b.validate("actionBundle", &mut e);
        e
    }

    #[test]
    fn parses_all_action_types() {
        let b = parse(
            r#"{"actions": [
                {"type": "webhook", "url": "https://example.com/hook", "method": "PUT", "headers": {"x-a": "b"}, "body": {"k": 1}, "timeoutMs": 5000},
                {"type": "command", "command": "notify", "args": ["a"], "env": {"A": "1"}},
                {"type": "file", "path": "out/fired.jsonl", "mode": "append"}
            ], "retryPolicy": {"maxAttempts": 3}}"#,
        )
        .unwrap();
        assert_eq!(b.actions.len(), 3);
        assert_eq!(b.retry_policy().max_attempts(), 3);
        let mut e = ValidationErrors::new();
        b.validate("actionBundle", &mut e);
        assert!(e.is_empty(), "{e}");
        // Round trip keeps the same value.
        let again: ActionBundle =
            serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn refuses_unknown_fields_and_types() {
        assert!(
            parse(
                r#"{"actions": [{"type": "webhook", "url": "https://a.example", "timeoutMS": 1}]}"#
            )
            .unwrap_err()
            .contains("timeoutMS")
        );
        assert!(
            parse(r#"{"actions": [], "retry": {}}"#)
                .unwrap_err()
                .contains("retry")
        );
        assert!(
            parse(r#"{"actions": [{"type": "email", "to": "x"}]}"#)
                .unwrap_err()
                .contains("email")
        );
        assert!(
            parse(r#"{"actions": [{"url": "https://a.example"}]}"#)
                .unwrap_err()
                .contains("type")
        );
    }

    #[test]
    fn webhook_checks_name_the_field() {
        let cases = [
            (
                r#"{"actions": [{"type": "webhook", "url": "ftp://example.com/x"}]}"#,
                "actionBundle.actions[0].url",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "not a url"}]}"#,
                "actionBundle.actions[0].url",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://u:p@example.com"}]}"#,
                "actionBundle.actions[0].url",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "method": "BREW"}]}"#,
                "actionBundle.actions[0].method",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "timeoutMs": 0}]}"#,
                "actionBundle.actions[0].timeoutMs",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "timeoutMs": 120001}]}"#,
                "actionBundle.actions[0].timeoutMs",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "headers": {"bad header": "x"}}]}"#,
                "actionBundle.actions[0].headers.bad header",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "headers": {"webhook-id": "x"}}]}"#,
                "actionBundle.actions[0].headers.webhook-id",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "headers": {"x": "a\nb"}}]}"#,
                "actionBundle.actions[0].headers.x",
            ),
            (
                r#"{"actions": [{"type": "webhook", "url": "https://example.com", "headers": {"x": "a\u0001b"}}]}"#,
                "actionBundle.actions[0].headers.x",
            ),
            (
                r#"{"actions": [{"type": "command", "command": "/bin/sh"}]}"#,
                "actionBundle.actions[0].command",
            ),
            (
                r#"{"actions": [{"type": "command", "command": "ok", "env": {"1X": "a"}}]}"#,
                "actionBundle.actions[0].env.1X",
            ),
            (
                r#"{"actions": [{"type": "file", "path": "../etc/passwd"}]}"#,
                "actionBundle.actions[0].path",
            ),
            (
                r#"{"actions": [{"type": "file", "path": "/etc/passwd"}]}"#,
                "actionBundle.actions[0].path",
            ),
            (
                r#"{"actions": [], "retryPolicy": {"maxAttempts": 1000}}"#,
                "actionBundle.retryPolicy.maxAttempts",
            ),
        ];
        for (json, field) in cases {
            let e = check(json);
            assert!(
                e.has_field(field),
                "{json} should fail on {field}, got: {e}"
            );
        }
    }

    #[test]
    fn actions_the_operator_did_not_enable_are_refused() {
        let b = parse(
            r#"{"actions": [{"type": "command", "command": "backup"}, {"type": "command", "command": "notify"},
                            {"type": "file", "path": "x.jsonl"}, {"type": "webhook", "url": "https://example.com"}]}"#,
        )
        .unwrap();
        let mut e = ValidationErrors::new();
        b.check_policy(&ActionPolicy::default(), "actionBundle", &mut e);
        assert!(
            e.has_field("actionBundle.actions[0].type")
                && e.has_field("actionBundle.actions[2].type"),
            "{e}"
        );
        let policy = ActionPolicy {
            allowed_commands: ["notify".to_string()].into(),
            file_actions: true,
        };
        let mut e = ValidationErrors::new();
        b.check_policy(&policy, "actionBundle", &mut e);
        assert_eq!(e.errors.len(), 1, "{e}");
        assert!(e.has_field("actionBundle.actions[0].command"));
        assert!(
            e.errors[0].message.contains("notify"),
            "names what is allowed: {e}"
        );
    }

    fn with_headers(headers: &[(&str, &str)]) -> ValidationErrors {
        let b = ActionBundle {
            actions: vec![Action::Webhook(WebhookAction {
                url: "https://example.com/hook".into(),
                method: None,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: None,
                timeout_ms: None,
            })],
            retry_policy: None,
        };
        let mut e = ValidationErrors::new();
        b.validate("actionBundle", &mut e);
        e
    }

    #[test]
    fn webhook_headers_http_cannot_carry_as_written_are_refused_naming_the_header() {
        let long_name = "x".repeat(MAX_HEADER_NAME_BYTES + 1);
        let long_value = "v".repeat(MAX_HEADER_VALUE_BYTES + 1);
        let cases: &[(&str, &str)] = &[
            // Values HTTP cannot carry, or would carry as another value.
            ("X-Foo", "a\r\nX-Injected: 1"),
            ("X-Foo", "a\nb"),
            ("X-Foo", "a\0b"),
            ("X-Foo", "a\u{7f}"),
            ("X-Foo", " leading space"),
            ("X-Foo", "trailing tab\t"),
            ("X-Foo", &long_value),
            // Names that are not HTTP tokens.
            ("X Foo", "v"),
            ("X-Foo:", "v"),
            ("", "v"),
            ("Ä-Header", "v"),
            ("X-Foo\r\n", "v"),
            (&long_name, "v"),
            // Names MINOOTS sets.
            ("webhook-signature", "v1,forged"),
            ("Webhook-Id", "x"),
            ("X-Minoots-Attempt", "9"),
            ("Content-Length", "5"),
            ("Host", "other.example"),
            // Names HTTP sets per hop or from the body's framing.
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Foo"),
            ("Upgrade", "h2c"),
        ];
        for (name, value) in cases {
            let e = with_headers(&[(name, value)]);
            let field = format!("actionBundle.actions[0].headers.{name}");
            assert!(
                e.has_field(&field) && e.errors.len() == 1,
                "{name:?}: {value:?} should fail on {field}, got: {e}"
            );
        }
    }

    #[test]
    fn one_header_spelled_twice_is_refused() {
        let e = with_headers(&[("X-Trace", "a"), ("x-trace", "b")]);
        assert!(
            e.has_field("actionBundle.actions[0].headers.x-trace"),
            "{e}"
        );
        assert!(e.errors[0].message.contains("X-Trace"), "{e}");
    }

    #[test]
    fn headers_http_carries_as_written_are_accepted() {
        let e = with_headers(&[
            ("Authorization", "Bearer abc.def"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Empty", ""),
            ("X-Inner-Tab", "a\tb"),
            ("X-Unicode", "caf\u{e9}"),
            ("x!#$%&'*+-.^_`|~1", "v"),
        ]);
        assert!(e.is_empty(), "{e}");
        assert_eq!(webhook_header_problem("X-Ok", "fine"), None);
    }

    #[test]
    fn a_body_that_cannot_be_encoded_is_refused_naming_the_field() {
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no JSON form"))
            }
        }
        let mut e = ValidationErrors::new();
        check_json_size(
            &Unencodable,
            "actionBundle.actions[0].body".into(),
            MAX_WEBHOOK_BODY_BYTES,
            &mut e,
        );
        assert!(e.has_field("actionBundle.actions[0].body"), "{e}");
        assert!(e.errors[0].message.contains("no JSON form"), "{e}");
        assert!(encode_json(&Unencodable).is_err());
        // A map whose keys are not strings has no JSON form either.
        let map: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(encode_json(&map).is_err());
    }

    #[test]
    fn too_many_actions_and_too_big_bodies_are_refused() {
        let one = r#"{"type": "webhook", "url": "https://example.com"}"#;
        let many = vec![one; MAX_ACTIONS + 1].join(",");
        assert!(check(&format!(r#"{{"actions": [{many}]}}"#)).has_field("actionBundle.actions"));
        let big = "x".repeat(MAX_WEBHOOK_BODY_BYTES);
        let json = format!(
            r#"{{"actions": [{{"type": "webhook", "url": "https://example.com", "body": "{big}"}}]}}"#
        );
        assert!(check(&json).has_field("actionBundle.actions[0].body"));
    }
}
