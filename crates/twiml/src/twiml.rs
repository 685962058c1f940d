//! The typed TwiML document model.
//!
//! Exists so that the rest of Resetline describes *what* a call should do
//! (say this, gather that, redirect there) without ever touching XML. Each
//! verb is a plain struct with public, optional attributes and a few builder
//! methods; the only way to turn a [`Response`] into bytes is
//! [`Response::render`], which checks every value first (see
//! [`crate::render`]). It is the one TwiML API: the server builds a
//! `Response` from the engine's actions. Values are `Cow<'a, str>`: a document can borrow
//! them from whatever it describes, so building one copies no text.
//!
//! Structural rules that the type system can carry are carried by it: a
//! [`Gather`] can only hold [`GatherChild`] (Say / Play / Pause), a [`Dial`]
//! only [`DialNoun`] (Number / Queue), and `<Say>` content is a list of
//! [`SaySegment`]s rather than an XML string. Rules about values (lengths,
//! allowed key characters, non-empty URLs) are checked at render time and
//! reported as [`crate::RenderError::InvalidValue`].

use std::borrow::Cow;
use std::time::Duration;

use crate::render::{self, RenderError};

/// HTTP method Twilio uses for an action or redirect URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: parameters travel in the query string.
    Get,
    /// `POST`: parameters travel as a form body (Twilio's default).
    Post,
}

impl Method {
    /// The attribute value Twilio expects (`GET` / `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A complete TwiML document: `<Response>` and its verbs, run top to bottom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response<'a> {
    /// The verbs in execution order.
    pub verbs: Vec<Verb<'a>>,
}

impl<'a> Response<'a> {
    /// An empty `<Response />` (Twilio hangs up when the document ends).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`Response::push`].
    #[must_use]
    pub fn verb(mut self, verb: impl Into<Verb<'a>>) -> Self {
        self.verbs.push(verb.into());
        self
    }

    /// Appends a verb.
    pub fn push(&mut self, verb: impl Into<Verb<'a>>) {
        self.verbs.push(verb.into());
    }

    /// Checks every value and renders the document; see [`crate::render`].
    ///
    /// # Errors
    /// [`RenderError::InvalidValue`] for a value Twilio would reject,
    /// [`RenderError::TooLarge`] when the document exceeds
    /// [`crate::MAX_DOCUMENT_BYTES`].
    pub fn render(&self) -> Result<String, RenderError> {
        render::render(self)
    }
}

