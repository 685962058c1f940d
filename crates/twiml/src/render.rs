//! Checks a [`Response`] and serialises it with quick-xml, byte for byte the way Twilio's
//! python helper (`twilio/twiml/__init__.py`, `ET.tostring`) does.
//!
//! [`render`] works in two passes: [`check`] walks the document in order and returns the
//! first value Twilio would reject, then the document is written through a
//! [`quick_xml::Writer`] into one buffer. Nothing is written for a document that fails its
//! check, so no error can leave half a document behind.
//!
//! Output rules:
//! * `<?xml version="1.0" encoding="UTF-8"?>` then the tree, no whitespace
//!   between elements.
//! * Attributes sorted by name (byte order), booleans `true`/`false`: each
//!   element lists its attributes in that order.
//! * Childless, textless elements are self-closed with a space: `<Hangup />`.
//! * Text escapes `& < >`; attribute values escape `& < > "` and write tab,
//!   line feed and carriage return as `&#09;`, `&#10;`, `&#13;` (as Python
//!   does, so attribute-value normalisation cannot change them). quick-xml's
//!   own escaping also writes `'` as `&apos;` in attributes, which Python does
//!   not, so values are escaped here ([`escape`]) and handed to quick-xml
//!   escaped.
//! * Every non-ASCII character is written as a decimal character reference
//!   (`ñ` → `&#241;`), as Python's default `us-ascii` `tostring` does; the
//!   document is therefore pure ASCII.
//! * **Deviation from Python:** a carriage return in text is written as
//!   `&#13;` (Python writes it raw, and a conforming parser would turn it into
//!   a line feed).
//! * **Characters XML 1.0 forbids** (C0 controls other than tab/LF/CR,
//!   U+FFFE, U+FFFF) are **stripped** from text and attribute values, never
//!   escaped (no escape exists for them in XML 1.0). A value that is empty
//!   after stripping counts as empty for the checks.
//!
//! The first problem found, in document order, is the [`RenderError::InvalidValue`]
//! returned; a `<Say>` without content and a `<Dial>` without nouns are reported before the
//! element's other problems. The finished document must not exceed [`MAX_DOCUMENT_BYTES`]
//! (Twilio error 11750).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;
use std::time::Duration;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::twiml::{
    Dial, DialNoun, Enqueue, FinishOnKey, Gather, GatherChild, GatherInput, Method, Play, Redirect,
    Response, Say, SaySegment, Verb,
};

/// Largest document Twilio accepts: 64 kB = 65,536 bytes (error 11750 above).
pub const MAX_DOCUMENT_BYTES: usize = 65_536;

/// Longest queue name `<Enqueue>` / `<Queue>` accept, in characters.
pub const MAX_QUEUE_NAME_CHARS: usize = 64;

/// Longest `<break>` inside `<Say>`.
pub const MAX_BREAK: Duration = Duration::from_secs(10);

/// Why a [`Response`] could not be rendered.
///
/// No variant carries the offending value itself: values may be secrets
/// (a spoken code, a caller's number), and errors get logged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderError {
    /// The rendered document is larger than Twilio accepts.
    TooLarge {
        /// Size of the rendered document in bytes.
        bytes: usize,
        /// The limit, [`MAX_DOCUMENT_BYTES`].
        limit: usize,
    },
    /// A value Twilio would reject (or that would make an unusable document).
    InvalidValue {
        /// TwiML element, e.g. `Gather`.
        element: &'static str,
        /// Attribute or content name, e.g. `numDigits` or `body`.
        field: &'static str,
        /// What is wrong, e.g. `must be at least 1`.
        reason: &'static str,
    },
    /// The writer failed. It writes into memory, which does not fail; kept so that no error
    /// is dropped.
    Unwritable,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::TooLarge { bytes, limit } => write!(
                f,
                "TwiML document is {bytes} bytes, over Twilio's limit of {limit} bytes"
            ),
            RenderError::InvalidValue {
                element,
                field,
                reason,
            } => write!(f, "invalid TwiML value for <{element}> {field}: {reason}"),
            RenderError::Unwritable => f.write_str("TwiML document could not be written"),
        }
    }
}

impl std::error::Error for RenderError {}

fn invalid(element: &'static str, field: &'static str, reason: &'static str) -> RenderError {
    RenderError::InvalidValue {
        element,
        field,
        reason,
    }
}

