//! Checks TwiML values and serialises documents, byte for byte, the way
//! Twilio's python helper (`twilio/twiml/__init__.py`, `ET.tostring`) does.
//!
//! There is one writer, [`Writer`]: it writes verbs straight from borrowed
//! values (element bodies as `&str`, URLs as a base and a path, see [`Url`],
//! attributes in small `*Attrs` structs), so a caller that already holds its
//! data builds no document model and copies no string. [`Response::render`]
//! is a walk over the owned model of [`crate::twiml`] through a [`Writer`];
//! both produce the same bytes and the same errors.
//!
//! Output rules:
//! * `<?xml version="1.0" encoding="UTF-8"?>` then the tree, no whitespace
//!   between elements.
//! * Attributes sorted by name (byte order), booleans `true`/`false`. Each
//!   element's attributes are written in that order by construction (checked
//!   in debug builds), so nothing is sorted at run time.
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
//! Every value is checked as it is written. The first problem found is the
//! [`RenderError::InvalidValue`] returned, and then no document is returned at
//! all: a [`Writer`] keeps the first error, and [`Writer::finish`] returns it
//! whatever was written after it. "First" is document order, except that a
//! `<Say>` without content and a `<Dial>` without nouns are reported before
//! the element's other problems. The finished document must not exceed
//! [`MAX_DOCUMENT_BYTES`] (Twilio error 11750).

#[cfg(test)]
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::twiml::{
    DialNoun, FinishOnKey, GatherChild, GatherInput, Method, Response, Say, SaySegment, Verb,
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
    let mut w = Writer::new();
    for verb in &response.verbs {
        match verb {
            Verb::Say(v) => w.say(say_attrs(v), |c| say_segments(c, v)),
            Verb::Play(v) => w.play(
                v.url.as_deref().map(Url::new),
                PlayAttrs {
                    digits: v.digits.as_deref(),
                    loop_count: v.loop_count,
                },
            ),
            Verb::Pause(v) => w.pause(v.length),
            Verb::Gather(v) => w.gather(
                GatherAttrs {
                    action: v.action.as_deref().map(Url::new),
                    action_on_empty_result: v.action_on_empty_result,
                    finish_on_key: v.finish_on_key,
                    input: v.input,
                    method: v.method,
                    num_digits: v.num_digits,
                    timeout: v.timeout,
                },
                |g| {
                    for child in &v.children {
                        match child {
                            GatherChild::Say(s) => g.say(say_attrs(s), |c| say_segments(c, s)),
                            GatherChild::Play(p) => g.play(
                                p.url.as_deref().map(Url::new),
                                PlayAttrs {
                                    digits: p.digits.as_deref(),
                                    loop_count: p.loop_count,
                                },
                            ),
                            GatherChild::Pause(p) => g.pause(p.length),
                        }
                    }
                },
            ),
            Verb::Redirect(v) => w.redirect(Url::new(&v.url), v.method),
            Verb::Enqueue(v) => w.enqueue(
                &v.queue,
                EnqueueAttrs {
                    action: v.action.as_deref().map(Url::new),
                    method: v.method,
                    wait_url: v.wait_url.as_deref().map(Url::new),
                    wait_url_method: v.wait_url_method,
                },
            ),
            Verb::Dial(v) => w.dial(
                DialAttrs {
                    action: v.action.as_deref().map(Url::new),
                    caller_id: v.caller_id.as_deref(),
                    method: v.method,
                    timeout: v.timeout,
                },
                |d| {
                    for noun in &v.nouns {
                        match noun {
                            DialNoun::Number(n) => d.number(&n.number, n.send_digits.as_deref()),
                            DialNoun::Queue(q) => d.queue(&q.name, q.url.as_deref().map(Url::new)),
                        }
                    }
                },
            ),
            Verb::Hangup => w.hangup(),
        }
    }
    w.finish()
}

fn say_attrs(say: &Say) -> SayAttrs<'_> {
    SayAttrs {
        language: say.language.as_deref(),
        loop_count: say.loop_count,
        voice: say.voice.as_deref(),
    }
}