/// One top-level TwiML verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb<'a> {
    /// `<Say>`: text to speech.
    Say(Say<'a>),
    /// `<Play>`: an audio file and/or DTMF tones.
    Play(Play<'a>),
    /// `<Pause>`: silence.
    Pause(Pause),
    /// `<Gather>`: collect DTMF (or speech) input.
    Gather(Gather<'a>),
    /// `<Redirect>`: continue with the TwiML at another URL.
    Redirect(Redirect<'a>),
    /// `<Enqueue>`: put the caller into a queue.
    Enqueue(Enqueue<'a>),
    /// `<Dial>`: connect the caller to a number or queue.
    Dial(Dial<'a>),
    /// `<Hangup />`: end the call.
    Hangup,
}

/// One piece of `<Say>` content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaySegment<'a> {
    /// Plain text, spoken as written. Escaped on output; characters XML 1.0
    /// forbids are stripped (see [`crate::render`]).
    Text(Cow<'a, str>),
    /// ASCII digits spoken one by one, rendered as
    /// `<say-as interpret-as="digits">…</say-as>`. Must be non-empty and
    /// contain only `0-9`.
    Digits(Cow<'a, str>),
    /// Silence, rendered as `<break time="…" />`. At most 10 seconds (the SSML
    /// engine's limit); sub-millisecond precision is dropped.
    Break(Duration),
}

/// `<Say>`: speak text, with optional SSML digits and breaks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Say<'a> {
    /// Content in speaking order. At least one segment must have content.
    pub segments: Vec<SaySegment<'a>>,
    /// `voice` (`man`, `woman`, `alice`, `Polly.*`, `Google.*`).
    pub voice: Option<Cow<'a, str>>,
    /// `language` (e.g. `en-US`).
    pub language: Option<Cow<'a, str>>,
    /// `loop`: repetitions; 0 repeats until hang-up.
    pub loop_count: Option<u32>,
}

impl<'a> Say<'a> {
    /// A `<Say>` with no content yet (rendering it as-is is an error).
    pub fn new() -> Self {
        Self::default()
    }

    /// A `<Say>` holding one text segment.
    pub fn from_text(text: impl Into<Cow<'a, str>>) -> Self {
        Self::new().text(text)
    }

    /// Appends a [`SaySegment::Text`].
    #[must_use]
    pub fn text(mut self, text: impl Into<Cow<'a, str>>) -> Self {
        self.segments.push(SaySegment::Text(text.into()));
        self
    }

    /// Appends a [`SaySegment::Digits`].
    #[must_use]
    pub fn digits(mut self, digits: impl Into<Cow<'a, str>>) -> Self {
        self.segments.push(SaySegment::Digits(digits.into()));
        self
    }

    /// Appends a [`SaySegment::Break`].
    #[must_use]
    pub fn break_for(mut self, duration: Duration) -> Self {
        self.segments.push(SaySegment::Break(duration));
        self
    }

    /// Sets `voice`.
    #[must_use]
    pub fn voice(mut self, voice: impl Into<Cow<'a, str>>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// Sets `language`.
    #[must_use]
    pub fn language(mut self, language: impl Into<Cow<'a, str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Sets `loop`.
    #[must_use]
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = Some(count);
        self
    }
}

/// `<Play>`: play an audio URL, DTMF digits, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Play<'a> {
    /// The media URL (element body). `None` renders a self-closed element,
    /// which then needs `digits`.
    pub url: Option<Cow<'a, str>>,
    /// `loop`: repetitions; 0 repeats until hang-up (or 1000 times).
    pub loop_count: Option<u32>,
    /// `digits`: DTMF to send, from `0-9 * # w` (`w` = half-second wait).
    pub digits: Option<Cow<'a, str>>,
}

impl<'a> Play<'a> {
    /// Plays the audio at `url`.
    pub fn new(url: impl Into<Cow<'a, str>>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sends DTMF `digits` with no audio.
    pub fn tones(digits: impl Into<Cow<'a, str>>) -> Self {
        Self {
            digits: Some(digits.into()),
            ..Self::default()
        }
    }

    /// Sets `loop`.
    #[must_use]
    pub fn loop_count(mut self, count: u32) -> Self {
        self.loop_count = Some(count);
        self
    }
}

/// `<Pause>`: silence for `length` seconds (Twilio default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pause {
    /// `length` in seconds.
    pub length: Option<u32>,
}

impl Pause {
    /// A pause of `seconds` seconds.
    pub fn seconds(seconds: u32) -> Self {
        Self {
            length: Some(seconds),
        }
    }
}

/// `<Gather input>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatherInput {
    /// `dtmf` (Twilio's default).
    Dtmf,
    /// `speech`.
    Speech,
    /// `dtmf speech`.
    DtmfSpeech,
}

impl GatherInput {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            GatherInput::Dtmf => "dtmf",
            GatherInput::Speech => "speech",
            GatherInput::DtmfSpeech => "dtmf speech",
        }
    }
}

/// `<Gather finishOnKey>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishOnKey {
    /// One key from `0-9 * #` ends input (Twilio's default is `#`).
    Key(char),
    /// No key ends input: rendered as `finishOnKey=""`.
    Disabled,
}

/// The only verbs Twilio allows inside `<Gather>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherChild<'a> {
    /// Nested `<Say>`.
    Say(Say<'a>),
    /// Nested `<Play>`.
    Play(Play<'a>),
    /// Nested `<Pause>`.
    Pause(Pause),
}

/// `<Gather>`: collect input while playing its children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gather<'a> {
    /// Prompts played while waiting for input.
    pub children: Vec<GatherChild<'a>>,
    /// `input`.
    pub input: Option<GatherInput>,
    /// `action`: URL requested with the input (default: the current document).
    pub action: Option<Cow<'a, str>>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `numDigits`: stop after this many digits; must be at least 1.
    pub num_digits: Option<u32>,
    /// `finishOnKey`.
    pub finish_on_key: Option<FinishOnKey>,
    /// `timeout` in seconds.
    pub timeout: Option<u32>,
    /// `actionOnEmptyResult`: request `action` even when nothing was entered.
    pub action_on_empty_result: Option<bool>,
}

impl<'a> Gather<'a> {
    /// A `<Gather>` with no attributes and no children.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a child prompt.
    #[must_use]
    pub fn child(mut self, child: impl Into<GatherChild<'a>>) -> Self {
        self.children.push(child.into());
        self
    }

    /// Sets `input`.
    #[must_use]
    pub fn input(mut self, input: GatherInput) -> Self {
        self.input = Some(input);
        self
    }

    /// Sets `action` and `method`.
    #[must_use]
    pub fn action(mut self, url: impl Into<Cow<'a, str>>, method: Method) -> Self {
        self.action = Some(url.into());
        self.method = Some(method);
        self
    }

    /// Sets `numDigits`.
    #[must_use]
    pub fn num_digits(mut self, n: u32) -> Self {
        self.num_digits = Some(n);
        self
    }

    /// Sets `finishOnKey`.
    #[must_use]
    pub fn finish_on_key(mut self, key: FinishOnKey) -> Self {
        self.finish_on_key = Some(key);
        self
    }

    /// Sets `timeout`.
    #[must_use]
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Sets `actionOnEmptyResult`.
    #[must_use]
    pub fn action_on_empty_result(mut self, yes: bool) -> Self {
        self.action_on_empty_result = Some(yes);
        self
    }
}

/// `<Redirect>`: fetch and run the TwiML at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    /// Absolute or relative URL (element body); must be non-empty.
    pub url: Cow<'a, str>,
    /// `method`.
    pub method: Option<Method>,
}