/// Checks and renders `response`; see the module documentation for the exact format.
///
/// # Errors
/// [`RenderError::InvalidValue`] for the first invalid value found,
/// [`RenderError::TooLarge`] when the result exceeds [`MAX_DOCUMENT_BYTES`].
pub fn render(response: &Response) -> Result<String, RenderError> {
    check(response)?;
    let mut xml = Xml {
        writer: Writer::new(Vec::with_capacity(1024)),
        tag: String::with_capacity(256),
    };
    write_response(&mut xml, response).map_err(|_| RenderError::Unwritable)?;
    let doc = xml.writer.into_inner();
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(RenderError::TooLarge {
            bytes: doc.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    // ASCII by construction (`escape`), so always UTF-8.
    String::from_utf8(doc).map_err(|_| RenderError::Unwritable)
}

// ---------------------------------------------------------------------------
// Checks

/// True for characters allowed by the XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Empty once the characters XML forbids are stripped.
fn is_blank(s: &str) -> bool {
    !s.chars().any(is_xml_char)
}

/// `Err` (`must not be empty`) when the optional value is present but blank.
fn check_present(element: &'static str, field: &'static str, value: Option<&str>) -> Check {
    match value {
        Some(v) if is_blank(v) => Err(invalid(element, field, "must not be empty")),
        _ => Ok(()),
    }
}

type Check = Result<(), RenderError>;

fn check_dtmf(element: &'static str, field: &'static str, s: Option<&str>) -> Check {
    let Some(s) = s else { return Ok(()) };
    if s.is_empty() {
        return Err(invalid(element, field, "must not be empty"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'w'))
    {
        return Err(invalid(element, field, "may only contain 0-9, *, # and w"));
    }
    Ok(())
}

fn check_queue_name(element: &'static str, name: &str) -> Check {
    if is_blank(name) {
        return Err(invalid(element, "queue name", "must not be empty"));
    }
    if name.chars().count() > MAX_QUEUE_NAME_CHARS {
        return Err(invalid(
            element,
            "queue name",
            "must be at most 64 characters",
        ));
    }
    Ok(())
}

/// The first value of `response` Twilio would reject, in document order.
fn check(response: &Response) -> Check {
    for verb in &response.verbs {
        match verb {
            Verb::Say(v) => check_say(v)?,
            Verb::Play(v) => check_play(v)?,
            Verb::Pause(_) | Verb::Hangup => {}
            Verb::Gather(v) => check_gather(v)?,
            Verb::Redirect(v) => check_url_body("Redirect", &v.url)?,
            Verb::Enqueue(v) => check_enqueue(v)?,
            Verb::Dial(v) => check_dial(v)?,
        }
    }
    Ok(())
}

/// An element body that is a URL: present by construction, must not be blank.
fn check_url_body(element: &'static str, url: &str) -> Check {
    if is_blank(url) {
        return Err(invalid(element, "url", "must not be empty"));
    }
    Ok(())
}

fn check_say(say: &Say) -> Check {
    let has_content = say.segments.iter().any(|s| match s {
        SaySegment::Text(t) => !is_blank(t),
        SaySegment::Digits(_) | SaySegment::Break(_) => true,
    });
    if !has_content {
        return Err(invalid(
            "Say",
            "body",
            "must contain text, digits or a break",
        ));
    }
    check_present("Say", "language", say.language.as_deref())?;
    check_present("Say", "voice", say.voice.as_deref())?;
    for segment in &say.segments {
        match segment {
            SaySegment::Text(_) => {}
            SaySegment::Digits(d) => {
                if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(
                        "say-as",
                        "digits",
                        "must be one or more ASCII digits",
                    ));
                }
            }
            SaySegment::Break(d) if *d > MAX_BREAK => {
                return Err(invalid("break", "time", "must be at most 10 seconds"));
            }
            SaySegment::Break(_) => {}
        }
    }
    Ok(())
}

fn check_play(play: &Play) -> Check {
    check_dtmf("Play", "digits", play.digits.as_deref())?;
    match &play.url {
        Some(url) => check_url_body("Play", url),
        None if play.digits.is_none() => Err(invalid("Play", "url", "needs a URL or digits")),
        None => Ok(()),
    }
}

fn check_gather(gather: &Gather) -> Check {
    check_present("Gather", "action", gather.action.as_deref())?;
    if let Some(FinishOnKey::Key(k)) = gather.finish_on_key
        && !(k.is_ascii_digit() || k == '*' || k == '#')
    {
        return Err(invalid(
            "Gather",
            "finishOnKey",
            "must be one of 0-9, * or #",
        ));
    }
    if gather.num_digits == Some(0) {
        return Err(invalid("Gather", "numDigits", "must be at least 1"));
    }
    for child in &gather.children {
        match child {
            GatherChild::Say(s) => check_say(s)?,
            GatherChild::Play(p) => check_play(p)?,
            GatherChild::Pause(_) => {}
        }
    }
    Ok(())
}

fn check_enqueue(enqueue: &Enqueue) -> Check {
    check_queue_name("Enqueue", &enqueue.queue)?;
    check_present("Enqueue", "action", enqueue.action.as_deref())?;
    check_present("Enqueue", "waitUrl", enqueue.wait_url.as_deref())
}

fn check_dial(dial: &Dial) -> Check {
    if dial.nouns.is_empty() {
        return Err(invalid(
            "Dial",
            "nouns",
            "needs at least one Number or Queue",
        ));
    }
    check_present("Dial", "action", dial.action.as_deref())?;
    check_present("Dial", "callerId", dial.caller_id.as_deref())?;
    for noun in &dial.nouns {
        match noun {
            DialNoun::Number(n) => {
                if is_blank(&n.number) {
                    return Err(invalid("Number", "number", "must not be empty"));
                }
                check_dtmf("Number", "sendDigits", n.send_digits.as_deref())?;
            }
            DialNoun::Queue(q) => {
                check_queue_name("Queue", &q.name)?;
                check_present("Queue", "url", q.url.as_deref())?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Escaping

/// `value` escaped for element text (`attr == false`) or a double-quoted attribute value
/// (`attr == true`), by the rules of the module documentation; borrowed when nothing in it
/// needs care (the usual case).
fn escape(value: &str, attr: bool) -> Cow<'_, str> {
    let plain = |b: u8| {
        (0x20..0x7f).contains(&b) & !matches!(b, b'&' | b'<' | b'>') & !(attr & (b == b'"'))
    };
    // `fold` rather than `all`: without the early exit the compiler checks many bytes at a
    // time, and values are short.
    if value.bytes().fold(true, |ok, b| ok & plain(b)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#09;"),
            c if !is_xml_char(c) => {}
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Writing (of a checked document)

/// The document being written, and the start tag being built (one buffer, reused for every
/// element, so writing allocates nothing per element).
struct Xml {
    writer: Writer<Vec<u8>>,
    tag: String,
}

/// A start tag being built in [`Xml::tag`]: the element's name, then its attributes, which
/// each element adds in name order. Built here rather than with quick-xml's `push_attribute`
/// because the values come escaped by [`escape`] and an empty element needs the space before
/// `/>`.
struct Tag<'w> {
    xml: &'w mut Xml,
    name: &'static str,
}

impl<'w> Tag<'w> {
    fn new(xml: &'w mut Xml, name: &'static str) -> Self {
        xml.tag.clear();
        xml.tag.push_str(name);
        Tag { xml, name }
    }

    /// ` name="value"` (escaped) when there is a value.
    fn attr(self, name: &'static str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            let tag = &mut self.xml.tag;
            tag.push(' ');
            tag.push_str(name);
            tag.push_str("=\"");
            tag.push_str(&escape(v, true));
            tag.push('"');
        }
        self
    }

    /// A number attribute.
    fn num(self, name: &'static str, value: Option<u32>) -> Self {
        let mut digits = itoa::Buffer::new();
        self.attr(name, value.map(|n| digits.format(n)))
    }

    /// `<name attrs>`, the element's content and `</name>` to follow.
    fn open(self) -> io::Result<()> {
        let start = BytesStart::from_content(self.xml.tag.as_str(), self.name.len());
        self.xml.writer.write_event(Event::Start(start))
    }

    /// `<name attrs />`, childless and textless.
    fn empty(self) -> io::Result<()> {
        self.xml.tag.push(' ');
        let start = BytesStart::from_content(self.xml.tag.as_str(), self.name.len());
        self.xml.writer.write_event(Event::Empty(start))
    }

    /// `<name attrs>text</name>`.
    fn with_text(self, text: &str) -> io::Result<()> {
        let name = self.name;
        let xml = &mut *self.xml;
        Tag { xml, name }.open()?;
        write_text(xml, text)?;
        close(xml, name)
    }
}

fn write_text(xml: &mut Xml, text: &str) -> io::Result<()> {
    let text = BytesText::from_escaped(escape(text, false));
    xml.writer.write_event(Event::Text(text))
}

fn close(xml: &mut Xml, name: &'static str) -> io::Result<()> {
    xml.writer.write_event(Event::End(BytesEnd::new(name)))
}

fn method(m: Option<Method>) -> Option<&'static str> {
    m.map(Method::as_str)
}

fn write_response(w: &mut Xml, response: &Response) -> io::Result<()> {
    let decl = BytesDecl::new("1.0", Some("UTF-8"), None);
    w.writer.write_event(Event::Decl(decl))?;
    if response.verbs.is_empty() {
        return Tag::new(w, "Response").empty();
    }
    Tag::new(w, "Response").open()?;
    for verb in &response.verbs {
        match verb {
            Verb::Say(v) => write_say(w, v)?,
            Verb::Play(v) => write_play(w, v)?,
            Verb::Pause(v) => Tag::new(w, "Pause").num("length", v.length).empty()?,
            Verb::Gather(v) => write_gather(w, v)?,
            Verb::Redirect(v) => write_redirect(w, v)?,
            Verb::Enqueue(v) => write_enqueue(w, v)?,
            Verb::Dial(v) => write_dial(w, v)?,
            Verb::Hangup => Tag::new(w, "Hangup").empty()?,
        }
    }
    close(w, "Response")
}

fn write_say(w: &mut Xml, say: &Say) -> io::Result<()> {
    Tag::new(w, "Say")
        .attr("language", say.language.as_deref())
        .num("loop", say.loop_count)
        .attr("voice", say.voice.as_deref())
        .open()?;
    for segment in &say.segments {
        match segment {
            SaySegment::Text(t) => write_text(w, t)?,
            SaySegment::Digits(d) => Tag::new(w, "say-as")
                .attr("interpret-as", Some("digits"))
                .with_text(d)?,
            SaySegment::Break(d) => {
                // At most 10 s (checked): no overflow.
                let ms = d.as_secs() * 1000 + u64::from(d.subsec_millis());
                let time = if ms.is_multiple_of(1000) {
                    format!("{}s", ms / 1000)
                } else {
                    format!("{ms}ms")
                };
                Tag::new(w, "break").attr("time", Some(&time)).empty()?;
            }
        }
    }
    close(w, "Say")
}

fn write_play(w: &mut Xml, play: &Play) -> io::Result<()> {
    let tag = Tag::new(w, "Play")
        .attr("digits", play.digits.as_deref())
        .num("loop", play.loop_count);
    match &play.url {
        Some(url) => tag.with_text(url),
        None => tag.empty(),
    }
}

fn write_gather(w: &mut Xml, gather: &Gather) -> io::Result<()> {
    let mut key = [0; 4];
    let finish_on_key = gather.finish_on_key.map(|k| match k {
        FinishOnKey::Key(k) => &*k.encode_utf8(&mut key),
        FinishOnKey::Disabled => "",
    });
    let tag = Tag::new(w, "Gather")
        .attr("action", gather.action.as_deref())
        .attr(
            "actionOnEmptyResult",
            gather
                .action_on_empty_result
                .map(|b| if b { "true" } else { "false" }),
        )
        .attr("finishOnKey", finish_on_key)
        .attr("input", gather.input.map(GatherInput::as_str))
        .attr("method", method(gather.method))
        .num("numDigits", gather.num_digits)
        .num("timeout", gather.timeout);
    if gather.children.is_empty() {
        return tag.empty();
    }
    tag.open()?;
    for child in &gather.children {
        match child {
            GatherChild::Say(s) => write_say(w, s)?,
            GatherChild::Play(p) => write_play(w, p)?,
            GatherChild::Pause(p) => Tag::new(w, "Pause").num("length", p.length).empty()?,
        }
    }
    close(w, "Gather")
}

fn write_redirect(w: &mut Xml, redirect: &Redirect) -> io::Result<()> {
    Tag::new(w, "Redirect")
        .attr("method", method(redirect.method))
        .with_text(&redirect.url)
}

fn write_enqueue(w: &mut Xml, enqueue: &Enqueue) -> io::Result<()> {
    Tag::new(w, "Enqueue")
        .attr("action", enqueue.action.as_deref())
        .attr("method", method(enqueue.method))
        .attr("waitUrl", enqueue.wait_url.as_deref())
        .attr("waitUrlMethod", method(enqueue.wait_url_method))
        .with_text(&enqueue.queue)
}

fn write_dial(w: &mut Xml, dial: &Dial) -> io::Result<()> {
    Tag::new(w, "Dial")
        .attr("action", dial.action.as_deref())
        .attr("callerId", dial.caller_id.as_deref())
        .attr("method", method(dial.method))
        .num("timeout", dial.timeout)
        .open()?;
    for noun in &dial.nouns {
        match noun {
            DialNoun::Number(n) => Tag::new(w, "Number")
                .attr("sendDigits", n.send_digits.as_deref())
                .with_text(&n.number)?,
            DialNoun::Queue(q) => Tag::new(w, "Queue")
                .attr("url", q.url.as_deref())
                .with_text(&q.name)?,
        }
    }
    close(w, "Dial")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml::{Dial, Enqueue, Gather, Hangup, Number, Pause, Play, Queue, Redirect};
    use proptest::prelude::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    /// `s` without the characters XML 1.0 forbids (what the tests expect rendered).
    fn strip_forbidden(s: &str) -> String {
        s.chars().filter(|&c| is_xml_char(c)).collect()
    }

    fn doc<'a>(verb: impl Into<Verb<'a>>) -> Result<String, RenderError> {
        Response::new().verb(verb).render()
    }

    fn err<'a>(verb: impl Into<Verb<'a>>) -> (&'static str, &'static str) {
        match doc(verb) {
            Err(RenderError::InvalidValue { element, field, .. }) => (element, field),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    /// Parses `xml` with quick-xml; returns the text and attributes of the
    /// first element called `name`, and fails on any well-formedness error.
    fn read_back(xml: &str, name: &str) -> (String, Vec<(String, String)>) {
        let mut reader = Reader::from_str(xml);
        let mut depth_in_target = 0usize;
        let mut text = String::new();
        let mut attrs = Vec::new();
        let mut found = false;
        loop {
            match reader.read_event() {
                Err(e) => panic!("not well-formed: {e}\n{xml}"),
                Ok(Event::Eof) => break,
                Ok(Event::Start(e)) => {
                    if depth_in_target > 0 {
                        depth_in_target += 1;
                    } else if !found && e.name().as_ref() == name.as_bytes() {
                        found = true;
                        depth_in_target = 1;
                        for a in e.attributes() {
                            let a = a.unwrap_or_else(|e| panic!("bad attribute: {e}"));
                            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                            let value = a
                                .unescape_value()
                                .unwrap_or_else(|e| panic!("bad attribute value: {e}"));
                            attrs.push((key, value.into_owned()));
                        }
                    }
                }
                Ok(Event::End(_)) => depth_in_target = depth_in_target.saturating_sub(1),
                Ok(Event::Text(t)) if depth_in_target > 0 => {
                    text.push_str(&t.xml10_content().unwrap_or_else(|e| panic!("{e}")));
                }
                Ok(Event::GeneralRef(r)) if depth_in_target > 0 => {
                    match r.resolve_char_ref().unwrap_or_else(|e| panic!("{e}")) {
                        Some(c) => text.push(c),
                        None => text.push(match r.as_ref() {
                            b"amp" => '&',
                            b"lt" => '<',
                            b"gt" => '>',
                            b"quot" => '"',
                            b"apos" => '\'',
                            other => panic!("unknown entity {other:?}"),
                        }),
                    }
                }
                Ok(_) => {}
            }
        }
        assert!(found, "no <{name}> in {xml}");
        (text, attrs)
    }

    #[test]
    fn forbidden_control_characters_are_stripped() {
        let xml = doc(Say::from_text(
            "a\u{0}b\u{1}c\u{8}d\u{b}e\u{c}f\u{1f}g\u{fffe}h\u{ffff}i\u{7f}j",
        )
        .voice("m\u{0}an"))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            xml,
            format!("{DECL}<Response><Say voice=\"man\">abcdefghi\u{7f}j</Say></Response>")
        );
        // Tab, LF and CR survive (CR as a char ref so parsers keep it).
        let xml = doc(Say::from_text("a\tb\nc\rd")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            xml,
            format!("{DECL}<Response><Say>a\tb\nc&#13;d</Say></Response>")
        );
        assert_eq!(read_back(&xml, "Say").0, "a\tb\nc\rd");
    }

    #[test]
    fn all_five_special_characters_escape_and_round_trip() {
        let s = r#"Tom & Jerry's <"quoted"> text"#;
        let xml = doc(Say::from_text(s).voice(s)).unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.contains(r#"voice="Tom &amp; Jerry's &lt;&quot;quoted&quot;&gt; text""#));
        assert!(xml.contains(r#">Tom &amp; Jerry's &lt;"quoted"&gt; text</Say>"#));
        let (text, attrs) = read_back(&xml, "Say");
        assert_eq!(text, s);
        assert_eq!(attrs, vec![("voice".to_owned(), s.to_owned())]);
    }

    #[test]
    fn breaks_and_digits() {
        let xml = doc(Say::new()
            .break_for(Duration::ZERO)
            .break_for(Duration::from_micros(1500))
            .break_for(MAX_BREAK)
            .digits("0042"))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.contains(
            r#"<Say><break time="0s" /><break time="1ms" /><break time="10s" /><say-as interpret-as="digits">0042</say-as></Say>"#
        ));
        assert_eq!(
            err(Say::new().break_for(MAX_BREAK + Duration::from_millis(1))),
            ("break", "time")
        );
        assert_eq!(err(Say::new().digits("12a")), ("say-as", "digits"));
        assert_eq!(err(Say::new().digits("")), ("say-as", "digits"));
        assert_eq!(err(Say::new().digits("١٢")), ("say-as", "digits"));
    }

    #[test]
    fn say_needs_content() {
        assert_eq!(err(Say::new()), ("Say", "body"));
        assert_eq!(err(Say::from_text("")), ("Say", "body"));
        assert_eq!(err(Say::from_text("\u{0}\u{1}")), ("Say", "body"));
        assert_eq!(err(Say::from_text("hi").voice("")), ("Say", "voice"));
        assert_eq!(err(Say::from_text("hi").language("")), ("Say", "language"));
        assert!(doc(Say::from_text(" ")).is_ok());
    }

    #[test]
    fn gather_values() {
        assert_eq!(err(Gather::new().num_digits(0)), ("Gather", "numDigits"));
        assert!(doc(Gather::new().num_digits(1)).is_ok());
        for bad in ['a', 'w', ' ', '\0', '&', '１'] {
            assert_eq!(
                err(Gather::new().finish_on_key(FinishOnKey::Key(bad))),
                ("Gather", "finishOnKey"),
                "{bad:?}"
            );
        }
        for good in ['0', '9', '*', '#'] {
            assert!(doc(Gather::new().finish_on_key(FinishOnKey::Key(good))).is_ok());
        }
        assert_eq!(
            err(Gather::new().action("", Method::Post)),
            ("Gather", "action")
        );
        // Children are checked too.
        assert_eq!(err(Gather::new().child(Say::new())), ("Say", "body"));
        assert_eq!(
            doc(Gather::new()
                .input(GatherInput::DtmfSpeech)
                .action_on_empty_result(false)),
            Ok(format!(
                "{DECL}<Response><Gather actionOnEmptyResult=\"false\" input=\"dtmf speech\" /></Response>"
            ))
        );
    }

    #[test]
    fn play_values() {
        assert_eq!(err(Play::default()), ("Play", "url"));
        assert_eq!(err(Play::new("")), ("Play", "url"));
        assert_eq!(err(Play::tones("")), ("Play", "digits"));
        assert_eq!(err(Play::tones("12x")), ("Play", "digits"));
        assert!(doc(Play::tones("0123456789*#w")).is_ok());
        assert_eq!(
            doc(Play {
                digits: Some("1".into()),
                ..Play::new("/a.mp3")
            }),
            Ok(format!(
                "{DECL}<Response><Play digits=\"1\">/a.mp3</Play></Response>"
            ))
        );
    }

    #[test]
    fn queue_names() {
        let max = "q".repeat(MAX_QUEUE_NAME_CHARS);
        assert!(doc(Enqueue::new(max.clone())).is_ok());
        // 64 multi-byte characters are fine; 65 are not.
        assert!(doc(Enqueue::new("é".repeat(64))).is_ok());
        assert_eq!(
            err(Enqueue::new(format!("{max}q"))),
            ("Enqueue", "queue name")
        );
        assert_eq!(err(Enqueue::new("")), ("Enqueue", "queue name"));
        assert_eq!(err(Dial::queue(format!("{max}q"))), ("Queue", "queue name"));
        assert_eq!(err(Dial::queue("")), ("Queue", "queue name"));
        let too_long = RenderError::InvalidValue {
            element: "Enqueue",
            field: "queue name",
            reason: "must be at most 64 characters",
        };
        assert_eq!(doc(Enqueue::new(format!("{max}q"))), Err(too_long.clone()));
        assert_eq!(
            too_long.to_string(),
            "invalid TwiML value for <Enqueue> queue name: must be at most 64 characters"
        );
        assert_eq!(
            err(Enqueue {
                wait_url: Some("".into()),
                ..Enqueue::new("q")
            }),
            ("Enqueue", "waitUrl")
        );
    }

    #[test]
    fn dial_values() {
        assert_eq!(err(Dial::default()), ("Dial", "nouns"));
        assert_eq!(err(Dial::number("")), ("Number", "number"));
        assert_eq!(
            err(Dial {
                caller_id: Some("".into()),
                ..Dial::number("+1555")
            }),
            ("Dial", "callerId")
        );
        assert_eq!(
            err(Dial {
                nouns: vec![
                    Number {
                        number: "+1555".into(),
                        send_digits: Some("1-2".into()),
                    }
                    .into()
                ],
                ..Dial::default()
            }),
            ("Number", "sendDigits")
        );
        assert_eq!(
            err(Dial {
                nouns: vec![
                    Queue {
                        name: "q".into(),
                        url: Some("".into()),
                    }
                    .into()
                ],
                ..Dial::default()
            }),
            ("Queue", "url")
        );
    }

    #[test]
    fn redirect_needs_url() {
        assert_eq!(err(Redirect::new("")), ("Redirect", "url"));
        assert_eq!(err(Redirect::new("\u{0}")), ("Redirect", "url"));
    }

    #[test]
    fn size_limit_is_65536_bytes_inclusive() {
        let base = doc(Say::from_text("a")).map(|s| s.len()).unwrap_or(0);
        let fits = MAX_DOCUMENT_BYTES - (base - 1);
        let exact = doc(Say::from_text("a".repeat(fits))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exact.len(), MAX_DOCUMENT_BYTES);
        assert_eq!(
            doc(Say::from_text("a".repeat(fits + 1))),
            Err(RenderError::TooLarge {
                bytes: MAX_DOCUMENT_BYTES + 1,
                limit: MAX_DOCUMENT_BYTES
            })
        );
        // Escaping counts: 20,000 ampersands become 100,000 bytes.
        assert!(matches!(
            doc(Say::from_text("&".repeat(20_000))),
            Err(RenderError::TooLarge { .. })
        ));
        assert_eq!(
            RenderError::TooLarge {
                bytes: 70_000,
                limit: MAX_DOCUMENT_BYTES
            }
            .to_string(),
            "TwiML document is 70000 bytes, over Twilio's limit of 65536 bytes"
        );
    }

    /// `every_verb()` as the renderers before quick-xml wrote it (the model-building renderer
    /// of commit 4e54156, then the streaming `Writer`).
    const EVERY_VERB: &str = r##"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US" loop="2" voice="Polly.Joanna">Code <say-as interpret-as="digits">12</say-as><break time="1500ms" />&amp;&lt;&gt;"&#233;</Say><Play loop="0">https://x/a.mp3?a=1&amp;b=2</Play><Play digits="ww1#" /><Pause length="12" /><Pause /><Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0"><Say>hi</Say><Play>/b.wav</Play><Pause length="1" /></Gather><Gather finishOnKey="" /><Redirect method="POST">/next</Redirect><Enqueue action="/q" method="POST" waitUrl="/wait" waitUrlMethod="GET">support</Enqueue><Dial action="/d" callerId="+15550001111" method="POST" timeout="20"><Number sendDigits="ww12">+15550002222</Number><Queue url="/q">support</Queue></Dial><Hangup /></Response>"##;

    /// A document with every verb and attribute, as a model.
    fn every_verb() -> Response<'static> {
        Response::new()
            .verb(
                Say::from_text("Code ")
                    .digits("12")
                    .break_for(Duration::from_millis(1500))
                    .text("&<>\"é")
                    .voice("Polly.Joanna")
                    .language("en-US")
                    .loop_count(2),
            )
            .verb(Play::new("https://x/a.mp3?a=1&b=2").loop_count(0))
            .verb(Play::tones("ww1#"))
            .verb(Pause::seconds(12))
            .verb(Pause::default())
            .verb(
                Gather::new()
                    .input(GatherInput::DtmfSpeech)
                    .action("/g?x=1&y=\"2\"", Method::Get)
                    .num_digits(4_294_967_295)
                    .finish_on_key(FinishOnKey::Key('#'))
                    .timeout(0)
                    .action_on_empty_result(true)
                    .child(Say::from_text("hi"))
                    .child(Play::new("/b.wav"))
                    .child(Pause::seconds(1)),
            )
            .verb(Gather::new().finish_on_key(FinishOnKey::Disabled))
            .verb(Redirect::new("/next").method(Method::Post))
            .verb(Enqueue {
                action: Some("/q".into()),
                method: Some(Method::Post),
                wait_url: Some("/wait".into()),
                wait_url_method: Some(Method::Get),
                ..Enqueue::new("support")
            })
            .verb(Dial {
                nouns: vec![
                    Number {
                        number: "+15550002222".into(),
                        send_digits: Some("ww12".into()),
                    }
                    .into(),
                    Queue {
                        name: "support".into(),
                        url: Some("/q".into()),
                    }
                    .into(),
                ],
                action: Some("/d".into()),
                method: Some(Method::Post),
                timeout: Some(20),
                caller_id: Some("+15550001111".into()),
            })
            .verb(Hangup)
    }

    #[test]
    fn every_verb_and_attribute_byte_for_byte() {
        let rendered = every_verb().render().unwrap_or_else(|e| panic!("{e}"));
        // What the renderer before quick-xml wrote for this model, byte for byte.
        assert_eq!(rendered, EVERY_VERB);
        assert!(rendered.contains(
            r##"<Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0">"##
        ));
        assert!(rendered.contains(r#"<Pause length="12" /><Pause />"#));
        assert!(rendered.contains(r#"<break time="1500ms" />&amp;&lt;&gt;"&#233;</Say>"#));
        read_back(&rendered, "Dial");
        assert_eq!(Response::new().render(), Ok(format!("{DECL}<Response />")));
    }

    #[test]
    fn the_first_problem_in_document_order_is_the_one_reported() {
        fn first_error(response: Response<'_>) -> RenderError {
            match response.render() {
                Err(e) => e,
                Ok(doc) => panic!("expected an error, got {doc}"),
            }
        }
        // Later valid verbs do not hide it; later problems do not replace it.
        assert_eq!(
            first_error(
                Response::new()
                    .verb(Pause::seconds(1))
                    .verb(Play::default())
                    .verb(Say::new())
                    .verb(Hangup)
            ),
            invalid("Play", "url", "needs a URL or digits")
        );
        // A Say without content is reported before its attributes and segments; but not
        // before an earlier element's problem.
        assert_eq!(
            first_error(Response::new().verb(Say::from_text("\u{1}").voice(""))),
            invalid("Say", "body", "must contain text, digits or a break")
        );
        assert_eq!(
            first_error(Response::new().verb(Say::new().digits("x").voice(""))),
            invalid("Say", "voice", "must not be empty")
        );
        assert_eq!(
            first_error(Response::new().verb(Gather::new().num_digits(0).child(Say::new()))),
            invalid("Gather", "numDigits", "must be at least 1")
        );
        // Likewise a Dial without nouns.
        assert_eq!(
            first_error(Response::new().verb(Dial {
                caller_id: Some("".into()),
                ..Dial::default()
            })),
            invalid("Dial", "nouns", "needs at least one Number or Queue")
        );
        assert_eq!(
            first_error(Response::new().verb(Dial {
                caller_id: Some("".into()),
                ..Dial::number("")
            })),
            invalid("Dial", "callerId", "must not be empty")
        );
        // The size limit applies to documents of many small values too.
        let mut say = Say::new();
        for _ in 0..MAX_DOCUMENT_BYTES / 10 {
            say = say.text("0123456789");
        }
        assert!(matches!(
            Response::new().verb(say).render(),
            Err(RenderError::TooLarge { .. })
        ));
    }

    #[test]
    fn output_is_ascii() {
        let xml =
            doc(Say::from_text("Grüße 👋").voice("Polly.Léa")).unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.is_ascii(), "{xml}");
        let (text, attrs) = read_back(&xml, "Say");
        assert_eq!(text, "Grüße 👋");
        assert_eq!(attrs[0].1, "Polly.Léa");
        assert_eq!(
            doc(Hangup),
            Ok(format!("{DECL}<Response><Hangup /></Response>"))
        );
    }

    /// Arbitrary text, biased towards characters that need care.
    fn nasty_text() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            '&', '<', '>', '"', '\'', '\r', '\n', '\t', '\0', '\u{1}', '\u{b}', '\u{fffe}',
            '\u{ffff}', ']', ';', '#', ' ', 'é', '😀',
        ]);
        proptest::collection::vec(prop_oneof![any::<char>(), special], 0..64)
            .prop_map(String::from_iter)
    }

    proptest! {
        #[test]
        fn say_text_and_voice_survive_a_parse(text in nasty_text(), voice in nasty_text()) {
            let expected_text = strip_forbidden(&text);
            let expected_voice = strip_forbidden(&voice);
            let result = doc(Say::from_text(text.clone()).voice(voice.clone()));
            if expected_text.is_empty() || expected_voice.is_empty() {
                let is_invalid = matches!(result, Err(RenderError::InvalidValue { .. }));
                prop_assert!(is_invalid);
            } else {
                let xml = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(xml.is_ascii());
                let (got_text, attrs) = read_back(&xml, "Say");
                prop_assert_eq!(got_text, expected_text);
                prop_assert_eq!(attrs, vec![("voice".to_owned(), expected_voice)]);
            }
        }

        #[test]
        fn redirect_url_survives_a_parse(url in nasty_text()) {
            let expected = strip_forbidden(&url);
            let result = doc(Redirect::new(url.clone()).method(Method::Get));
            if expected.is_empty() {
                let is_invalid = matches!(result, Err(RenderError::InvalidValue { .. }));
                prop_assert!(is_invalid);
            } else {
                let xml = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(read_back(&xml, "Redirect").0, expected);
            }
        }

        #[test]
        fn gather_children_with_random_text_parse(texts in proptest::collection::vec(nasty_text(), 1..4)) {
            let mut gather = Gather::new().num_digits(4);
            for t in &texts {
                gather = gather.child(Say::from_text(format!("x{t}")).digits("1"));
            }
            let xml = doc(gather).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (text, _) = read_back(&xml, "Gather");
            let expected: String = texts
                .iter()
                .map(|t| format!("x{}1", strip_forbidden(t)))
                .collect();
            prop_assert_eq!(text, expected);
        }
    }
}
