//! A YAML document as a tree whose every node keeps its source span.
//!
//! The flow loader needs positions for every field and must report every problem at once,
//! so it does not deserialize through serde: `serde_yaml` is deprecated upstream, and the
//! maintained serde crates with spans (`serde-saphyr`, which crates/config uses for
//! `resetline.yaml`) stop at the first error. Instead this
//! module turns `saphyr-parser` events into a small spanned tree, and the loader walks it.
//! Invariant: building the tree never panics and never recurses, whatever the bytes; nesting
//! depth and alias expansion are bounded so hostile input cannot exhaust the stack or memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::span::{Pos, Span};

/// Deepest nesting accepted. Real flows nest a handful of levels.
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to (aliases included), against "billion laughs".
const MAX_NODES: usize = 200_000;

/// One YAML node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) span: Span,
}

/// The shape of a YAML node. Scalars stay text: the loader decides how to read them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short name for the node's shape, used in "expected X, found Y" messages.
    pub(crate) fn shape(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a non-null scalar.
    pub(crate) fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// Counts the nodes in this subtree (used to bound alias expansion).
    fn size(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            count += 1;
            match &node.value {
                Value::Scalar { .. } => {}
                Value::Seq(items) => stack.extend(items.iter()),
                Value::Map(entries) => {
                    for (k, v) in entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
            }
        }
        count
    }
}

/// Why a document could not be turned into a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) span: Span,
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        span: Span,
        anchor: usize,
    },
}

/// Parses `text` as a single YAML document. An empty file yields `Ok(None)`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut total_nodes = 0usize;

    while let Some(event) = parser.next_event() {
        let (event, raw_span) = event.map_err(|e| SyntaxError {
            message: e.info().to_string(),
            span: Span::point(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
        })?;
        let span = Span::from_saphyr(&raw_span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        message:
                            "a flow file holds exactly one YAML document; found a second `---`"
                                .to_string(),
                        span,
                    });
                }
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = matches!(style, ScalarStyle::Plain) && !tagged_str;
                let span = scalar_span(span, &text, style);
                Some((
                    Node {
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                        span,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => {
                let Some(node) = anchors.get(&id) else {
                    return Err(SyntaxError {
                        message: "unknown alias".to_string(),
                        span,
                    });
                };
                total_nodes += node.size();
                if total_nodes > MAX_NODES {
                    return Err(too_large(span));
                }
                let mut node = node.clone();
                node.span = span;
                Some((node, 0))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep(span));
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    span: first_char(span),
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep(span));
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    span: first_char(span),
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    span,
                    anchor,
                }) => Some((
                    Node {
                        value: Value::Seq(items),
                        span,
                    },
                    anchor,
                )),
                _ => {
                    return Err(SyntaxError {
                        message: "unbalanced sequence".to_string(),
                        span,
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    key: None,
                    span,
                    anchor,
                }) => Some((
                    Node {
                        value: Value::Map(entries),
                        span,
                    },
                    anchor,
                )),
                _ => {
                    return Err(SyntaxError {
                        message: "unbalanced mapping".to_string(),
                        span,
                    });
                }
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        total_nodes += 1;
        if total_nodes > MAX_NODES {
            return Err(too_large(node.span));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

/// Spans of quoted scalars include the quotes in saphyr; carets look best under the whole
/// token, so keep them. For plain scalars make sure the span is as wide as the text when the
/// parser reported a zero-width marker.
fn scalar_span(span: Span, text: &str, style: ScalarStyle) -> Span {
    if span.end.line == span.start.line && span.end.col <= span.start.col {
        let width = text.chars().count()
            + usize::from(matches!(
                style,
                ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
            )) * 2;
        return Span::new(
            span.start,
            Pos {
                line: span.start.line,
                col: span.start.col + width.max(1),
            },
        );
    }
    span
}

fn first_char(span: Span) -> Span {
    Span::new(
        span.start,
        Pos {
            line: span.start.line,
            col: span.start.col + 1,
        },
    )
}

fn too_deep(span: Span) -> SyntaxError {
    SyntaxError {
        message: format!("nesting deeper than {MAX_DEPTH} levels"),
        span,
    }
}

fn too_large(span: Span) -> SyntaxError {
    SyntaxError {
        message: format!("document expands to more than {MAX_NODES} nodes (check aliases)"),
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let doc = parse("a: 1\nbb:\n  c: \"x y\"\n").unwrap().unwrap();
        let map = doc.as_map().unwrap();
        assert_eq!(map[0].0.as_scalar(), Some("a"));
        assert_eq!(map[0].1.span.start, Pos { line: 1, col: 4 });
        let inner = map[1].1.as_map().unwrap();
        assert_eq!(inner[0].1.as_scalar(), Some("x y"));
        assert_eq!(inner[0].1.span.start, Pos { line: 3, col: 6 });
        assert_eq!(inner[0].1.span.end, Pos { line: 3, col: 11 });
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let doc = parse("- 'true'\n- true\n").unwrap().unwrap();
        let items = doc.as_seq().unwrap();
        assert!(matches!(items[0].value, Value::Scalar { plain: false, .. }));
        assert!(matches!(items[1].value, Value::Scalar { plain: true, .. }));
    }

    #[test]
    fn rejects_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing() {
        let text = "[".repeat(100_000);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn rejects_a_second_document() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn empty_file_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