impl<'a> Redirect<'a> {
    /// A redirect to `url` with Twilio's default method.
    pub fn new(url: impl Into<Cow<'a, str>>) -> Self {
        Self {
            url: url.into(),
            method: None,
        }
    }

    /// Sets `method`.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }
}

/// `<Enqueue>`: place the caller in a named queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue<'a> {
    /// Queue name (element body): 1 to [`crate::MAX_QUEUE_NAME_CHARS`] characters.
    pub queue: Cow<'a, str>,
    /// `action`: URL requested when the caller leaves the queue.
    pub action: Option<Cow<'a, str>>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `waitUrl`: TwiML played while waiting.
    pub wait_url: Option<Cow<'a, str>>,
    /// `waitUrlMethod`.
    pub wait_url_method: Option<Method>,
}

impl<'a> Enqueue<'a> {
    /// Enqueue into `queue` with default attributes.
    pub fn new(queue: impl Into<Cow<'a, str>>) -> Self {
        Self {
            queue: queue.into(),
            action: None,
            method: None,
            wait_url: None,
            wait_url_method: None,
        }
    }
}

/// `<Number>` inside `<Dial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number<'a> {
    /// The number to call (element body), e.g. E.164; must be non-empty.
    pub number: Cow<'a, str>,
    /// `sendDigits`: DTMF sent after answer, from `0-9 * # w`.
    pub send_digits: Option<Cow<'a, str>>,
}

/// `<Queue>` inside `<Dial>`: take the next caller from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue<'a> {
    /// Queue name (element body): 1 to [`crate::MAX_QUEUE_NAME_CHARS`] characters.
    pub name: Cow<'a, str>,
    /// `url`: TwiML played to the dequeued caller before bridging.
    pub url: Option<Cow<'a, str>>,
}

/// What a `<Dial>` connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialNoun<'a> {
    /// `<Number>`.
    Number(Number<'a>),
    /// `<Queue>`.
    Queue(Queue<'a>),
}

/// `<Dial>`: connect the caller to another party.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dial<'a> {
    /// At least one noun.
    pub nouns: Vec<DialNoun<'a>>,
    /// `action`: URL requested when the dialled leg ends.
    pub action: Option<Cow<'a, str>>,
    /// `method` for `action`.
    pub method: Option<Method>,
    /// `timeout`: seconds to ring.
    pub timeout: Option<u32>,
    /// `callerId` shown to the called party.
    pub caller_id: Option<Cow<'a, str>>,
}

impl<'a> Dial<'a> {
    /// A `<Dial>` of one number.
    pub fn number(number: impl Into<Cow<'a, str>>) -> Self {
        Self {
            nouns: vec![DialNoun::Number(Number {
                number: number.into(),
                send_digits: None,
            })],
            ..Self::default()
        }
    }

    /// A `<Dial>` of one queue.
    pub fn queue(name: impl Into<Cow<'a, str>>) -> Self {
        Self {
            nouns: vec![DialNoun::Queue(Queue {
                name: name.into(),
                url: None,
            })],
            ..Self::default()
        }
    }
}

/// `<Hangup />`, for use with [`Response::verb`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hangup;

macro_rules! into_verb {
    ($($ty:ident),*) => {$(
        impl<'a> From<$ty<'a>> for Verb<'a> {
            fn from(v: $ty<'a>) -> Self {
                Verb::$ty(v)
            }
        }
    )*};
}
into_verb!(Say, Play, Gather, Redirect, Enqueue, Dial);

impl From<Pause> for Verb<'_> {
    fn from(v: Pause) -> Self {
        Verb::Pause(v)
    }
}

impl From<Hangup> for Verb<'_> {
    fn from(_: Hangup) -> Self {
        Verb::Hangup
    }
}

impl<'a> From<Say<'a>> for GatherChild<'a> {
    fn from(v: Say<'a>) -> Self {
        GatherChild::Say(v)
    }
}

impl<'a> From<Play<'a>> for GatherChild<'a> {
    fn from(v: Play<'a>) -> Self {
        GatherChild::Play(v)
    }
}

impl From<Pause> for GatherChild<'_> {
    fn from(v: Pause) -> Self {
        GatherChild::Pause(v)
    }
}

impl<'a> From<Number<'a>> for DialNoun<'a> {
    fn from(n: Number<'a>) -> Self {
        DialNoun::Number(n)
    }
}

impl<'a> From<Queue<'a>> for DialNoun<'a> {
    fn from(q: Queue<'a>) -> Self {
        DialNoun::Queue(q)
    }
}
