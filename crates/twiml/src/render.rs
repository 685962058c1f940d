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
    if !say.segments.iter().any(has_content) {
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
            SaySegment::Emphasis { level, segments } => {
                check_ssml_word("emphasis", "level", level, |c| c.is_ascii_lowercase())?;
                check_inner("emphasis", segments)?;
            }
            SaySegment::Prosody { rate, segments } => {
                check_ssml_word("prosody", "rate", rate, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '%'
                })?;
                check_inner("prosody", segments)?;
            }
            flat => check_flat_segment(flat)?,
        }
    }
    Ok(())
}

fn has_content(segment: &SaySegment) -> bool {
    match segment {
        SaySegment::Text(t) => !is_blank(t),
        SaySegment::Digits(_) | SaySegment::Break(_) => true,
        SaySegment::Emphasis { segments, .. } | SaySegment::Prosody { segments, .. } => {
            segments.iter().any(has_content)
        }
    }
}

/// An SSML attribute word: non-empty, at most 16 characters, each accepted by `ok`.
fn check_ssml_word(
    element: &'static str,
    field: &'static str,
    w: &str,
    ok: fn(char) -> bool,
) -> Check {
    if w.is_empty() || w.len() > 16 || !w.chars().all(ok) {
        return Err(invalid(element, field, "must be one SSML word"));
    }
    Ok(())
}

/// The inside of `<emphasis>` / `<prosody>`: content, and no further nesting.
fn check_inner(element: &'static str, segments: &[SaySegment]) -> Check {
    if !segments.iter().any(has_content) {
        return Err(invalid(
            element,
            "body",
            "must contain text, digits or a break",
        ));
    }
    segments.iter().try_for_each(check_flat_segment)
}

/// Text, digits or a break (never a nested element).
fn check_flat_segment(segment: &SaySegment) -> Check {
    match segment {
        SaySegment::Text(_) => Ok(()),
        SaySegment::Digits(d) if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) => Err(
            invalid("say-as", "digits", "must be one or more ASCII digits"),
        ),
        SaySegment::Digits(_) => Ok(()),
        SaySegment::Break(d) if *d > MAX_BREAK => {
            Err(invalid("break", "time", "must be at most 10 seconds"))
        }
        SaySegment::Break(_) => Ok(()),
        SaySegment::Emphasis { .. } | SaySegment::Prosody { .. } => Err(invalid(
            "Say",
            "body",
            "emphasis and prosody cannot be nested",
        )),
    }
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
        write_segment(w, segment)?;
    }
    close(w, "Say")
}

/// One `<Say>` segment (nesting is one level deep, checked before writing).
fn write_segment(w: &mut Xml, segment: &SaySegment) -> io::Result<()> {
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
        SaySegment::Emphasis { level, segments } => {
            Tag::new(w, "emphasis").attr("level", Some(level)).open()?;
            segments.iter().try_for_each(|s| write_segment(w, s))?;
            close(w, "emphasis")?;
        }
        SaySegment::Prosody { rate, segments } => {
            Tag::new(w, "prosody").attr("rate", Some(rate)).open()?;
            segments.iter().try_for_each(|s| write_segment(w, s))?;
            close(w, "prosody")?;
        }
    }
    Ok(())
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
mod tests;
