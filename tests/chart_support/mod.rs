//! A deliberately small stand-in for `helm template`, good enough for the
//! natsgate chart's templates and no others. Helm itself is not available
//! from this project's package sources, so the chart test can't run it.
//!
//! What it understands (and the chart's templates keep to):
//! - Every action sits on one line (`{{` and `}}` balanced per line).
//! - Control actions (`if`, `else`, `else if`, `end`, `with`, `range`,
//!   `define`, `block`, comments `{{/* */}}`, `$var :=`) stand alone on their
//!   line; such lines produce no output, as `{{-` makes them in Helm.
//! - Rendering takes the *first* branch of every `if` (as if its condition
//!   were true) and skips `else` branches; `with`/`range` bodies are kept once.
//! - `{{ .Values.a.b }}` and `{{ .Values.a.b | quote }}` render the scalar from
//!   values.yaml. Every other expression renders an opaque, unique
//!   placeholder scalar `__tplN__` (quoted when the pipeline ends in `quote`).
//! - An expression ending in `| nindent N` must stand alone on its line and
//!   start with `{{-`; it renders a placeholder mapping entry
//!   `__tplN__: __tplN__` at column N. N must be two more than the indentation
//!   of the line above when that line is a bare `key:`, else equal to it (a
//!   sibling entry), so a wrong indentation is an error.
//! - `{{-` / `-}}` trim whitespace next to inline expressions, as Helm does,
//!   so `key: {{- x }}` becomes the broken `key:x` here too.
//!
//! Anything else it doesn't understand is an error, not a guess.

#![allow(dead_code)]

use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One piece of a template line.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Text(String),
    Action { trim_left: bool, trim_right: bool, body: String },
}