fn say_segments(content: &mut SayContent<'_>, say: &Say) {
    for segment in &say.segments {
        match segment {
            SaySegment::Text(t) => content.text(t),
            SaySegment::Digits(d) => content.digits(d),
            SaySegment::Break(d) => content.break_for(*d),
        }
    }
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
/// double-quoted attribute value (`attr == true`). Returns whether anything
/// was written, i.e. whether `s` is non-empty once the characters XML forbids
/// are stripped (the emptiness check of every value).
fn escape_into(out: &mut String, s: &str, attr: bool) -> bool {
    let mut wrote = false;
    let mut rest = s;
    loop {
        // Most of a value is printable ASCII with nothing to escape: copied a run at a time.
        let plain = plain_prefix(rest.as_bytes());
        // The run is ASCII, so it ends on a character boundary (were it not, nothing would be
        // copied unchecked: every character would take the escaping path below).
        let (run, tail) = rest.split_at_checked(plain).unwrap_or(("", rest));
        out.push_str(run);
        wrote |= !run.is_empty();
        let mut chars = tail.chars();
        let Some(c) = chars.next() else {
            return wrote;
        };
        rest = chars.as_str();
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#09;"),
            c if !is_xml_char(c) => continue,
            c if c.is_ascii() => out.push(c),
            c => {
                out.push_str("&#");
                push_decimal(out, u64::from(u32::from(c)));
                out.push(';');
            }
        }
        wrote = true;
    }
}

/// True for bytes copied as they are: printable ASCII other than `& < > "`
/// (what [`plain_prefix`] finds, a word at a time).
#[cfg(test)]
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>' | b'"')
}

/// Length of the leading run of bytes copied as they are (printable ASCII other
/// than `& < > "`), eight bytes per step.
fn plain_prefix(bytes: &[u8]) -> usize {
    let (words, tail) = bytes.as_chunks::<8>();
    let mut n = 0;
    for word in words {
        let flags = not_plain(u64::from_le_bytes(*word));
        if flags != 0 {
            return n + first_flagged(flags);
        }
        n += 8;
    }
    if tail.is_empty() {
        return n;
    }
    // The last eight bytes, overlapping checked ones (which flag nothing), or the short
    // value padded with plain bytes.
    let last = match bytes.last_chunk::<8>() {
        Some(last) => *last,
        None => {
            let mut padded = [b'a'; 8];
            for (to, from) in padded.iter_mut().zip(tail) {
                *to = *from;
            }
            padded
        }
    };
    let flags = not_plain(u64::from_le_bytes(last));
    if flags == 0 {
        bytes.len()
    } else {
        bytes.len().saturating_sub(8) + first_flagged(flags)
    }
}

/// The high bit of every byte of `w` (little-endian) that is not plain, and perhaps of
/// bytes after one that is: a borrow or carry only runs upwards from a byte flagged itself.
/// So the lowest flag is exact, which is all [`first_flagged`] reads.
fn not_plain(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    /// Flags the zero bytes of `v`.
    fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v
    }
    // Below 0x20: wraps when 0x20 is subtracted, while the byte's own high bit is clear.
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    // 0x7f and above: the high bit set before or after adding 1.
    let high = w.wrapping_add(ONES) | w;
    // `"` 0x22 and `&` 0x26 differ only in bit 2; `<` 0x3c and `>` 0x3e only in bit 1.
    let quote_amp = zero_bytes((w | (ONES * 0x04)) ^ (ONES * 0x26));
    let angle = zero_bytes((w | (ONES * 0x02)) ^ (ONES * 0x3e));
    (control | high | quote_amp | angle) & (ONES * 0x80)
}

/// Index of the lowest byte flagged by [`not_plain`].
fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// Appends `n` in decimal (no allocation, no formatting machinery).
fn push_decimal(out: &mut String, n: u64) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    // `n % 10` is one digit.
    out.push(char::from(b'0' + (n % 10) as u8));
}

// ---------------------------------------------------------------------------
// Value checks

/// Empty once the characters XML forbids are stripped.
fn is_blank(s: &str) -> bool {
    !s.chars().any(is_xml_char)
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

// ---------------------------------------------------------------------------
// Borrowed values

/// A URL written as `base` immediately followed by `path`, so a caller can put
/// a relative path under its public base URL without allocating the joined
/// string. Both pieces are escaped like any value; the URL is empty (invalid)
/// only when both are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Url<'a> {
    base: &'a str,
    path: &'a str,
}

