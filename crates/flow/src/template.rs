//! Templates: `{{ path | filter | filter }}` inside prompt parameters, ticket text, HTTP bodies.
//!
//! Parsing happens at load time so the checker can see every variable and filter a template
//! uses (and refuse secrets and unmasked phone numbers). Rendering is pure: the caller supplies
//! a lookup for variable values. Invariant: a template can only read variables, never write
//! them, and rendering output keeps "speak digit by digit" as a separate segment kind so the
//! TwiML renderer can emit `say-as interpret-as="digits"`.

use std::fmt;

/// A filter applied to a value in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Keeps the last four digits: `+15551230199` -> `0199`.
    Last4,
    /// Speaks the value digit by digit ("0, 1, 9, 9").
    Digits,
    /// Masks an email (`j***@example.com`) or a phone number (`***0199`).
    Mask,
    /// Upper-cases the value.
    Upper,
    /// Lower-cases the value.
    Lower,
}

impl Filter {
    /// Every filter with its name, as written in templates.
    pub const ALL: &'static [(&'static str, Filter)] = &[
        ("last4", Filter::Last4),
        ("digits", Filter::Digits),
        ("mask", Filter::Mask),
        ("upper", Filter::Upper),
        ("lower", Filter::Lower),
    ];

    /// The filter's name as written in templates.
    pub fn name(self) -> &'static str {
        Filter::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether the filter hides all but a few characters of a contact value.
    pub fn masks(self) -> bool {
        matches!(self, Filter::Last4 | Filter::Mask)
    }
}

/// One `{{ ... }}` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// The variable path, e.g. `["user", "mobile"]`.
    pub path: Vec<String>,
    /// Filters, applied left to right.
    pub filters: Vec<Filter>,
    /// Character offset of the path within the template text.
    pub offset: usize,
    /// Length in characters of the whole `{{ ... }}`.
    pub len: usize,
}

impl Expr {
    /// The path joined with dots.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// Whether the path, joined with dots, is `name` (compared without joining).
    pub fn is_dotted(&self, name: &str) -> bool {
        let mut rest = name.split('.');
        self.path.iter().all(|p| rest.next() == Some(p.as_str())) && rest.next().is_none()
    }
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A variable reference.
    Expr(Expr),
}

/// A parsed template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// Literal text and expressions, in order.
    pub parts: Vec<Part>,
}

/// A problem in a template's syntax, at a character offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Character offset of the problem.
    pub offset: usize,
    /// Width in characters.
    pub len: usize,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Template {
    /// Parses template text. Every syntax error is returned, not just the first.
    pub fn parse(text: &str) -> Result<Template, Vec<TemplateError>> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '{' && chars.get(i + 1) == Some(&'{') {
                let Some(close) = find_close(&chars, i + 2) else {
                    errors.push(TemplateError {
                        message: "`{{` is never closed with `}}`".to_string(),
                        offset: i,
                        len: 2,
                    });
                    break;
                };
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                let inner: String = chars[i + 2..close].iter().collect();
                match parse_expr(&inner, i + 2) {
                    Ok(mut expr) => {
                        expr.len = close + 2 - i;
                        expr.offset = i;
                        parts.push(Part::Expr(expr));
                    }
                    Err(e) => errors.push(e),
                }
                i = close + 2;
            } else {
                literal.push(chars[i]);
                i += 1;
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if errors.is_empty() {
            Ok(Template { parts })
        } else {
            Err(errors)
        }
    }

    /// The expressions in this template.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    /// True when the template has no expressions.
    pub fn is_literal(&self) -> bool {
        self.exprs().next().is_none()
    }

    /// Renders with `lookup` giving each variable's value. A missing variable is an error,
    /// named by its dotted path, so the engine can take the flow's error path.
    pub fn render(
        &self,
        lookup: &dyn Fn(&[String]) -> Option<String>,
    ) -> Result<Vec<Segment>, String> {
        let mut out: Vec<Segment> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => push_text(&mut out, t),
                Part::Expr(e) => {
                    let mut value = lookup(&e.path).ok_or_else(|| e.dotted())?;
                    let mut spell = false;
                    for f in &e.filters {
                        match f {
                            Filter::Last4 => value = last4(&value),
                            Filter::Digits => spell = true,
                            Filter::Mask => value = mask(&value),
                            Filter::Upper => value = value.to_uppercase(),
                            Filter::Lower => value = value.to_lowercase(),
                        }
                    }
                    if spell {
                        out.push(Segment::Digits(value));
                    } else {
                        push_text(&mut out, &value);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn push_text(out: &mut Vec<Segment>, text: &str) {
    if let Some(Segment::Text(last)) = out.last_mut() {
        last.push_str(text);
    } else if !text.is_empty() {
        out.push(Segment::Text(text.to_string()));
    }
}

/// Rendered template output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Text spoken or sent as is.
    Text(String),
    /// Characters spoken one by one (SSML `say-as interpret-as="digits"`).
    Digits(String),
}

/// Renders segments as plain text: digit segments become "0, 1, 9, 9", which is also how
/// the simulator shows what a caller hears.
pub fn plain_text(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Digits(d) => {
                let spoken: Vec<String> = d.chars().map(|c| c.to_string()).collect();
                out.push_str(&spoken.join(", "));
            }
        }
    }
    out
}

/// The last four digits of a value (non-digits ignored).
pub fn last4(value: &str) -> String {
    let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(4)..].iter().collect()
}