/// Splits one line into text and actions; errors on `{{` / `}}` that don't pair up.
pub fn tokenize(line: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    let mut rest = line;
    loop {
        match rest.find("{{") {
            None => {
                if rest.contains("}}") {
                    return Err("`}}` without `{{` (actions must not span lines)".into());
                }
                if !rest.is_empty() {
                    segs.push(Seg::Text(rest.to_string()));
                }
                return Ok(segs);
            }
            Some(open) => {
                let before = &rest[..open];
                if before.contains("}}") {
                    return Err("`}}` without `{{`".into());
                }
                if !before.is_empty() {
                    segs.push(Seg::Text(before.to_string()));
                }
                let after_open = &rest[open + 2..];
                let close =
                    after_open.find("}}").ok_or("`{{` without `}}` on the same line (actions must not span lines)")?;
                let mut inner = &after_open[..close];
                if inner.contains("{{") {
                    return Err("nested `{{`".into());
                }
                let trim_left = inner.starts_with('-');
                if trim_left {
                    inner = &inner[1..];
                }
                let trim_right = inner.ends_with('-');
                if trim_right {
                    inner = &inner[..inner.len() - 1];
                }
                segs.push(Seg::Action { trim_left, trim_right, body: inner.trim().to_string() });
                rest = &after_open[close + 2..];
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    /// `if`, `with`, `range`, `define`, `block`: opens a block.
    Open(&'static str),
    /// `else` or `else if ...`.
    Else,
    End,
    /// Comment or variable assignment: no output, no block.
    Silent,
}

/// Classifies an action body; `None` means an expression that produces output.
pub fn control(body: &str) -> Option<Control> {
    let body = body.trim();
    if body.starts_with("/*") {
        return Some(Control::Silent);
    }
    let first = body.split_whitespace().next().unwrap_or("");
    match first {
        "if" => Some(Control::Open("if")),
        "with" => Some(Control::Open("with")),
        "range" => Some(Control::Open("range")),
        "define" => Some(Control::Open("define")),
        "block" => Some(Control::Open("block")),
        "else" => Some(Control::Else),
        "end" => Some(Control::End),
        _ if first.starts_with('$') && (body.contains(":=") || body.contains(" = ")) => Some(Control::Silent),
        _ => None,
    }
}

/// Looks up a dotted path (`a.b.c`) in the values tree. A key whose value is
/// null still exists.
pub fn lookup<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = values;
    for key in path.split('.') {
        node = node.as_mapping()?.get(key)?;
    }
    Some(node)
}

/// Every `.Values.x.y` path mentioned anywhere in `text` (`$.Values` too).
pub fn values_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let needle = ".Values.";
    let mut from = 0;
    while let Some(pos) = text[from..].find(needle) {
        let start = from + pos + needle.len();
        let path: String =
            text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
        let path = path.trim_end_matches('.').to_string();
        if !path.is_empty() {
            refs.insert(path);
        }
        from = start;
    }
    refs
}

/// Names in `include "name"` / `template "name"` calls.
pub fn includes(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for keyword in ["include \"", "template \""] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(keyword) {
            let start = from + pos + keyword.len();
            if let Some(len) = text[start..].find('"') {
                names.insert(text[start..start + len].to_string());
            }
            from = start;
        }
    }
    names
}

/// Blanks out `{{/* ... */}}` comments (which may span lines in helpers),
/// keeping line breaks so line numbers stay right.
pub fn strip_comments(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{/*").or_else(|| rest.find("{{- /*")) {
        out.push_str(&rest[..start]);
        let end =
            rest[start..].find("*/}}").or_else(|| rest[start..].find("*/ -}}")).ok_or("comment `{{/*` not closed")?;
        let comment = &rest[start..start + end];
        out.extend(comment.chars().filter(|c| *c == '\n'));
        let close = if rest[start + end..].starts_with("*/}}") { 4 } else { 6 };
        rest = &rest[start + end + close..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `define "name"` blocks of a helpers file: name -> body text.
pub fn defines(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = strip_comments(text)?;
    let mut out = BTreeMap::new();
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let segs = tokenize(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let mut opened_define = false;
        for seg in &segs {
            if let Seg::Action { body, .. } = seg {
                match control(body) {
                    Some(Control::Open(kind)) => {
                        if kind == "define" && depth == 0 {
                            let name = body
                                .split('"')
                                .nth(1)
                                .ok_or(format!("line {}: define without a quoted name", n + 1))?;
                            current = Some((name.to_string(), String::new()));
                            opened_define = true;
                        }
                        depth += 1;
                    }
                    Some(Control::End) => {
                        depth = depth.checked_sub(1).ok_or(format!("line {}: `end` without a block", n + 1))?;
                        if depth == 0 {
                            if let Some((name, body)) = current.take() {
                                if out.insert(name.clone(), body).is_some() {
                                    return Err(format!("define {name:?} twice"));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if !opened_define {
            if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    if depth != 0 {
        return Err(format!("{depth} block(s) not closed with `end`"));
    }
    Ok(out)
}

/// `.Values` paths a text reaches, directly or through the helpers it
/// includes (recursively).
pub fn values_refs_transitive(text: &str, helpers: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut refs = values_refs(text);
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = includes(text).into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(body) = helpers.get(&name) {
            refs.extend(values_refs(body));
            todo.extend(includes(body));
        }
    }
    refs
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The renderer. Placeholder numbers run on across templates of one instance.
pub struct Renderer<'a> {
    values: &'a Value,
    next: usize,
}

impl<'a> Renderer<'a> {
    pub fn new(values: &'a Value) -> Self {
        Renderer { values, next: 0 }
    }

    fn placeholder(&mut self) -> String {
        self.next += 1;
        format!("__tpl{}__", self.next)
    }

    /// Renders one inline expression.
    fn expr(&mut self, body: &str) -> Result<String, String> {
        let parts: Vec<&str> = body.split('|').map(str::trim).collect();
        let term = parts[0];
        let pipes = &parts[1..];
        let quoted = pipes.last() == Some(&"quote");
        let path = term.strip_prefix(".Values.").or_else(|| term.strip_prefix("$.Values."));
        if let Some(path) = path {
            if path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && pipes.iter().all(|p| *p == "quote")
            {
                let value = lookup(self.values, path).ok_or(format!("`.Values.{path}` is not in values.yaml"))?;
                if let Some(s) = scalar(value) {
                    return Ok(if quoted { quote(&s) } else { s });
                }
            }
        }
        let p = self.placeholder();
        Ok(if quoted { quote(&p) } else { p })
    }

    /// Renders a manifest template (see the module docs for the rules).
    pub fn render(&mut self, template: &str) -> Result<String, String> {
        // One frame per open block: true while in its skipped `else` part.
        let mut frames: Vec<(&'static str, bool)> = Vec::new();
        let mut out = String::new();
        // Set by a trailing `-}}`: eat the line break and the next indentation.
        let mut trim_next = false;
        for (n, line) in template.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            let segs = tokenize(line).map_err(at)?;
            let actions: Vec<(bool, bool, &str)> = segs
                .iter()
                .filter_map(|s| match s {
                    Seg::Action { trim_left, trim_right, body } => Some((*trim_left, *trim_right, body.as_str())),
                    Seg::Text(_) => None,
                })
                .collect();
            let only_action = segs.iter().all(|s| match s {
                Seg::Text(t) => t.trim().is_empty(),
                Seg::Action { .. } => true,
            }) && actions.len() == 1;

            if let Some(kind) = actions.iter().find_map(|(_, _, body)| control(body)) {
                if !only_action {
                    return Err(at("a control action must be alone on its line".into()));
                }
                if !actions[0].0 || actions[0].1 {
                    return Err(at("a control line must open with `{{-` and close with `}}`".into()));
                }
                match kind {
                    Control::Open(name) => frames.push((name, false)),
                    Control::Else => {
                        let top = frames.last_mut().ok_or_else(|| at("`else` outside a block".into()))?;
                        if top.0 == "define" {
                            return Err(at("`else` in a define".into()));
                        }
                        top.1 = true;
                    }
                    Control::End => {
                        frames.pop().ok_or_else(|| at("`end` without a block".into()))?;
                    }
                    Control::Silent => {}
                }
                continue;
            }
            if frames.iter().any(|(kind, _)| *kind == "define") {
                return Err(at("`define` belongs in _helpers.tpl".into()));
            }
            if frames.iter().any(|(_, in_else)| *in_else) {
                continue;
            }

            let nindent = actions.iter().any(|(_, _, body)| {
                body.split('|').skip(1).any(|p| {
                    let p = p.trim();
                    p.starts_with("nindent ") || p.starts_with("indent ")
                })
            });
            if nindent {
                let (trim_left, _, body) = actions[0];
                let last = body.split('|').next_back().unwrap_or("").trim();
                let width = last.strip_prefix("nindent ").and_then(|w| w.trim().parse::<usize>().ok());
                match (only_action, trim_left, width) {
                    (true, true, Some(width)) if !actions[0].1 => {
                        let kept = out.trim_end().len();
                        out.truncate(kept);
                        // The block must sit under the `key:` line above it
                        // (two deeper) or beside the entry above it.
                        let prev = out.rsplit('\n').next().unwrap_or("");
                        let body = prev.trim_start();
                        let mut indent = prev.len() - body.len();
                        if body.starts_with("- ") {
                            indent += 2;
                        }
                        let expected = if body.ends_with(':') { indent + 2 } else { indent };
                        if width != expected {
                            return Err(at(format!("nindent {width} after {prev:?}: expected nindent {expected}")));
                        }
                        let p = self.placeholder();
                        out.push_str(&format!("\n{}{p}: {p}", " ".repeat(width)));
                        out.push('\n');
                        trim_next = false;
                        continue;
                    }
                    _ => return Err(at("indentation must be `{{- ... | nindent N }}` alone on its line".into())),
                }
            }

            // Inline expressions; `{{-` and `-}}` trim across line breaks as in Helm.
            for seg in &segs {
                match seg {
                    Seg::Text(t) => {
                        let t = if trim_next { t.trim_start() } else { t.as_str() };
                        out.push_str(t);
                        trim_next = false;
                    }
                    Seg::Action { trim_left, trim_right, body } => {
                        if *trim_left {
                            let kept = out.trim_end().len();
                            out.truncate(kept);
                        }
                        out.push_str(&self.expr(body).map_err(at)?);
                        trim_next = *trim_right;
                    }
                }
            }
            if !trim_next {
                out.push('\n');
            }
        }
        if let Some((kind, _)) = frames.last() {
            return Err(format!("`{kind}` block not closed with `end`"));
        }
        Ok(out)
    }
}

/// Leaf paths of a values tree (empty maps and sequences are leaves).
pub fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or("?");
                let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                leaf_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Key lines of values.yaml with no comment right above them or on the line.
/// Keys inside list items of defaults are held to the same rule.
pub fn undocumented_keys(values_text: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut previous = "";
    for (n, line) in values_text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            previous = "";
            continue;
        }
        if trimmed.starts_with('#') {
            previous = trimmed;
            continue;
        }
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let is_key = item
            .split_once(':')
            .map(|(k, rest)| {
                !k.is_empty() && !k.contains(' ') && !k.starts_with('"') && (rest.is_empty() || rest.starts_with(' '))
            })
            .unwrap_or(false);
        let documented = previous.starts_with('#') || line.contains(" # ");
        if is_key && !documented {
            missing.push(format!("values.yaml:{}: {}", n + 1, line.trim_end()));
        }
        previous = trimmed;
    }
    missing
}