impl<'a> Url<'a> {
    /// The URL `url`, as given.
    pub fn new(url: &'a str) -> Self {
        Self {
            base: "",
            path: url,
        }
    }

    /// The URL `base` followed by `path` (`https://ivr.example.com` + `/step/2`).
    pub fn joined(base: &'a str, path: &'a str) -> Self {
        Self { base, path }
    }
}

impl<'a> From<&'a str> for Url<'a> {
    fn from(url: &'a str) -> Self {
        Url::new(url)
    }
}

/// Attributes of `<Say>` for [`Writer::say`] (see [`Say`] for their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SayAttrs<'a> {
    /// `language`.
    pub language: Option<&'a str>,
    /// `loop`.
    pub loop_count: Option<u32>,
    /// `voice`.
    pub voice: Option<&'a str>,
}

/// Attributes of `<Play>` for [`Writer::play`] (see [`crate::Play`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlayAttrs<'a> {
    /// `digits`: DTMF from `0-9 * # w`.
    pub digits: Option<&'a str>,
    /// `loop`.
    pub loop_count: Option<u32>,
}

/// Attributes of `<Gather>` for [`Writer::gather`] (see [`crate::Gather`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatherAttrs<'a> {
    /// `action`.
    pub action: Option<Url<'a>>,
    /// `actionOnEmptyResult`.
    pub action_on_empty_result: Option<bool>,
    /// `finishOnKey`.
    pub finish_on_key: Option<FinishOnKey>,
    /// `input`.
    pub input: Option<GatherInput>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `numDigits`: at least 1.
    pub num_digits: Option<u32>,
    /// `timeout` in seconds.
    pub timeout: Option<u32>,
}

/// Attributes of `<Enqueue>` for [`Writer::enqueue`] (see [`crate::Enqueue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnqueueAttrs<'a> {
    /// `action`.
    pub action: Option<Url<'a>>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `waitUrl`.
    pub wait_url: Option<Url<'a>>,
    /// `waitUrlMethod`.
    pub wait_url_method: Option<Method>,
}

/// Attributes of `<Dial>` for [`Writer::dial`] (see [`crate::Dial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DialAttrs<'a> {
    /// `action`.
    pub action: Option<Url<'a>>,
    /// `callerId`.
    pub caller_id: Option<&'a str>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `timeout` in seconds.
    pub timeout: Option<u32>,
}

// ---------------------------------------------------------------------------
// Writing

/// A TwiML document written verb by verb, straight into one buffer.
///
/// Element names are the crate's constants and every value goes through
/// [`escape_into`] or is checked to need no escaping (numbers, DTMF, fixed
/// words), so the text is well-formed by construction (the tests parse it
/// back with quick-xml). Elements that hold others take a closure that writes
/// the content; the writer closes the element when it returns, so every
/// element is closed, and the closure's argument only offers what may nest
/// there (`<Gather>`: Say / Play / Pause; `<Dial>`: Number / Queue).
///
/// ```
/// use resetline_twiml::render::{GatherAttrs, SayAttrs};
/// use resetline_twiml::{Method, Url, Writer};
///
/// let mut w = Writer::new();
/// w.gather(
///     GatherAttrs {
///         action: Some(Url::joined("https://ivr.example.com", "/step/code")),
///         method: Some(Method::Post),
///         num_digits: Some(6),
///         ..GatherAttrs::default()
///     },
///     |g| g.say(SayAttrs::default(), |s| s.text("Enter the code we sent you.")),
/// );
/// assert_eq!(
///     w.finish()?,
///     "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
///      <Gather action=\"https://ivr.example.com/step/code\" method=\"POST\" numDigits=\"6\">\
///      <Say>Enter the code we sent you.</Say></Gather></Response>"
/// );
/// # Ok::<(), resetline_twiml::RenderError>(())
/// ```
#[derive(Debug)]
pub struct Writer {
    doc: String,
    /// A start tag is written up to its attributes: the element's first child
    /// or text ends it with `>`, the element's end self-closes it with ` />`.
    in_tag: bool,
    /// The first invalid value found; once set, no document is returned.
    error: Option<RenderError>,
    /// The current tag's previous attribute, to check the sorted order.
    #[cfg(debug_assertions)]
    last_attr: &'static str,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// A document with an empty `<Response>` (Twilio hangs up at its end).
    pub fn new() -> Self {
        let mut doc = String::with_capacity(1024);
        doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response");
        Self {
            doc,
            in_tag: true,
            error: None,
            #[cfg(debug_assertions)]
            last_attr: "",
        }
    }

