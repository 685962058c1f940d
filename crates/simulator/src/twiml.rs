//! Reading TwiML the way Twilio does: a `<Response>` root, case-sensitive names, verbs in
//! document order. A document that is not well-formed is error 12100, a root other than
//! `<Response>` is 12102 (protocol.md §4). Unknown verbs are kept so the carrier can fail the
//! call on them as Twilio does.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// One element of a document, with its attributes and children (text is a child too).
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// An element.
    Element {
        /// Element name, as written.
        name: String,
        /// Attributes in document order, values unescaped.
        attrs: Vec<(String, String)>,
        /// Children in document order.
        children: Vec<Node>,
    },
    /// Character data (entities resolved).
    Text(String),
}

impl Node {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        match self {
            Node::Element { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
            Node::Text(_) => None,
        }
    }

    /// All text inside, children included, a `<break>` as a space, whitespace runs collapsed.
    pub fn text(&self) -> String {
        fn walk(n: &Node, out: &mut String) {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Element { name, .. } if name == "break" => out.push(' '),
                Node::Element { children, .. } => {
                    for c in children {
                        walk(c, out);
                    }
                }
            }
        }
        let mut s = String::new();
        walk(self, &mut s);
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Why a document was refused, as Twilio's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// Twilio error code (12100 parse failure, 12102 wrong root).
    pub code: u32,
    /// What was wrong.
    pub detail: String,
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.detail)
    }
}

impl std::error::Error for DocumentError {}

fn parse_error(detail: impl Into<String>) -> DocumentError {
    DocumentError {
        code: 12100,
        detail: detail.into(),
    }
}

fn element(start: &BytesStart<'_>) -> Result<Node, DocumentError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| parse_error(format!("bad attribute: {e}")))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|e| parse_error(format!("bad attribute value: {e}")))?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Node::Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

fn push_child(stack: &mut [Node], child: Node) -> Result<(), DocumentError> {
    match stack.last_mut() {
        Some(Node::Element { children, .. }) => {
            children.push(child);
            Ok(())
        }
        _ => Err(parse_error("content outside the root element")),
    }
}

/// Parses a TwiML document and returns the verbs of its `<Response>` root.
///
/// # Errors
/// 12100 when the text is not well-formed XML (including a blank line before the XML
/// declaration, unclosed or mis-nested elements, unescaped `&` or `<`), 12102 when the root
/// is not `<Response>`.
pub fn parse(doc: &str) -> Result<Vec<Node>, DocumentError> {
    if doc.starts_with(['\n', '\r', ' ', '\t']) && doc.trim_start().starts_with("<?xml") {
        return Err(parse_error(
            "whitespace before the XML declaration (Twilio refuses it)",
        ));
    }
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| parse_error(format!("not well-formed: {e}")))?;
        match event {
            Event::Eof => break,
            Event::Start(s) => {
                if root.is_some() {
                    return Err(parse_error("more than one root element"));
                }
                stack.push(element(&s)?);
            }
            Event::Empty(s) => {
                let node = element(&s)?;
                if stack.is_empty() {
                    if root.is_some() {
                        return Err(parse_error("more than one root element"));
                    }
                    root = Some(node);
                } else {
                    push_child(&mut stack, node)?;
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(parse_error("closing tag without an opening tag"));
                };
                if stack.is_empty() {
                    root = Some(done);
                } else {
                    push_child(&mut stack, done)?;
                }
            }
            Event::Text(t) => {
                let text = t
                    .xml10_content()
                    .map_err(|e| parse_error(format!("bad text: {e}")))?
                    .into_owned();
                if stack.is_empty() {
                    if !text.trim().is_empty() {
                        return Err(parse_error("text outside the root element"));
                    }
                } else {
                    push_child(&mut stack, Node::Text(text))?;
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8_lossy(&c).into_owned();
                push_child(&mut stack, Node::Text(text))?;
            }
            Event::GeneralRef(r) => {
                let c = match r
                    .resolve_char_ref()
                    .map_err(|e| parse_error(format!("bad character reference: {e}")))?
                {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        _ => return Err(parse_error("unknown entity")),
                    },
                };
                push_child(&mut stack, Node::Text(c.to_string()))?;
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(parse_error("unclosed element at the end of the document"));
    }
    match root {
        Some(Node::Element { name, children, .. }) if name == "Response" => Ok(children
            .into_iter()
            .filter(|c| matches!(c, Node::Element { .. }))
            .collect()),
        Some(Node::Element { name, .. }) => Err(DocumentError {
            code: 12102,
            detail: format!("the root element is <{name}>, not <Response>"),
        }),
        _ => Err(parse_error("empty document")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_come_back_in_order_with_attributes_and_text() {
        let verbs = parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><!-- hi --><Say voice=\"man\">A &amp; B <say-as interpret-as=\"digits\">12</say-as></Say><Pause length=\"2\" /></Response>",
        )
        .expect("parse");
        assert_eq!(verbs.len(), 2);
        assert_eq!(verbs[0].attr("voice"), Some("man"));
        assert_eq!(verbs[0].text(), "A & B 12");
        assert_eq!(verbs[1].attr("length"), Some("2"));
        let ssml = parse(
            "<Response><Say>Now <emphasis level=\"strong\">listen</emphasis><break time=\"1s\" /><prosody rate=\"slow\">in &lt;b&gt;</prosody></Say></Response>",
        )
        .expect("parse");
        assert_eq!(ssml[0].text(), "Now listen in <b>");
    }

    #[test]
    fn twilio_refuses_what_it_cannot_parse() {
        for bad in [
            "\n<?xml version=\"1.0\"?><Response/>",
            "<Response><Say>a & b</Say></Response>",
            "<Response><Say>x</Response>",
            "<Response><Say>x</Say>",
            "",
            "<Response/><Response/>",
        ] {
            assert_eq!(parse(bad).map_err(|e| e.code), Err(12100), "{bad:?}");
        }
        assert_eq!(
            parse("<Document><Say>x</Say></Document>").map_err(|e| e.code),
            Err(12102)
        );
        assert_eq!(parse("<Response/>"), Ok(vec![]));
    }
}
