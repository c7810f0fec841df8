//! A parser of the YAML subset MINOOTS's deployment files use (`deploy/docker-compose.yml`,
//! `deploy/prometheus/*.yml`), so tests can read them without a YAML library: block
//! mappings and sequences (a sequence item may open a mapping: `- key: value`), flow
//! `[...]` and `{...}` on one line, quoted and plain scalars, comments, anchors, aliases
//! and `<<` merge keys. Anything else (block scalars, tags, several documents, complex
//! keys) is refused loudly, so a file cannot drift beyond what its test reads.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Yaml {
    Null,
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn map(&self) -> Option<&[(String, Yaml)]> {
        match self {
            Yaml::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn seq(&self) -> Option<&[Yaml]> {
        match self {
            Yaml::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn strings(&self) -> Option<Vec<String>> {
        self.seq()?
            .iter()
            .map(|v| v.str().map(str::to_string))
            .collect()
    }
}

struct Line {
    no: usize,
    indent: usize,
    text: String,
}

struct YamlParser {
    lines: Vec<Line>,
    pos: usize,
    anchors: HashMap<String, Yaml>,
}

pub type Parsed<T> = Result<T, String>;

/// Cuts a trailing comment (`#` at the start or after a space, outside quotes).
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in s.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &s[..i],
            _ => {}
        }
        prev = c;
    }
    s
}

pub fn parse_yaml(text: &str) -> Parsed<Yaml> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        if raw[indent..].starts_with('\t') {
            return Err(format!("line {no}: a tab in the indentation"));
        }
        let body = strip_comment(&raw[indent..]).trim_end();
        if body.is_empty() {
            continue;
        }
        if body == "---" || body == "..." || body.starts_with('%') {
            return Err(format!(
                "line {no}: documents and directives are outside the subset"
            ));
        }
        lines.push(Line {
            no,
            indent,
            text: body.to_string(),
        });
    }
    let mut p = YamlParser {
        lines,
        pos: 0,
        anchors: HashMap::new(),
    };
    if p.lines.is_empty() {
        return Ok(Yaml::Null);
    }
    if p.lines[0].indent != 0 {
        return Err(format!("line {}: indented document", p.lines[0].no));
    }
    let doc = p.block(0)?;
    if let Some(l) = p.lines.get(p.pos) {
        return Err(format!("line {}: unexpected indentation", l.no));
    }
    Ok(doc)
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// A block mapping's key and the rest of its line, or `None` when the line is not
/// `KEY:` or `KEY: REST` with a plain key.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let (key, rest) = match text.find(": ") {
        Some(i) => (&text[..i], text[i + 2..].trim_start()),
        None => (text.strip_suffix(':')?, ""),
    };
    let plain = key == "<<"
        || (!key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c)));
    plain.then_some((key, rest))
}

impl YamlParser {
    fn block(&mut self, indent: usize) -> Parsed<Yaml> {
        if is_seq_item(&self.lines[self.pos].text) {
            self.seq(indent)
        } else {
            self.mapping(indent)
        }
    }

    /// The block value of a key or item whose line ended: the lines indented deeper
    /// (or, for a mapping's value, a sequence at the same indentation), else null.
    fn nested(&mut self, indent: usize, in_map: bool) -> Parsed<Yaml> {
        match self.lines.get(self.pos) {
            Some(l) if l.indent > indent => {
                let i = l.indent;
                self.block(i)
            }
            Some(l) if in_map && l.indent == indent && is_seq_item(&l.text) => self.seq(indent),
            _ => Ok(Yaml::Null),
        }
    }

    fn seq(&mut self, indent: usize) -> Parsed<Yaml> {
        let mut items = Vec::new();
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent != indent || !is_seq_item(&l.text) {
                break;
            }
            let (no, rest) = (l.no, l.text[1..].trim_start().to_string());
            if split_key(&rest).is_some() {
                // `- key: value`: a mapping whose keys line up with this first one. The
                // line is read again as that mapping's first line, without the dash.
                let inner = indent + (l.text.len() - rest.len());
                self.lines[self.pos] = Line {
                    no,
                    indent: inner,
                    text: rest,
                };
                items.push(self.mapping(inner)?);
                continue;
            }
            self.pos += 1;
            items.push(if rest.is_empty() {
                self.nested(indent, false)?
            } else {
                self.inline(&rest, no, indent)?
            });
        }
        Ok(Yaml::Seq(items))
    }

    fn mapping(&mut self, indent: usize) -> Parsed<Yaml> {
        let mut entries: Vec<(String, Yaml)> = Vec::new();
        let mut merge: Option<Yaml> = None;
        while let Some(l) = self.lines.get(self.pos) {
            if l.indent < indent {
                break;
            }
            let no = l.no;
            if l.indent > indent {
                return Err(format!("line {no}: unexpected indentation"));
            }
            if is_seq_item(&l.text) {
                break;
            }
            let Some((key, rest)) = split_key(&l.text) else {
                return Err(format!(
                    "line {no}: `{}` is not `key: value` with a plain key",
                    l.text
                ));
            };
            let (key, rest) = (key.to_string(), rest.to_string());
            self.pos += 1;
            let value = if rest.is_empty() {
                self.nested(indent, true)?
            } else {
                self.inline(&rest, no, indent)?
            };
            if key == "<<" {
                if merge.replace(value).is_some() {
                    return Err(format!("line {no}: a second merge key"));
                }
            } else if entries.iter().any(|(k, _)| *k == key) {
                return Err(format!("line {no}: duplicate key {key}"));
            } else {
                entries.push((key, value));
            }
        }
        // Merge keys: explicit keys win; of several merged maps, the first wins.
        let merged: Vec<Yaml> = match merge {
            None => vec![],
            Some(Yaml::Seq(maps)) => maps,
            Some(m) => vec![m],
        };
        for m in merged {
            let Yaml::Map(m) = m else {
                return Err("a merge key whose value is not a mapping".into());
            };
            for (k, v) in m {
                if !entries.iter().any(|(e, _)| *e == k) {
                    entries.push((k, v));
                }
            }
        }
        Ok(Yaml::Map(entries))
    }

    /// A value on the rest of a line: an anchor, an alias, a flow collection or a scalar.
    fn inline(&mut self, text: &str, no: usize, indent: usize) -> Parsed<Yaml> {
        if let Some(anchored) = text.strip_prefix('&') {
            let (name, rest) = anchored
                .split_once(' ')
                .map_or((anchored, ""), |(n, r)| (n, r.trim_start()));
            let value = if rest.is_empty() {
                self.nested(indent, true)?
            } else {
                self.inline(rest, no, indent)?
            };
            self.anchors.insert(name.to_string(), value.clone());
            return Ok(value);
        }
        if text.starts_with(['!', '|', '>', '@', '`', '?']) {
            return Err(format!(
                "line {no}: `{text}` (tags, block scalars, complex keys) is outside the subset"
            ));
        }
        let (value, used) = flow_node(text, false, &self.anchors)
            .map_err(|e| format!("line {no}: {e} in `{text}`"))?;
        if !text[used..].trim().is_empty() {
            return Err(format!(
                "line {no}: `{}` after a value; a plain scalar with `: ` is outside the subset",
                &text[used..]
            ));
        }
        Ok(value)
    }
}