    /// The finished document.
    ///
    /// # Errors
    /// [`RenderError::InvalidValue`] for the first invalid value written,
    /// [`RenderError::TooLarge`] when the document exceeds
    /// [`MAX_DOCUMENT_BYTES`].
    pub fn finish(mut self) -> Result<String, RenderError> {
        self.end("Response");
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.doc.len() > MAX_DOCUMENT_BYTES {
            return Err(RenderError::TooLarge {
                bytes: self.doc.len(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        Ok(self.doc)
    }

    /// `<Say>` with the content `content` writes: at least one non-empty
    /// text, digits or break.
    pub fn say(&mut self, attrs: SayAttrs<'_>, content: impl FnOnce(&mut SayContent<'_>)) {
        const E: &str = "Say";
        let first = self.error.is_none();
        self.start(E);
        self.attr_str(E, "language", attrs.language);
        self.attr_u32("loop", attrs.loop_count);
        self.attr_str(E, "voice", attrs.voice);
        let mut body = SayContent {
            w: self,
            has_content: false,
        };
        content(&mut body);
        if first && !body.has_content {
            // Reported before the element's other problems, as it is checked first.
            self.error = Some(invalid(E, "body", "must contain text, digits or a break"));
        }
        self.end(E);
    }

    /// `<Play>` of the media at `url`, or (`None`) self-closed with only
    /// `digits`.
    pub fn play(&mut self, url: Option<Url<'_>>, attrs: PlayAttrs<'_>) {
        const E: &str = "Play";
        self.start(E);
        if let Some(d) = attrs.digits {
            self.attr_dtmf(E, "digits", d);
        }
        self.attr_u32("loop", attrs.loop_count);
        let problem = match url {
            Some(url) => (!self.url_text(url)).then_some("must not be empty"),
            None => attrs.digits.is_none().then_some("needs a URL or digits"),
        };
        if let Some(reason) = problem {
            self.fail(invalid(E, "url", reason));
        }
        self.end(E);
    }

    /// `<Pause>`, `length` in seconds.
    pub fn pause(&mut self, length: Option<u32>) {
        self.start("Pause");
        self.attr_u32("length", length);
        self.end("Pause");
    }

    /// `<Gather>` with the prompts `children` writes (self-closed without).
    pub fn gather(
        &mut self,
        attrs: GatherAttrs<'_>,
        children: impl FnOnce(&mut GatherChildren<'_>),
    ) {
        const E: &str = "Gather";
        self.start(E);
        self.attr_url(E, "action", attrs.action);
        self.attr_static(
            "actionOnEmptyResult",
            attrs
                .action_on_empty_result
                .map(|b| if b { "true" } else { "false" }),
        );
        match attrs.finish_on_key {
            None => {}
            Some(FinishOnKey::Disabled) => self.attr_static("finishOnKey", Some("")),
            Some(FinishOnKey::Key(k)) => {
                if k.is_ascii_digit() || k == '*' || k == '#' {
                    self.attr_start("finishOnKey");
                    self.doc.push(k);
                    self.doc.push('"');
                } else {
                    self.fail(invalid(E, "finishOnKey", "must be one of 0-9, * or #"));
                }
            }
        }
        self.attr_static("input", attrs.input.map(GatherInput::as_str));
        self.attr_static("method", attrs.method.map(Method::as_str));
        if attrs.num_digits == Some(0) {
            self.fail(invalid(E, "numDigits", "must be at least 1"));
        }
        self.attr_u32("numDigits", attrs.num_digits);
        self.attr_u32("timeout", attrs.timeout);
        children(&mut GatherChildren { w: self });
        self.end(E);
    }

    /// `<Redirect>` to `url`.
    pub fn redirect(&mut self, url: Url<'_>, method: Option<Method>) {
        const E: &str = "Redirect";
        self.start(E);
        self.attr_static("method", method.map(Method::as_str));
        if !self.url_text(url) {
            self.fail(invalid(E, "url", "must not be empty"));
        }
        self.end(E);
    }

    /// `<Enqueue>` into the queue `queue` (1 to [`MAX_QUEUE_NAME_CHARS`]
    /// characters).
    pub fn enqueue(&mut self, queue: &str, attrs: EnqueueAttrs<'_>) {
        const E: &str = "Enqueue";
        if let Err(e) = check_queue_name(E, queue) {
            self.fail(e);
        }
        self.start(E);
        self.attr_url(E, "action", attrs.action);
        self.attr_static("method", attrs.method.map(Method::as_str));
        self.attr_url(E, "waitUrl", attrs.wait_url);
        self.attr_static("waitUrlMethod", attrs.wait_url_method.map(Method::as_str));
        self.text(queue);
        self.end(E);
    }

    /// `<Dial>` of the nouns `nouns` writes (at least one).
    pub fn dial(&mut self, attrs: DialAttrs<'_>, nouns: impl FnOnce(&mut DialNouns<'_>)) {
        const E: &str = "Dial";
        let first = self.error.is_none();
        self.start(E);
        self.attr_url(E, "action", attrs.action);
        self.attr_str(E, "callerId", attrs.caller_id);
        self.attr_static("method", attrs.method.map(Method::as_str));
        self.attr_u32("timeout", attrs.timeout);
        let mut body = DialNouns {
            w: self,
            any: false,
        };
        nouns(&mut body);
        if first && !body.any {
            // Reported before the element's other problems, as it is checked first.
            self.error = Some(invalid(E, "nouns", "needs at least one Number or Queue"));
        }
        self.end(E);
    }

    /// `<Hangup />`.
    pub fn hangup(&mut self) {
        self.start("Hangup");
        self.end("Hangup");
    }

    // -- the XML itself --------------------------------------------------

    /// Keeps `error` unless an earlier one is kept already.
    fn fail(&mut self, error: RenderError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Ends a pending start tag so that content can follow.
    #[inline(always)]
    fn content(&mut self) {
        if self.in_tag {
            self.doc.push('>');
            self.in_tag = false;
        }
    }

    /// `<name`; attributes may follow.
    #[inline(always)]
    fn start(&mut self, name: &'static str) {
        self.content();
        self.doc.push('<');
        self.doc.push_str(name);
        self.in_tag = true;
        #[cfg(debug_assertions)]
        {
            self.last_attr = "";
        }
    }

    /// ` />` when nothing followed the start tag, else `</name>`.
    #[inline(always)]
    fn end(&mut self, name: &'static str) {
        if self.in_tag {
            self.doc.push_str(" />");
            self.in_tag = false;
        } else {
            self.doc.push_str("</");
            self.doc.push_str(name);
            self.doc.push('>');
        }
    }

    /// ` name="`; the caller writes the value and the closing quote.
    #[inline(always)]
    fn attr_start(&mut self, name: &'static str) {
        debug_assert!(self.in_tag, "attribute {name} outside a start tag");
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.last_attr < name,
                "attribute {name} after {}: not sorted",
                self.last_attr
            );
            self.last_attr = name;
        }
        self.doc.push(' ');
        self.doc.push_str(name);
        self.doc.push_str("=\"");
    }

    /// A string attribute, rejected when empty.
    fn attr_str(&mut self, element: &'static str, name: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.attr_start(name);
            if !escape_into(&mut self.doc, v, true) {
                self.fail(invalid(element, name, "must not be empty"));
            }
            self.doc.push('"');
        }
    }

    /// A URL attribute, rejected when empty.
    fn attr_url(&mut self, element: &'static str, name: &'static str, value: Option<Url<'_>>) {
        if let Some(url) = value {
            self.attr_start(name);
            let base = escape_into(&mut self.doc, url.base, true);
            let path = escape_into(&mut self.doc, url.path, true);
            if !(base || path) {
                self.fail(invalid(element, name, "must not be empty"));
            }
            self.doc.push('"');
        }
    }

    /// A DTMF attribute (`0-9 * # w`: nothing to escape).
    fn attr_dtmf(&mut self, element: &'static str, name: &'static str, value: &str) {
        match check_dtmf(element, name, value) {
            Ok(()) => {
                self.attr_start(name);
                self.doc.push_str(value);
                self.doc.push('"');
            }
            Err(e) => self.fail(e),
        }
    }

    /// A number attribute.
    #[inline(always)]
    fn attr_u32(&mut self, name: &'static str, value: Option<u32>) {
        if let Some(n) = value {
            self.attr_start(name);
            push_decimal(&mut self.doc, u64::from(n));
            self.doc.push('"');
        }
    }

    /// A fixed word of this crate (`POST`, `dtmf speech`, `true`): nothing to escape.
    #[inline(always)]
    fn attr_static(&mut self, name: &'static str, value: Option<&'static str>) {
        if let Some(v) = value {
            self.attr_start(name);
            self.doc.push_str(v);
            self.doc.push('"');
        }
    }

    /// Element text; returns whether anything was written.
    fn text(&mut self, text: &str) -> bool {
        self.content();
        escape_into(&mut self.doc, text, false)
    }

    /// A URL as element text; returns whether anything was written.
    fn url_text(&mut self, url: Url<'_>) -> bool {
        let base = self.text(url.base);
        let path = escape_into(&mut self.doc, url.path, false);
        base || path
    }
}

/// The content of a `<Say>` being written: see [`Writer::say`].
#[derive(Debug)]
pub struct SayContent<'w> {
    w: &'w mut Writer,
    has_content: bool,
}