/// Masks an email to its first character and domain, anything else to `***` + last 4 digits.
pub fn mask(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => format!("***{}", last4(value)),
    }
}

fn find_close(chars: &[char], from: usize) -> Option<usize> {
    (from..chars.len().saturating_sub(1)).find(|&j| chars[j] == '}' && chars[j + 1] == '}')
}

fn parse_expr(inner: &str, base: usize) -> Result<Expr, TemplateError> {
    let mut pieces = inner.split('|');
    let path_text = pieces.next().unwrap_or("");
    let lead = path_text.chars().take_while(|c| c.is_whitespace()).count();
    let path_trim = path_text.trim();
    if path_trim.is_empty() {
        return Err(TemplateError {
            message: "empty `{{ }}`: name a variable".to_string(),
            offset: base.saturating_sub(2),
            len: inner.chars().count() + 4,
        });
    }
    let path: Vec<String> = path_trim.split('.').map(str::to_string).collect();
    if path.iter().any(|seg| !is_identifier(seg)) {
        return Err(TemplateError {
            message: format!(
                "`{path_trim}` is not a variable path (letters, digits, `_`, separated by `.`)"
            ),
            offset: base + lead,
            len: path_trim.chars().count(),
        });
    }
    let mut filters = Vec::new();
    let mut offset = base + path_text.chars().count() + 1;
    for piece in pieces {
        let name = piece.trim();
        let lead = piece.chars().take_while(|c| c.is_whitespace()).count();
        match Filter::ALL.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => filters.push(*f),
            None => {
                let hint =
                    crate::diagnostic::did_you_mean(name, Filter::ALL.iter().map(|(n, _)| *n))
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                return Err(TemplateError {
                    message: format!("unknown filter `{name}`{hint}"),
                    offset: offset + lead,
                    len: name.chars().count().max(1),
                });
            }
        }
        offset += piece.chars().count() + 1;
    }
    Ok(Expr {
        path,
        filters,
        offset: base,
        len: 0,
    })
}

/// Identifiers: lowercase letter or `_` first, then lowercase letters, digits, `_`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_dotted_matches_the_whole_joined_path_only() {
        let e = Expr {
            path: vec!["user".into(), "mobile".into()],
            filters: vec![],
            offset: 0,
            len: 0,
        };
        assert!(e.is_dotted("user.mobile"));
        assert_eq!(e.is_dotted("user.mobile"), e.dotted() == "user.mobile");
        for other in [
            "user",
            "user.mobile.x",
            "user.mobil",
            "usermobile",
            "",
            "user.",
            ".user.mobile",
        ] {
            assert!(!e.is_dotted(other), "{other}");
        }
    }

    fn vars(path: &[String]) -> Option<String> {
        match path.join(".").as_str() {
            "user.mobile" => Some("+15551230199".to_string()),
            "user.email" => Some("jane.doe@example.com".to_string()),
            "ticket.number" => Some("INC0012345".to_string()),
            _ => None,
        }
    }

    #[test]
    fn masked_number_is_spoken_digit_by_digit() {
        let t =
            Template::parse("the number ending in {{ user.mobile | last4 | digits }}.").unwrap();
        let segs = t.render(&vars).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Text("the number ending in ".into()),
                Segment::Digits("0199".into()),
                Segment::Text(".".into())
            ]
        );
        assert_eq!(plain_text(&segs), "the number ending in 0, 1, 9, 9.");
    }

    #[test]
    fn mask_hides_email_and_phone() {
        assert_eq!(mask("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask("+15551230199"), "***0199");
        assert_eq!(last4("12"), "12");
    }

    #[test]
    fn reports_unknown_filter_with_suggestion_and_offset() {
        let errs = Template::parse("x {{ user.mobile | lats4 }}").unwrap_err();
        assert_eq!(
            errs[0].message,
            "unknown filter `lats4`; did you mean `last4`?"
        );
        assert_eq!(errs[0].offset, 19);
        assert_eq!(errs[0].len, 5);
    }

    #[test]
    fn reports_unclosed_and_bad_paths() {
        assert!(Template::parse("{{ user.mobile").is_err());
        assert!(Template::parse("{{ User.Mobile }}").is_err());
        assert!(Template::parse("{{ }}").is_err());
    }

    #[test]
    fn missing_variable_is_named() {
        let t = Template::parse("{{ nope }}").unwrap();
        assert_eq!(t.render(&vars).unwrap_err(), "nope");
    }
}