/// Parses one node at the start of `s`: a flow collection, a quoted or plain scalar or an
/// alias, in flow context (`flow`: a plain scalar ends at `,[]{}`) or at the top of a
/// block line (it runs to the end of the line); returns it and how many bytes it took.
fn flow_node(s: &str, flow: bool, anchors: &HashMap<String, Yaml>) -> Parsed<(Yaml, usize)> {
    let skip = |i: usize| i + s[i..].len() - s[i..].trim_start().len();
    let mut i = skip(0);
    let rest = &s[i..];
    if rest.starts_with('[') || rest.starts_with('{') {
        let is_map = rest.starts_with('{');
        let close = if is_map { '}' } else { ']' };
        i += 1;
        let (mut items, mut entries) = (Vec::new(), Vec::<(String, Yaml)>::new());
        loop {
            i = skip(i);
            if s[i..].starts_with(close) {
                i += 1;
                break;
            }
            if is_map {
                let (key, used) = flow_node(&s[i..], true, anchors)?;
                let Yaml::Str(key) = key else {
                    return Err("a flow mapping key that is not a scalar".into());
                };
                i = skip(i + used);
                if !s[i..].starts_with(':') {
                    return Err(format!("`:` expected after {key}"));
                }
                let (value, used) = flow_node(&s[i + 1..], true, anchors)?;
                i += 1 + used;
                if entries.iter().any(|(k, _)| *k == key) {
                    return Err(format!("duplicate key {key}"));
                }
                entries.push((key, value));
            } else {
                let (value, used) = flow_node(&s[i..], true, anchors)?;
                i += used;
                items.push(value);
            }
            i = skip(i);
            if s[i..].starts_with(',') {
                i += 1;
            } else if !s[i..].starts_with(close) {
                return Err(format!("`,` or `{close}` expected"));
            }
        }
        let node = if is_map {
            Yaml::Map(entries)
        } else {
            Yaml::Seq(items)
        };
        return Ok((node, i));
    }
    if let Some(body) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((j, c)) = chars.next() {
            match c {
                '"' => return Ok((Yaml::Str(out), i + 1 + j + 1)),
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    other => return Err(format!("escape \\{other:?} is outside the subset")),
                },
                c => out.push(c),
            }
        }
        return Err("an unterminated double-quoted scalar".into());
    }
    if let Some(body) = rest.strip_prefix('\'') {
        let mut out = String::new();
        let mut j = 0;
        while j < body.len() {
            let c = body[j..].chars().next().unwrap();
            if c == '\'' {
                if body[j + 1..].starts_with('\'') {
                    out.push('\'');
                    j += 2;
                    continue;
                }
                return Ok((Yaml::Str(out), i + 1 + j + 1));
            }
            out.push(c);
            j += c.len_utf8();
        }
        return Err("an unterminated single-quoted scalar".into());
    }
    // A plain scalar (or alias): up to a flow indicator or `: `.
    let mut end = rest.len();
    for (j, c) in rest.char_indices() {
        let colon_ends = c == ':' && (j + 1 == rest.len() || rest[j + 1..].starts_with(' '));
        let flow_ends = flow
            && (",[]{}".contains(c) || (c == ':' && rest[j + 1..].starts_with([',', ']', '}'])));
        if colon_ends || flow_ends {
            end = j;
            break;
        }
    }
    let token = rest[..end].trim_end();
    if let Some(name) = token.strip_prefix('*') {
        let value = anchors
            .get(name)
            .ok_or_else(|| format!("unknown anchor *{name}"))?;
        return Ok((value.clone(), i + end));
    }
    if token.starts_with(['&', '!', '|', '>', '@', '`', '"', '\'']) {
        return Err(format!("`{token}` is outside the subset"));
    }
    let value = match token {
        "" | "~" | "null" => Yaml::Null,
        t => Yaml::Str(t.to_string()),
    };
    Ok((value, i + end))
}