impl SayContent<'_> {
    /// Plain text, spoken as written (see [`SaySegment::Text`]).
    pub fn text(&mut self, text: &str) {
        if self.w.text(text) {
            self.has_content = true;
        }
    }

    /// ASCII digits spoken one by one (see [`SaySegment::Digits`]).
    pub fn digits(&mut self, digits: &str) {
        self.has_content = true;
        self.w.content();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            self.w.fail(invalid(
                "say-as",
                "digits",
                "must be one or more ASCII digits",
            ));
            return;
        }
        let doc = &mut self.w.doc;
        doc.push_str("<say-as interpret-as=\"digits\">");
        doc.push_str(digits);
        doc.push_str("</say-as>");
    }

    /// Silence of at most [`MAX_BREAK`] (see [`SaySegment::Break`]).
    pub fn break_for(&mut self, duration: Duration) {
        self.has_content = true;
        self.w.content();
        if duration > MAX_BREAK {
            self.w
                .fail(invalid("break", "time", "must be at most 10 seconds"));
            return;
        }
        // At most 10 s: no overflow.
        let ms = duration.as_secs() * 1000 + u64::from(duration.subsec_millis());
        let doc = &mut self.w.doc;
        doc.push_str("<break time=\"");
        if ms.is_multiple_of(1000) {
            push_decimal(doc, ms / 1000);
            doc.push_str("s\" />");
        } else {
            push_decimal(doc, ms);
            doc.push_str("ms\" />");
        }
    }
}

