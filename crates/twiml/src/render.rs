//! Checks a [`Response`] and serialises it, byte for byte, the way Twilio's
//! python helper (`twilio/twiml/__init__.py`, `ET.tostring`) does.
//!
//! Output rules:
//! * `<?xml version="1.0" encoding="UTF-8"?>` then the tree, no whitespace
//!   between elements.
//! * Attributes sorted by name (byte order), booleans `true`/`false`.
//! * Childless, textless elements are self-closed with a space: `<Hangup />`.
//! * Text escapes `& < >`; attribute values escape `& < > "` and write tab,
//!   line feed and carriage return as `&#09;`, `&#10;`, `&#13;` (as Python
//!   does, so attribute-value normalisation cannot change them).
//! * Every non-ASCII character is written as a decimal character reference
//!   (`ñ` → `&#241;`), as Python's default `us-ascii` `tostring` does; the
//!   document is therefore pure ASCII.
//! * **Deviation from Python:** a carriage return in text is written as
//!   `&#13;` (Python writes it raw, and a conforming parser would turn it into
//!   a line feed).
//! * **Characters XML 1.0 forbids** (C0 controls other than tab/LF/CR,
//!   U+FFFE, U+FFFF) are **stripped** from text and attribute values, never
//!   escaped (no escape exists for them in XML 1.0). A value that is empty
//!   after stripping counts as empty for validation.
//!
//! Values are validated before anything is written; the first problem found
//! is returned as [`RenderError::InvalidValue`]. The finished document must
//! not exceed [`MAX_DOCUMENT_BYTES`] (Twilio error 11750).

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use crate::twiml::{
    Dial, DialNoun, Enqueue, FinishOnKey, Gather, GatherChild, Pause, Play, Redirect, Response,
    Say, SaySegment, Verb,
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

/// Renders `response`; see the module documentation for the exact format.
///
/// # Errors
/// [`RenderError::InvalidValue`] for the first invalid value found,
/// [`RenderError::TooLarge`] when the result exceeds [`MAX_DOCUMENT_BYTES`].
pub fn render(response: &Response) -> Result<String, RenderError> {
    let mut out = Out {
        doc: String::with_capacity(1024),
    };
    out.doc
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if response.verbs.is_empty() {
        out.empty("Response", Vec::new());
    } else {
        out.open("Response", Vec::new());
        for verb in &response.verbs {
            out.verb(verb)?;
        }
        out.close("Response");
    }
    if out.doc.len() > MAX_DOCUMENT_BYTES {
        return Err(RenderError::TooLarge {
            bytes: out.doc.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(out.doc)
}

// ---------------------------------------------------------------------------
// Escaping

/// True for characters allowed by the XML 1.0 `Char` production.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// `s` without the characters XML 1.0 forbids (what the tests expect rendered).
#[cfg(test)]
pub(crate) fn strip_forbidden(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| is_xml_char(c)).collect())
    }
}

/// Appends `s` to `out`, escaped for text content (`attr == false`) or a
/// double-quoted attribute value (`attr == true`).
fn escape_into(out: &mut String, s: &str, attr: bool) {
    // Most values are printable ASCII with nothing to escape: copied at once.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>' | b'"'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
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
            // Writing to a String cannot fail.
            c => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Value checks

type Attrs<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Empty once the characters XML forbids are stripped.
fn is_blank(s: &str) -> bool {
    !s.chars().any(is_xml_char)
}

/// Pushes an optional string attribute, rejecting an empty value.
fn opt_str<'a>(
    attrs: &mut Attrs<'a>,
    element: &'static str,
    name: &'static str,
    value: Option<&'a String>,
) -> Result<(), RenderError> {
    if let Some(v) = value {
        if is_blank(v) {
            return Err(invalid(element, name, "must not be empty"));
        }
        attrs.push((name, Cow::Borrowed(v)));
    }
    Ok(())
}

fn opt_display(attrs: &mut Attrs<'_>, name: &'static str, value: Option<impl fmt::Display>) {
    if let Some(v) = value {
        attrs.push((name, Cow::Owned(v.to_string())));
    }
}

/// A fixed attribute value (`method="POST"`).
fn opt_static(attrs: &mut Attrs<'_>, name: &'static str, value: Option<&'static str>) {
    if let Some(v) = value {
        attrs.push((name, Cow::Borrowed(v)));
    }
}

fn check_dtmf(element: &'static str, field: &'static str, s: &str) -> Result<(), RenderError> {
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

fn check_queue_name(element: &'static str, name: &str) -> Result<(), RenderError> {
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

fn break_time(d: Duration) -> Result<String, RenderError> {
    if d > MAX_BREAK {
        return Err(invalid("break", "time", "must be at most 10 seconds"));
    }
    let ms = d.as_millis();
    Ok(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

// ---------------------------------------------------------------------------
// Writing

/// The document being written. Element names are the crate's constants and every value goes
/// through [`escape_into`], so the text is well-formed by construction (the tests parse it back
/// with quick-xml); writing straight into one buffer allocates nothing per element.
struct Out {
    doc: String,
}

impl Out {
    /// `<name a="1" b="2"`, attributes sorted by name, values escaped.
    fn tag(&mut self, name: &str, mut attrs: Attrs<'_>) {
        attrs.sort_by(|a, b| a.0.cmp(b.0));
        self.doc.push('<');
        self.doc.push_str(name);
        for (key, value) in attrs {
            self.doc.push(' ');
            self.doc.push_str(key);
            self.doc.push_str("=\"");
            escape_into(&mut self.doc, &value, true);
            self.doc.push('"');
        }
    }

    fn open(&mut self, name: &str, attrs: Attrs<'_>) {
        self.tag(name, attrs);
        self.doc.push('>');
    }

    /// Self-closed element in Python's style, with a space before `/>`.
    fn empty(&mut self, name: &str, attrs: Attrs<'_>) {
        self.tag(name, attrs);
        self.doc.push_str(" />");
    }

    fn close(&mut self, name: &str) {
        self.doc.push_str("</");
        self.doc.push_str(name);
        self.doc.push('>');
    }

    fn text(&mut self, text: &str) {
        escape_into(&mut self.doc, text, false);
    }

    /// `<name attrs>body</name>`.
    fn with_body(&mut self, name: &str, attrs: Attrs<'_>, body: &str) {
        self.open(name, attrs);
        self.text(body);
        self.close(name);
    }

    fn verb(&mut self, verb: &Verb) -> Result<(), RenderError> {
        match verb {
            Verb::Say(v) => self.say(v),
            Verb::Play(v) => self.play(v),
            Verb::Pause(v) => self.pause(*v),
            Verb::Gather(v) => self.gather(v),
            Verb::Redirect(v) => self.redirect(v),
            Verb::Enqueue(v) => self.enqueue(v),
            Verb::Dial(v) => self.dial(v),
            Verb::Hangup => {
                self.empty("Hangup", Vec::new());
                Ok(())
            }
        }
    }

    fn say(&mut self, say: &Say) -> Result<(), RenderError> {
        const E: &str = "Say";
        let has_content = say.segments.iter().any(|s| match s {
            SaySegment::Text(t) => !is_blank(t),
            SaySegment::Digits(_) | SaySegment::Break(_) => true,
        });
        if !has_content {
            return Err(invalid(E, "body", "must contain text, digits or a break"));
        }
        let mut attrs = Attrs::with_capacity(6);
        opt_str(&mut attrs, E, "language", say.language.as_ref())?;
        opt_display(&mut attrs, "loop", say.loop_count);
        opt_str(&mut attrs, E, "voice", say.voice.as_ref())?;
        self.open(E, attrs);
        for segment in &say.segments {
            match segment {
                SaySegment::Text(t) => self.text(t),
                SaySegment::Digits(d) => {
                    if d.is_empty() || !d.chars().all(|c| c.is_ascii_digit()) {
                        return Err(invalid(
                            "say-as",
                            "digits",
                            "must be one or more ASCII digits",
                        ));
                    }
                    self.with_body("say-as", vec![("interpret-as", Cow::Borrowed("digits"))], d);
                }
                SaySegment::Break(d) => {
                    self.empty("break", vec![("time", Cow::Owned(break_time(*d)?))]);
                }
            }
        }
        self.close(E);
        Ok(())
    }

    fn play(&mut self, play: &Play) -> Result<(), RenderError> {
        const E: &str = "Play";
        let mut attrs = Attrs::with_capacity(6);
        if let Some(d) = &play.digits {
            check_dtmf(E, "digits", d)?;
            attrs.push(("digits", Cow::Borrowed(d)));
        }
        opt_display(&mut attrs, "loop", play.loop_count);
        match &play.url {
            Some(url) if is_blank(url) => Err(invalid(E, "url", "must not be empty")),
            Some(url) => {
                self.with_body(E, attrs, url);
                Ok(())
            }
            None if play.digits.is_none() => Err(invalid(E, "url", "needs a URL or digits")),
            None => {
                self.empty(E, attrs);
                Ok(())
            }
        }
    }

    fn pause(&mut self, pause: Pause) -> Result<(), RenderError> {
        let mut attrs = Attrs::with_capacity(6);
        opt_display(&mut attrs, "length", pause.length);
        self.empty("Pause", attrs);
        Ok(())
    }

    fn gather(&mut self, gather: &Gather) -> Result<(), RenderError> {
        const E: &str = "Gather";
        let mut attrs = Attrs::with_capacity(6);
        opt_str(&mut attrs, E, "action", gather.action.as_ref())?;
        opt_display(
            &mut attrs,
            "actionOnEmptyResult",
            gather.action_on_empty_result,
        );
        match gather.finish_on_key {
            None => {}
            Some(FinishOnKey::Disabled) => attrs.push(("finishOnKey", Cow::Borrowed(""))),
            Some(FinishOnKey::Key(k)) => {
                if !(k.is_ascii_digit() || k == '*' || k == '#') {
                    return Err(invalid(E, "finishOnKey", "must be one of 0-9, * or #"));
                }
                attrs.push(("finishOnKey", Cow::Owned(k.to_string())));
            }
        }
        opt_static(&mut attrs, "input", gather.input.map(|i| i.as_str()));
        opt_static(&mut attrs, "method", gather.method.map(|m| m.as_str()));
        if gather.num_digits == Some(0) {
            return Err(invalid(E, "numDigits", "must be at least 1"));
        }
        opt_display(&mut attrs, "numDigits", gather.num_digits);
        opt_display(&mut attrs, "timeout", gather.timeout);
        if gather.children.is_empty() {
            self.empty(E, attrs);
            return Ok(());
        }
        self.open(E, attrs);
        for child in &gather.children {
            match child {
                GatherChild::Say(v) => self.say(v)?,
                GatherChild::Play(v) => self.play(v)?,
                GatherChild::Pause(v) => self.pause(*v)?,
            }
        }
        self.close(E);
        Ok(())
    }

    fn redirect(&mut self, redirect: &Redirect) -> Result<(), RenderError> {
        const E: &str = "Redirect";
        if is_blank(&redirect.url) {
            return Err(invalid(E, "url", "must not be empty"));
        }
        let mut attrs = Attrs::with_capacity(6);
        opt_static(&mut attrs, "method", redirect.method.map(|m| m.as_str()));
        self.with_body(E, attrs, &redirect.url);
        Ok(())
    }

    fn enqueue(&mut self, enqueue: &Enqueue) -> Result<(), RenderError> {
        const E: &str = "Enqueue";
        check_queue_name(E, &enqueue.queue)?;
        let mut attrs = Attrs::with_capacity(6);
        opt_str(&mut attrs, E, "action", enqueue.action.as_ref())?;
        opt_static(&mut attrs, "method", enqueue.method.map(|m| m.as_str()));
        opt_str(&mut attrs, E, "waitUrl", enqueue.wait_url.as_ref())?;
        opt_static(
            &mut attrs,
            "waitUrlMethod",
            enqueue.wait_url_method.map(|m| m.as_str()),
        );
        self.with_body(E, attrs, &enqueue.queue);
        Ok(())
    }

    fn dial(&mut self, dial: &Dial) -> Result<(), RenderError> {
        const E: &str = "Dial";
        if dial.nouns.is_empty() {
            return Err(invalid(E, "nouns", "needs at least one Number or Queue"));
        }
        let mut attrs = Attrs::with_capacity(6);
        opt_str(&mut attrs, E, "action", dial.action.as_ref())?;
        opt_str(&mut attrs, E, "callerId", dial.caller_id.as_ref())?;
        opt_static(&mut attrs, "method", dial.method.map(|m| m.as_str()));
        opt_display(&mut attrs, "timeout", dial.timeout);
        self.open(E, attrs);
        for noun in &dial.nouns {
            match noun {
                DialNoun::Number(n) => {
                    if is_blank(&n.number) {
                        return Err(invalid("Number", "number", "must not be empty"));
                    }
                    let mut attrs = Attrs::with_capacity(6);
                    if let Some(d) = &n.send_digits {
                        check_dtmf("Number", "sendDigits", d)?;
                        attrs.push(("sendDigits", Cow::Borrowed(d)));
                    }
                    self.with_body("Number", attrs, &n.number);
                }
                DialNoun::Queue(q) => {
                    check_queue_name("Queue", &q.name)?;
                    let mut attrs = Attrs::with_capacity(6);
                    opt_str(&mut attrs, "Queue", "url", q.url.as_ref())?;
                    self.with_body("Queue", attrs, &q.name);
                }
            }
        }
        self.close(E);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml::{GatherInput, Hangup, Method, Number, Queue};
    use proptest::prelude::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    fn doc(verb: impl Into<Verb>) -> Result<String, RenderError> {
        Response::new().verb(verb).render()
    }

    fn err(verb: impl Into<Verb>) -> (&'static str, &'static str) {
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
                wait_url: Some(String::new()),
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
                caller_id: Some(String::new()),
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
                        url: Some(String::new()),
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
            let expected_text = strip_forbidden(&text).into_owned();
            let expected_voice = strip_forbidden(&voice).into_owned();
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
            let expected = strip_forbidden(&url).into_owned();
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
