//! The two small languages of [`super::HttpTickets`]: JSON body templates with `{{ name }}`
//! placeholders, and RFC 6901 JSON pointers that find the ticket number in an answer.
//!
//! A template is a JSON value; placeholders may appear in its string leaves only (never in
//! object keys). A leaf that is exactly one placeholder of a field the ticket does not have
//! (no `details`, no `category`) is left out (an object member is removed, an array element
//! dropped); inside longer text an absent field is empty. Values are substituted into the
//! parsed [`Value`], so JSON escaping is serde_json's job and a value can never change the
//! document's structure. In URLs ([`render_url`]) values are percent-encoded.
//!
//! Invariant: the only names a template may use are the ones its use allows ([`OPEN_FIELDS`],
//! [`CLOSE_FIELDS`]): ticket text, the call SID, the ticket's number and id, the close note.
//! None of them is a secret (a caller's PIN or one-time code never reaches a ticket: E016).

use serde_json::Value;

/// The placeholders an open body may use.
pub const OPEN_FIELDS: &[&str] = &["summary", "details", "category", "call_sid"];

/// The placeholders a close URL or body may use.
pub const CLOSE_FIELDS: &[&str] = &["note", "ticket.number", "ticket.id"];

/// One piece of a string leaf.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

/// Splits `s` into text and `{{ name }}` placeholders; an unterminated `{{` is an error.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without `}}}}` in \"{}\"", clean_short(s)))?;
        out.push(Piece::Field(after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// At most 60 characters of configured text for a message, control characters as spaces.
fn clean_short(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(60)
        .collect()
}

/// The placeholder errors of one string (`prefix` starts each message).
fn check_text(text: &str, allowed: &[&str], prefix: &str, problems: &mut Vec<String>) {
    match pieces(text) {
        Err(e) => problems.push(format!("{prefix}{e}")),
        Ok(pieces) => {
            for p in pieces {
                if let Piece::Field(name) = p
                    && !allowed.contains(&name)
                {
                    problems.push(format!(
                        "{prefix}unknown placeholder `{{{{ {name} }}}}` (allowed: {})",
                        allowed.join(", ")
                    ));
                }
            }
        }
    }
}

/// Every problem of a body template: not an object, a placeholder in a key, an unknown or
/// unterminated placeholder. Each names its place as a JSON pointer (`at /a/b`).
pub fn check_body(template: &Value, allowed: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if !template.is_object() {
        problems.push("must be a JSON object".to_owned());
        return problems;
    }
    check_value(template, allowed, "", &mut problems);
    problems
}

fn check_value(v: &Value, allowed: &[&str], at: &str, problems: &mut Vec<String>) {
    match v {
        Value::String(s) => check_text(s, allowed, &format!("at {at}: "), problems),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_value(item, allowed, &format!("{at}/{i}"), problems);
            }
        }
        Value::Object(members) => {
            for (key, item) in members {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key.contains("{{") {
                    problems.push(format!("at {here}: placeholders are not allowed in keys"));
                }
                check_value(item, allowed, &here, problems);
            }
        }
        _ => {}
    }
}

/// The placeholder problems of a URL template: unknown names, or a placeholder before the
/// path (a value must never choose the host).
pub fn check_url(url: &str, allowed: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    check_text(url, allowed, "", &mut problems);
    let path_start = url
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| url[i..].find('/').map(|j| i + j));
    if let Some(first) = url.find("{{")
        && path_start.is_none_or(|p| first < p)
    {
        problems.push("placeholders may only appear in the path or query".to_owned());
    }
    problems
}

/// `s` with its placeholders replaced by what `lookup` gives (absent: empty), each value
/// passed through `encode`. `None` when `s` is exactly one placeholder of an absent field.
fn render_text(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    encode: &dyn Fn(&str) -> String,
) -> Option<String> {
    // A checked template always splits; an unchecked one is left as written.
    let Ok(pieces) = pieces(s) else {
        return Some(s.to_owned());
    };
    if let [Piece::Field(name)] = pieces.as_slice() {
        return lookup(name).map(|v| encode(&v));
    }
    let mut out = String::with_capacity(s.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(name) => out.push_str(&encode(&lookup(name).unwrap_or_default())),
        }
    }
    Some(out)
}

/// The body for one request: `template` with every placeholder replaced (see the module doc).
pub fn render_body(template: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> Value {
    render_value(template, lookup).unwrap_or(Value::Null)
}

fn render_value(v: &Value, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Value> {
    match v {
        Value::String(s) => render_text(s, lookup, &|v| v.to_owned()).map(Value::String),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|i| render_value(i, lookup))
                .collect(),
        )),
        Value::Object(members) => Some(Value::Object(
            members
                .iter()
                .filter_map(|(k, i)| render_value(i, lookup).map(|i| (k.clone(), i)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// `url` with every placeholder replaced by its value, percent-encoded (only RFC 3986
/// unreserved characters stay as they are). Whether a value is a safe path segment (not `.`
/// or `..`) is the caller's check.
pub fn render_url(url: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    render_text(url, lookup, &percent_encode).unwrap_or_default()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An RFC 6901 JSON pointer (`/issueKey`, `/result/number`, `/items/0/id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    /// Checks the syntax: starts with `/` (the whole document is never a ticket number), and
    /// every `~` is followed by `0` or `1`.
    pub fn parse(s: &str) -> Result<Pointer, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "`{}` is not a JSON pointer (RFC 6901): it must start with `/`, e.g. `/issueKey`",
                clean_short(s)
            ));
        }
        let bytes = s.as_bytes();
        let bad_escape = bytes
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
        if bad_escape {
            return Err(format!(
                "`{}` is not a JSON pointer (RFC 6901): `~` must be followed by `0` or `1`",
                clean_short(s)
            ));
        }
        Ok(Pointer(s.to_owned()))
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value it points at in `document`: a non-empty string or an integer, as text.
    pub fn text_in(&self, document: &Value) -> Option<String> {
        match document.pointer(&self.0)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