/// The prompts of a `<Gather>` being written: see [`Writer::gather`].
#[derive(Debug)]
pub struct GatherChildren<'w> {
    w: &'w mut Writer,
}

impl GatherChildren<'_> {
    /// A nested `<Say>`, as [`Writer::say`].
    pub fn say(&mut self, attrs: SayAttrs<'_>, content: impl FnOnce(&mut SayContent<'_>)) {
        self.w.say(attrs, content);
    }

    /// A nested `<Play>`, as [`Writer::play`].
    pub fn play(&mut self, url: Option<Url<'_>>, attrs: PlayAttrs<'_>) {
        self.w.play(url, attrs);
    }

    /// A nested `<Pause>`, as [`Writer::pause`].
    pub fn pause(&mut self, length: Option<u32>) {
        self.w.pause(length);
    }
}

/// The nouns of a `<Dial>` being written: see [`Writer::dial`].
#[derive(Debug)]
pub struct DialNouns<'w> {
    w: &'w mut Writer,
    any: bool,
}

impl DialNouns<'_> {
    /// `<Number>` calling `number`, with optional `sendDigits` (`0-9 * # w`).
    pub fn number(&mut self, number: &str, send_digits: Option<&str>) {
        const E: &str = "Number";
        self.any = true;
        let w = &mut *self.w;
        if is_blank(number) {
            w.fail(invalid(E, "number", "must not be empty"));
        }
        w.start(E);
        if let Some(d) = send_digits {
            w.attr_dtmf(E, "sendDigits", d);
        }
        w.text(number);
        w.end(E);
    }

    /// `<Queue>` taking the next caller from `name` (1 to
    /// [`MAX_QUEUE_NAME_CHARS`] characters), with optional `url`.
    pub fn queue(&mut self, name: &str, url: Option<Url<'_>>) {
        const E: &str = "Queue";
        self.any = true;
        let w = &mut *self.w;
        if let Err(e) = check_queue_name(E, name) {
            w.fail(e);
        }
        w.start(E);
        w.attr_url(E, "url", url);
        w.text(name);
        w.end(E);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml::{Dial, Enqueue, Gather, Hangup, Number, Pause, Play, Queue, Redirect};
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
    fn plain_prefix_stops_at_every_byte_that_needs_care() {
        for b in 0..=255u8 {
            for len in [1, 7, 8, 9, 16, 23] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = if is_plain(b) { len } else { at };
                    assert_eq!(plain_prefix(&bytes), expected, "{b:#x} at {at} of {len}");
                }
            }
        }
        assert_eq!(plain_prefix(b""), 0);
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

    /// A document with every verb and attribute, as a model.
    /// `every_verb()` as the renderer wrote it before the `Writer` (model-building renderer,
    /// commit 4e54156).
    const EVERY_VERB: &str = r##"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US" loop="2" voice="Polly.Joanna">Code <say-as interpret-as="digits">12</say-as><break time="1500ms" />&amp;&lt;&gt;"&#233;</Say><Play loop="0">https://x/a.mp3?a=1&amp;b=2</Play><Play digits="ww1#" /><Pause length="12" /><Pause /><Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0"><Say>hi</Say><Play>/b.wav</Play><Pause length="1" /></Gather><Gather finishOnKey="" /><Redirect method="POST">/next</Redirect><Enqueue action="/q" method="POST" waitUrl="/wait" waitUrlMethod="GET">support</Enqueue><Dial action="/d" callerId="+15550001111" method="POST" timeout="20"><Number sendDigits="ww12">+15550002222</Number><Queue url="/q">support</Queue></Dial><Hangup /></Response>"##;

    fn every_verb() -> Response {
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
    fn writer_writes_what_the_model_renders() {
        let mut w = Writer::new();
        w.say(
            SayAttrs {
                language: Some("en-US"),
                loop_count: Some(2),
                voice: Some("Polly.Joanna"),
            },
            |s| {
                s.text("Code ");
                s.digits("12");
                s.break_for(Duration::from_millis(1500));
                s.text("&<>");
                s.text("\"é");
            },
        );
        w.play(
            Some(Url::joined("https://x", "/a.mp3?a=1&b=2")),
            PlayAttrs {
                loop_count: Some(0),
                ..PlayAttrs::default()
            },
        );
        w.play(
            None,
            PlayAttrs {
                digits: Some("ww1#"),
                ..PlayAttrs::default()
            },
        );
        w.pause(Some(12));
        w.pause(None);
        w.gather(
            GatherAttrs {
                action: Some(Url::joined("/g?x=1&", "y=\"2\"")),
                action_on_empty_result: Some(true),
                finish_on_key: Some(FinishOnKey::Key('#')),
                input: Some(GatherInput::DtmfSpeech),
                method: Some(Method::Get),
                num_digits: Some(4_294_967_295),
                timeout: Some(0),
            },
            |g| {
                g.say(SayAttrs::default(), |s| s.text("hi"));
                g.play(Some(Url::new("/b.wav")), PlayAttrs::default());
                g.pause(Some(1));
            },
        );
        w.gather(
            GatherAttrs {
                finish_on_key: Some(FinishOnKey::Disabled),
                ..GatherAttrs::default()
            },
            |_| {},
        );
        w.redirect(Url::joined("", "/next"), Some(Method::Post));
        w.enqueue(
            "support",
            EnqueueAttrs {
                action: Some(Url::new("/q")),
                method: Some(Method::Post),
                wait_url: Some(Url::joined("/wa", "it")),
                wait_url_method: Some(Method::Get),
            },
        );
        w.dial(
            DialAttrs {
                action: Some(Url::new("/d")),
                caller_id: Some("+15550001111"),
                method: Some(Method::Post),
                timeout: Some(20),
            },
            |d| {
                d.number("+15550002222", Some("ww12"));
                d.queue("support", Some(Url::new("/q")));
            },
        );
        w.hangup();
        let written = w.finish().unwrap_or_else(|e| panic!("{e}"));
        let rendered = every_verb().render().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, rendered);
        // What the renderer before the Writer wrote for this model, byte for byte.
        assert_eq!(rendered, EVERY_VERB);
        assert!(rendered.contains(
            r##"<Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0">"##
        ));
        assert!(rendered.contains(r#"<Pause length="12" /><Pause />"#));
        assert!(rendered.contains(r#"<break time="1500ms" />&amp;&lt;&gt;"&#233;</Say>"#));
        read_back(&rendered, "Dial");
        assert_eq!(Writer::new().finish(), Ok(format!("{DECL}<Response />")));
    }

    #[test]
    fn writer_keeps_the_first_error() {
        fn first_error(write: impl FnOnce(&mut Writer)) -> RenderError {
            let mut w = Writer::new();
            write(&mut w);
            match w.finish() {
                Err(e) => e,
                Ok(doc) => panic!("expected an error, got {doc}"),
            }
        }
        // An empty URL in two empty pieces.
        assert_eq!(
            first_error(|w| w.redirect(Url::joined("", "\u{0}"), None)),
            invalid("Redirect", "url", "must not be empty")
        );
        // Later valid verbs do not clear it; later errors do not replace it.
        assert_eq!(
            first_error(|w| {
                w.pause(Some(1));
                w.play(None, PlayAttrs::default());
                w.say(SayAttrs::default(), |_| {});
                w.hangup();
            }),
            invalid("Play", "url", "needs a URL or digits")
        );
        // A Say without content is reported before its attributes and segments, as the model
        // checks it first; but not before an earlier element's error.
        assert_eq!(
            first_error(|w| w.say(
                SayAttrs {
                    voice: Some(""),
                    ..SayAttrs::default()
                },
                |s| s.text("\u{1}")
            )),
            invalid("Say", "body", "must contain text, digits or a break")
        );
        assert_eq!(
            first_error(|w| w.say(
                SayAttrs {
                    voice: Some(""),
                    ..SayAttrs::default()
                },
                |s| s.digits("x")
            )),
            invalid("Say", "voice", "must not be empty")
        );
        assert_eq!(
            first_error(|w| w.gather(
                GatherAttrs {
                    num_digits: Some(0),
                    ..GatherAttrs::default()
                },
                |g| g.say(SayAttrs::default(), |_| {})
            )),
            invalid("Gather", "numDigits", "must be at least 1")
        );
        // Likewise a Dial without nouns.
        assert_eq!(
            first_error(|w| w.dial(
                DialAttrs {
                    caller_id: Some(""),
                    ..DialAttrs::default()
                },
                |_| {}
            )),
            invalid("Dial", "nouns", "needs at least one Number or Queue")
        );
        assert_eq!(
            first_error(|w| w.dial(
                DialAttrs {
                    caller_id: Some(""),
                    ..DialAttrs::default()
                },
                |d| d.number("", None)
            )),
            invalid("Dial", "callerId", "must not be empty")
        );
        // The size limit applies to written documents too.
        let mut w = Writer::new();
        w.say(SayAttrs::default(), |s| {
            for _ in 0..MAX_DOCUMENT_BYTES / 10 {
                s.text("0123456789");
            }
        });
        assert!(matches!(w.finish(), Err(RenderError::TooLarge { .. })));
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
        fn plain_prefix_is_the_first_byte_that_needs_care(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), 0x20..0x7fu8, 0x20..0x7fu8, 0x20..0x7fu8], 0..40)
        ) {
            let expected = bytes.iter().position(|&b| !is_plain(b)).unwrap_or(bytes.len());
            prop_assert_eq!(plain_prefix(&bytes), expected);
        }

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
