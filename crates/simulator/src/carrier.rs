//! The carrier: places a call against a server URL and follows its TwiML verb by verb as
//! Twilio does (protocol.md §1-4).
//!
//! * Every request carries the full incoming-call parameter set (§1.2, empty geo fields as
//!   empty strings) and an `X-Twilio-Signature` over exactly the URL it requests (§2.4).
//! * `<Say>`, `<Play>`, `<Pause>` become transcript lines and take simulated time: speech at
//!   [`Timing::words_per_minute`], audio for the length of the file (WAV header), pauses for
//!   their `length`. The shared [`FakeClock`] moves with them, so the server sees the same
//!   time the caller lives through.
//! * `<Gather>` stops and waits for the caller ([`Call::press`], [`Call::silence`],
//!   [`Call::hang_up`]). Keys typed while its nested verbs play barge in (what has not been
//!   heard yet is cut). Input ends on `numDigits`, on `finishOnKey` (only after at least one
//!   digit), or after `timeout` seconds of silence; then the action URL (default: the current
//!   document) gets `Digits` and `FinishedOnKey`. With no input at all, execution falls
//!   through to the next verb, unless `actionOnEmptyResult="true"` (then `Digits=""`).
//! * `<Redirect>` fetches the next document. `<Enqueue>` and `<Dial>` hand the caller to an
//!   agent; how that ends is the call's `transfer_result` (`bridged` by default), posted to
//!   their `action` URL as `QueueResult` / `DialCallStatus` when the caller leaves the queue,
//!   and the returned TwiML runs on. `<Hangup>`/`<Reject>` and the end of a document hang up.
//! * Limits: 15 s to answer, 64 kB body, content type `text/xml`, `application/xml` or
//!   `text/html` (`text/plain` is read aloud, then the call hangs up); anything else, an HTTP
//!   error, or a document that does not parse fails the call with Twilio's error code
//!   (11200, 11750, 12100, 12102, 12300) and the application-error message.
//! * At the end, the status callback (`CallStatus=completed`, `CallDuration`,
//!   `CallbackSource=call-progress-events`, `SequenceNumber`, `Timestamp`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resetline_engine::{Clock, FakeClock};

use crate::rest::{FakeTwilio, RestEvent};
use crate::twiml::{self, Node};

/// Twilio's webhook read timeout.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest TwiML body Twilio accepts (error 11750 above it).
pub const MAX_TWIML_BYTES: usize = 64 * 1024;
/// What the caller hears when the application fails.
pub const APPLICATION_ERROR: &str = "We are sorry, an application error has occurred. Goodbye.";

/// How long things take on a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Text-to-speech rate.
    pub words_per_minute: u32,
    /// Time per key the caller presses.
    pub key_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            words_per_minute: 160,
            key_ms: 300,
        }
    }
}

/// One thing that happened on the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// The system spoke (`interrupted`: the caller barged in).
    Say {
        /// What was said.
        text: String,
        /// Cut short by a keypress.
        interrupted: bool,
    },
    /// Audio played (file name).
    Play(String),
    /// Silence from the system, seconds.
    Pause(u32),
    /// The caller pressed keys.
    Keys(String),
    /// The caller said nothing until the gather timed out.
    Silence,
    /// A message reached the caller's handset.
    Message {
        /// `sms` or `email`.
        channel: &'static str,
        /// Destination.
        to: String,
        /// Text, with codes masked (`######`).
        text: String,
    },
    /// A message was not delivered.
    NotDelivered {
        /// Destination.
        to: String,
        /// The delivery report's status.
        status: String,
    },
    /// The recording changed state.
    Recording(String),
    /// The call went to an agent queue or number.
    Transfer(String),
    /// The caller hung up.
    CallerHangup,
    /// The system ended the call.
    Hangup,
    /// The call failed with a Twilio error code.
    Error {
        /// Twilio error code.
        code: u32,
        /// What went wrong.
        detail: String,
    },
    /// Something worth knowing (keys ignored, a retried webhook answered differently).
    Note(String),
}

fn mask_codes(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 4 {
            out.push_str(&"#".repeat(run.len()));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Say { text, interrupted } => {
                write!(f, "say: {text}")?;
                if *interrupted {
                    f.write_str(" [interrupted]")?;
                }
                Ok(())
            }
            Line::Play(name) => write!(f, "play: {name}"),
            Line::Pause(s) => write!(f, "pause: {s}s"),
            Line::Keys(k) => write!(f, "press: {k}"),
            Line::Silence => f.write_str("silence"),
            Line::Message { channel, to, text } => write!(f, "{channel} to {to}: {text}"),
            Line::NotDelivered { to, status } => write!(f, "sms to {to}: {status}"),
            Line::Recording(s) => write!(f, "recording: {s}"),
            Line::Transfer(to) => write!(f, "transfer: {to}"),
            Line::CallerHangup => f.write_str("caller hangs up"),
            Line::Hangup => f.write_str("hangup"),
            Line::Error { code, detail } => write!(f, "error {code}: {detail}"),
            Line::Note(n) => write!(f, "note: {n}"),
        }
    }
}

/// A transcript line and when it started, in ms from the start of the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Simulated ms since the call was answered.
    pub at_ms: u64,
    /// What happened.
    pub line: Line,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.at_ms / 1000;
        write!(
            f,
            "[{:02}:{:02}.{}] {}",
            s / 60,
            s % 60,
            (self.at_ms % 1000) / 100,
            self.line
        )
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The system hung up (`<Hangup>` or the end of a document).
    Completed,
    /// The caller hung up.
    CallerHungUp,
    /// The call went to an agent (`<Enqueue>` or `<Dial>`).
    Transferred(String),
    /// Twilio's application error.
    Failed(u32),
}

impl End {
    /// A short name: `completed`, `caller_hung_up`, `transferred`, `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::CallerHungUp => "caller_hung_up",
            End::Transferred(_) => "transferred",
            End::Failed(_) => "failed",
        }
    }
}

/// A carrier account: HTTP client, credentials, the shared clock and the REST fake.
#[derive(Clone, Debug)]
pub struct Carrier {
    http: reqwest::Client,
    account: String,
    token: String,
    clock: FakeClock,
    twilio: Option<FakeTwilio>,
    timing: Timing,
    next_sid: Arc<AtomicU64>,
    audio: Arc<Mutex<HashMap<String, u64>>>,
}

/// Options of one call.
#[derive(Clone, Debug)]
pub struct CallSpec {
    /// The number's voice URL.
    pub url: String,
    /// The number's status callback URL.
    pub status_callback: Option<String>,
    /// Caller id.
    pub from: String,
    /// The number called.
    pub to: String,
    /// Sign with this token instead of the account's (to test refusals).
    pub sign_with: Option<String>,
    /// Post every webhook twice, as a carrier retry would, and note any difference between
    /// the two answers.
    pub retry_each: bool,
    /// How a transfer ends: `bridged` (an agent took it; `completed` for `<Dial>`),
    /// `queue-full`, `error`, `system-error`, `hangup` for a queue; `busy`, `no-answer`,
    /// `failed` for a dial.
    pub transfer_result: String,
}

impl CallSpec {
    /// A call from `from` to the voice URL `url`.
    pub fn new(url: &str, from: &str) -> Self {
        CallSpec {
            url: url.to_string(),
            status_callback: None,
            from: from.to_string(),
            to: "+15555550000".to_string(),
            sign_with: None,
            retry_each: false,
            transfer_result: "bridged".to_string(),
        }
    }
}

/// The error of building a carrier.
#[derive(Debug)]
pub struct CarrierError(String);

impl fmt::Display for CarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "carrier: {}", self.0)
    }
}

impl std::error::Error for CarrierError {}

impl Carrier {
    /// A carrier for account `account` with auth token `token` on `clock`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(account: &str, token: &str, clock: FakeClock) -> Result<Self, CarrierError> {
        Carrier::with_response_timeout(account, token, clock, RESPONSE_TIMEOUT)
    }

    /// [`Carrier::new`] with another webhook timeout than Twilio's 15 s (a connection
    /// override `#rt=...`, or a test that should not wait 15 s).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn with_response_timeout(
        account: &str,
        token: &str,
        clock: FakeClock,
        timeout: Duration,
    ) -> Result<Self, CarrierError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .map_err(|e| CarrierError(e.to_string()))?;
        Ok(Carrier {
            http,
            account: account.to_string(),
            token: token.to_string(),
            clock,
            twilio: None,
            timing: Timing::default(),
            next_sid: Arc::new(AtomicU64::new(1)),
            audio: Arc::default(),
        })
    }

    /// Attaches the REST fake whose events and deliveries belong to this carrier's calls.
    pub fn with_twilio(mut self, twilio: FakeTwilio) -> Self {
        self.twilio = Some(twilio);
        self
    }

    /// Changes the timing model.
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The shared clock.
    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }

    /// Answers a call: posts the incoming-call webhook and plays until the caller must act or
    /// the call ends.
    pub async fn place(&self, spec: CallSpec) -> Call {
        let n = self.next_sid.fetch_add(1, Ordering::Relaxed);
        let sid = format!("CA{n:032x}");
        let mut call = Call {
            carrier: self.clone(),
            base: incoming_params(&self.account, &sid, &spec.from, &spec.to),
            sid,
            verbs: VecDeque::new(),
            doc_url: spec.url.clone(),
            spec,
            transcript: Vec::new(),
            elapsed_ms: 0,
            keypresses: 0,
            fetches: 0,
            end: None,
            gather: None,
            retry_mismatches: 0,
            started_ms: self.clock.now_ms(),
            spent: Spent::default(),
            connected: None,
        };
        let url = call.spec.url.clone();
        match call.fetch(&url, "POST", Vec::new(), true).await {
            Ok(verbs) => {
                call.verbs = verbs.into();
                call.run().await;
            }
            Err((code, detail)) => call.fail(code, detail).await,
        }
        call
    }
}

fn incoming_params(account: &str, sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = vec![
        ("AccountSid".into(), account.into()),
        ("ApiVersion".into(), "2010-04-01".into()),
        ("CallSid".into(), sid.into()),
        ("CallStatus".into(), "in-progress".into()),
        ("Called".into(), to.into()),
        ("Caller".into(), from.into()),
        ("Direction".into(), "inbound".into()),
        ("From".into(), from.into()),
        ("To".into(), to.into()),
    ];
    for prefix in ["Called", "Caller", "From", "To"] {
        for field in ["City", "Country", "State", "Zip"] {
            let value = if field == "Country" && from.starts_with("+1") {
                "US"
            } else {
                ""
            };
            p.push((format!("{prefix}{field}"), value.to_string()));
        }
    }
    p
}

/// The `X-Twilio-Signature` the carrier sends for a request to `url` with form `params`
/// (none for GET): protocol.md §2, computed by resetline-twiml over exactly the URL sent.
pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    resetline_twiml::signature::compute(token.as_bytes(), url, params)
}

/// What a pending `<Gather>` listens for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    /// Where input goes.
    pub action: String,
    /// POST or GET.
    pub method: String,
    /// Input ends after this many digits.
    pub num_digits: Option<usize>,
    /// Key that ends input (empty: none).
    pub finish_on_key: String,
    /// Seconds of silence that end input.
    pub timeout_s: u64,
    /// Post even when nothing was entered.
    pub action_on_empty_result: bool,
    /// Transcript index of the first nested prompt, and each prompt's length in ms.
    prompts: (usize, Vec<u64>),
    /// The prompts already played out (the caller listened to the end).
    played: bool,
}

impl Listening {
    /// How long the nested prompts play, ms.
    pub fn prompts_ms(&self) -> u64 {
        if self.played {
            0
        } else {
            self.prompts.1.iter().sum()
        }
    }
}

/// Where a call's time went (the caller-experience report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    /// Text-to-speech.
    pub speech_ms: u64,
    /// Audio and pauses.
    pub audio_ms: u64,
    /// Gather timeouts: silence before the system moves on.
    pub waiting_ms: u64,
    /// The caller typing.
    pub keying_ms: u64,
}

/// One call in progress (or ended).
#[derive(Debug)]
pub struct Call {
    carrier: Carrier,
    spec: CallSpec,
    sid: String,
    base: Vec<(String, String)>,
    verbs: VecDeque<Node>,
    doc_url: String,
    transcript: Vec<Entry>,
    elapsed_ms: u64,
    keypresses: usize,
    fetches: usize,
    end: Option<End>,
    gather: Option<Listening>,
    retry_mismatches: usize,
    started_ms: u64,
    spent: Spent,
    /// Set once an agent took the call (a bridged queue or an answered dial).
    connected: Option<String>,
}

/// More fetches than this in one call is a redirect loop.
const MAX_FETCHES: usize = 500;

fn say_words(node: &Node) -> (String, u64) {
    fn breaks(n: &Node) -> u64 {
        match n {
            Node::Text(_) => 0,
            Node::Element { name, children, .. } => {
                let own = if name == "break" {
                    n.attr("time").map_or(500, |t| {
                        if let Some(ms) = t.strip_suffix("ms") {
                            ms.parse().unwrap_or(0)
                        } else if let Some(s) = t.strip_suffix('s') {
                            s.parse::<u64>().unwrap_or(0) * 1000
                        } else {
                            0
                        }
                    })
                } else {
                    0
                };
                own + children.iter().map(breaks).sum::<u64>()
            }
        }
    }
    (node.text(), breaks(node))
}

impl Call {
    /// The CallSid.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Everything that happened so far (a pending gather's prompts included).
    pub fn transcript(&self) -> &[Entry] {
        &self.transcript
    }

    /// How the call ended, once it did.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The gather waiting for the caller, if any.
    pub fn listening(&self) -> Option<&Listening> {
        self.gather.as_ref()
    }

    /// Simulated call time so far, ms.
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms
    }

    /// Keys the caller pressed.
    pub fn keypresses(&self) -> usize {
        self.keypresses
    }

    /// Where the call's time went.
    pub fn spent(&self) -> Spent {
        self.spent
    }

    fn count(&mut self, line: &Line, ms: u64) {
        match line {
            Line::Say { .. } => self.spent.speech_ms += ms,
            _ => self.spent.audio_ms += ms,
        }
    }

    /// Counts the first `upto` ms of a gather's prompts.
    fn count_prompts(&mut self, g: &Listening, upto: u64) {
        if g.played {
            return;
        }
        let mut left = upto;
        for (i, ms) in g.prompts.1.iter().enumerate() {
            let part = (*ms).min(left);
            left -= part;
            let say = matches!(
                self.transcript.get(g.prompts.0 + i).map(|e| &e.line),
                Some(Line::Say { .. })
            );
            if say {
                self.spent.speech_ms += part;
            } else {
                self.spent.audio_ms += part;
            }
        }
    }

    /// Retried webhooks whose second answer differed from the first.
    pub fn retry_mismatches(&self) -> usize {
        self.retry_mismatches
    }

    /// Adds a line at the current call time: before any prompt of a waiting gather that has
    /// not played yet (a message arriving while the caller listens).
    fn push(&mut self, line: Line) {
        let at_ms = self.elapsed_ms;
        let pos = self
            .transcript
            .iter()
            .rposition(|e| e.at_ms <= at_ms)
            .map_or(0, |i| i + 1);
        if let Some(g) = self.gather.as_mut()
            && pos <= g.prompts.0
        {
            g.prompts.0 += 1;
        }
        self.transcript.insert(pos, Entry { at_ms, line });
    }

    fn take_rest_events(&mut self) {
        let Some(t) = &self.carrier.twilio else {
            return;
        };
        for e in t.drain_events() {
            let line = match e {
                RestEvent::Recording(s) => Line::Recording(s),
                RestEvent::Arrived(r) => Line::Message {
                    channel: r.channel,
                    to: r.to,
                    text: mask_codes(&r.body),
                },
                RestEvent::NotDelivered { to, status } => Line::NotDelivered { to, status },
            };
            self.push(line);
        }
    }

    /// Call time passes: the shared clock moves and due messages are delivered.
    /// Messages fall due at their own time within the interval, in order.
    async fn pass(&mut self, ms: u64) {
        let end = self.carrier.clock.now_ms().saturating_add(ms);
        while let Some(due) = self
            .carrier
            .twilio
            .as_ref()
            .and_then(FakeTwilio::next_due_ms)
            .filter(|d| *d <= end)
        {
            let step = due.saturating_sub(self.carrier.clock.now_ms());
            self.elapsed_ms += step;
            self.carrier.clock.advance(Duration::from_millis(step));
            self.deliver().await;
        }
        let rest = end.saturating_sub(self.carrier.clock.now_ms());
        self.elapsed_ms += rest;
        self.carrier.clock.advance(Duration::from_millis(rest));
        self.deliver().await;
    }

    async fn deliver(&mut self) {
        if let Some(t) = self.carrier.twilio.clone() {
            t.deliver_due(&self.carrier.http).await;
        }
        self.take_rest_events();
    }

    /// Jumps the shared clock by `by` without call time passing for the caller's transcript
    /// (a test jumping over an expiry); due messages are delivered.
    pub async fn jump(&mut self, by: Duration) {
        self.carrier.clock.advance(by);
        self.deliver().await;
    }

    fn resolve(&self, url: &str) -> String {
        if url.is_empty() {
            return self.doc_url.clone();
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return url.to_string();
        }
        let scheme_end = self.doc_url.find("://").map_or(0, |i| i + 3);
        let host_end = self.doc_url[scheme_end..]
            .find('/')
            .map_or(self.doc_url.len(), |i| i + scheme_end);
        if url.starts_with('/') {
            format!("{}{url}", &self.doc_url[..host_end])
        } else {
            let path = self.doc_url.split('?').next().unwrap_or_default();
            let dir = path.rfind('/').map_or(path, |i| &path[..=i]);
            format!("{dir}{url}")
        }
    }

    /// Requests a document. `Err((twilio error code, detail))` when Twilio would fail the call.
    async fn fetch(
        &mut self,
        url: &str,
        method: &str,
        extra: Vec<(String, String)>,
        first: bool,
    ) -> Result<Vec<Node>, (u32, String)> {
        self.fetches += 1;
        if self.fetches > MAX_FETCHES {
            return Err((
                11200,
                "too many requests in one call (a redirect loop?)".into(),
            ));
        }
        let mut params = self.base.clone();
        if first && let Some(p) = params.iter_mut().find(|(k, _)| k == "CallStatus") {
            p.1 = "ringing".into();
        }
        params.extend(extra);
        let answer = self.request(url, method, &params).await?;
        let answer = if self.spec.retry_each {
            let again = self.request(url, method, &params).await?;
            if again != answer {
                self.retry_mismatches += 1;
                self.push(Line::Note(format!(
                    "a retry of {} answered differently",
                    url.rsplit_once("/voice/").map_or(url, |(_, p)| p)
                )));
            }
            again
        } else {
            answer
        };
        self.doc_url = url.to_string();
        self.take_rest_events();
        let (content_type, body) = answer;
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if body.len() > MAX_TWIML_BYTES {
            return Err((11750, format!("response body is {} bytes", body.len())));
        }
        match mime.as_str() {
            "text/xml" | "application/xml" | "text/html" => {
                twiml::parse(&body).map_err(|e| (e.code, e.detail))
            }
            "text/plain" => Ok(vec![
                Node::Element {
                    name: "Say".into(),
                    attrs: vec![],
                    children: vec![Node::Text(body)],
                },
                Node::Element {
                    name: "Hangup".into(),
                    attrs: vec![],
                    children: vec![],
                },
            ]),
            "" => Err((12300, "no Content-Type".into())),
            other => Err((12300, format!("Content-Type {other}"))),
        }
    }

    async fn request(
        &self,
        url: &str,
        method: &str,
        params: &[(String, String)],
    ) -> Result<(String, String), (u32, String)> {
        let token = self
            .spec
            .sign_with
            .as_deref()
            .unwrap_or(&self.carrier.token);
        let http = &self.carrier.http;
        let builder = if method.eq_ignore_ascii_case("GET") {
            let sep = if url.contains('?') { '&' } else { '?' };
            let full = format!("{url}{sep}{}", resetline_twiml::params::serialize(params));
            let sig = sign(token, &full, &[]);
            http.get(full)
                .header(resetline_twiml::signature::HEADER_NAME, sig)
        } else {
            let sig = sign(token, url, params);
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header(resetline_twiml::signature::HEADER_NAME, sig)
                .body(resetline_twiml::params::serialize(params))
        };
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                (11200, "no answer in time (Twilio waits 15 s)".to_string())
            } else {
                (11200, format!("HTTP retrieval failure: {e}"))
            }
        })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .text()
            .await
            .map_err(|e| (11200, format!("reading the answer: {e}")))?;
        if !status.is_success() {
            return Err((11200, format!("HTTP {}", status.as_u16())));
        }
        Ok((content_type, body))
    }

    async fn fail(&mut self, code: u32, detail: String) {
        self.push(Line::Error { code, detail });
        self.push(Line::Say {
            text: APPLICATION_ERROR.into(),
            interrupted: false,
        });
        let ms = self.speech_ms(APPLICATION_ERROR, 0);
        self.spent.speech_ms += ms;
        self.pass(ms).await;
        self.finish(End::Failed(code)).await;
    }

    fn speech_ms(&self, text: &str, extra_ms: u64) -> u64 {
        let words = u64::try_from(text.split_whitespace().count()).unwrap_or(0);
        words * 60_000 / u64::from(self.carrier.timing.words_per_minute.max(1)) + extra_ms
    }

    async fn audio_ms(&self, url: &str) -> Option<u64> {
        if let Ok(cache) = self.carrier.audio.lock()
            && let Some(ms) = cache.get(url)
        {
            return Some(*ms);
        }
        let bytes = self
            .carrier
            .http
            .get(url)
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let ms = wav_ms(&bytes)?;
        if let Ok(mut cache) = self.carrier.audio.lock() {
            cache.insert(url.to_string(), ms);
        }
        Some(ms)
    }

    /// What a prompt verb says and how long it takes; `None` for a verb that is not one.
    async fn prompt(&self, verb: &Node) -> Option<(Line, u64)> {
        let Node::Element { name, .. } = verb else {
            return None;
        };
        let loops = verb
            .attr("loop")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1);
        match name.as_str() {
            "Say" => {
                let (text, breaks) = say_words(verb);
                let ms = self.speech_ms(&text, breaks) * loops;
                Some((
                    Line::Say {
                        text,
                        interrupted: false,
                    },
                    ms,
                ))
            }
            "Play" => {
                if let Some(d) = verb.attr("digits") {
                    let ms: u64 = d.chars().map(|c| if c == 'w' { 500 } else { 100 }).sum();
                    return Some((Line::Play(format!("tones {d}")), ms));
                }
                let url = self.resolve(&verb.text());
                let ms = self.audio_ms(&url).await.unwrap_or(0) * loops;
                let file = url.rsplit('/').next().unwrap_or(&url).to_string();
                Some((Line::Play(file), ms))
            }
            "Pause" => {
                let s: u32 = verb
                    .attr("length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(1);
                Some((Line::Pause(s), u64::from(s) * 1000))
            }
            _ => None,
        }
    }

    /// Runs verbs until a gather waits for the caller or the call ends.
    async fn run(&mut self) {
        while self.end.is_none() && self.gather.is_none() {
            let Some(verb) = self.verbs.pop_front() else {
                let end = self
                    .connected
                    .clone()
                    .map_or(End::Completed, End::Transferred);
                self.finish(end).await;
                return;
            };
            let Node::Element { name, children, .. } = &verb else {
                continue;
            };
            match name.as_str() {
                "Say" | "Play" | "Pause" => {
                    if let Some((line, ms)) = self.prompt(&verb).await {
                        self.count(&line, ms);
                        self.push(line);
                        self.pass(ms).await;
                    }
                }
                "Gather" => {
                    let first = self.transcript.len();
                    let mut lengths = Vec::new();
                    let mut offset = self.elapsed_ms;
                    for c in children
                        .iter()
                        .filter(|c| matches!(c, Node::Element { .. }))
                    {
                        let Some((line, ms)) = self.prompt(c).await else {
                            self.fail(12100, "only Say, Play and Pause may nest in Gather".into())
                                .await;
                            return;
                        };
                        self.transcript.push(Entry {
                            at_ms: offset,
                            line,
                        });
                        offset += ms;
                        lengths.push(ms);
                    }
                    let action = self.resolve(verb.attr("action").unwrap_or_default());
                    self.gather = Some(Listening {
                        action,
                        method: verb.attr("method").unwrap_or("POST").to_string(),
                        num_digits: verb.attr("numDigits").and_then(|n| n.parse().ok()),
                        finish_on_key: verb.attr("finishOnKey").unwrap_or("#").to_string(),
                        timeout_s: verb
                            .attr("timeout")
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(5),
                        action_on_empty_result: verb.attr("actionOnEmptyResult") == Some("true"),
                        prompts: (first, lengths),
                        played: false,
                    });
                }
                "Redirect" => {
                    let url = self.resolve(&verb.text());
                    let method = verb.attr("method").unwrap_or("POST").to_string();
                    self.follow(&url, &method, Vec::new()).await;
                }
                "Hangup" | "Reject" => {
                    let end = self
                        .connected
                        .clone()
                        .map_or(End::Completed, End::Transferred);
                    self.finish(end).await;
                }
                "Enqueue" | "Dial" => self.transfer(&verb).await,
                other => {
                    let other = other.to_string();
                    self.fail(12100, format!("unknown verb <{other}>")).await;
                }
            }
        }
    }

    /// `<Enqueue>` or `<Dial>`: the caller waits for (or rings) an agent; the spec's
    /// `transfer_result` says how that ends. When the call leaves the queue (or the dialled
    /// leg ends) the `action` URL gets `QueueResult` (or `DialCallStatus`) and its TwiML runs;
    /// without `action`, a connected call ends and a failed one falls through.
    async fn transfer(&mut self, verb: &Node) {
        let enqueue = matches!(verb, Node::Element { name, .. } if name == "Enqueue");
        let to = if enqueue {
            format!("queue {}", verb.text())
        } else {
            format!("dial {}", verb.text())
        };
        let result = match self.spec.transfer_result.as_str() {
            "bridged" if !enqueue => "completed".to_string(),
            other => other.to_string(),
        };
        let connected = matches!(result.as_str(), "bridged" | "completed" | "answered");
        self.push(Line::Transfer(format!("{to} ({result})")));
        if connected {
            self.connected = Some(to.clone());
        }
        let Some(action) = verb.attr("action").map(|a| self.resolve(a)) else {
            if connected {
                self.finish(End::Transferred(to)).await;
            }
            return;
        };
        let method = verb.attr("method").unwrap_or("POST").to_string();
        let extra: Vec<(String, String)> = if enqueue {
            vec![
                ("QueueResult".into(), result),
                (
                    "QueueSid".into(),
                    "QU0123456789abcdef0123456789abcdef".into(),
                ),
                ("QueueTime".into(), "0".into()),
            ]
        } else {
            vec![
                ("DialCallStatus".into(), result),
                (
                    "DialCallSid".into(),
                    "CAfedcba9876543210fedcba9876543210".into(),
                ),
                (
                    "DialCallDuration".into(),
                    if connected { "60" } else { "0" }.into(),
                ),
            ]
        };
        self.follow(&action, &method, extra).await;
    }

    async fn follow(&mut self, url: &str, method: &str, extra: Vec<(String, String)>) {
        match self.fetch(url, method, extra, false).await {
            Ok(verbs) => self.verbs = verbs.into(),
            Err((code, detail)) => self.fail(code, detail).await,
        }
    }

    async fn finish(&mut self, end: End) {
        if self.end.is_some() {
            return;
        }
        self.gather = None;
        self.push(match &end {
            End::CallerHungUp => Line::CallerHangup,
            _ => Line::Hangup,
        });
        self.end = Some(end);
        let Some(url) = self.spec.status_callback.clone() else {
            return;
        };
        let mut params = self.base.clone();
        if let Some(p) = params.iter_mut().find(|(k, _)| k == "CallStatus") {
            p.1 = "completed".into();
        }
        let secs = self.elapsed_ms.div_ceil(1000);
        let now = self.carrier.clock.now_ms();
        let stamp =
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(now / 1000).unwrap_or(0))
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc2822)
                        .ok()
                })
                .unwrap_or_default();
        params.extend([
            ("CallDuration".to_string(), secs.to_string()),
            (
                "CallbackSource".to_string(),
                "call-progress-events".to_string(),
            ),
            ("SequenceNumber".to_string(), "0".to_string()),
            ("Timestamp".to_string(), stamp),
        ]);
        let result = self.request(&url, "POST", &params).await;
        if let Err((_, detail)) = result {
            self.push(Line::Note(format!("status callback failed: {detail}")));
        }
        self.take_rest_events();
    }

    /// The caller presses `keys` once the gather's prompts finished playing.
    pub async fn press(&mut self, keys: &str) {
        self.press_at(keys, None).await;
    }

    /// The caller presses `keys`, starting `at` after the gather began (during its prompts:
    /// a barge-in), or after the prompts when `None`.
    pub async fn press_at(&mut self, keys: &str, at: Option<Duration>) {
        self.press_as(keys, at, keys).await;
    }

    /// [`Call::press_at`], with the keys shown in the transcript as `shown` (a one-time
    /// code from the handset is shown as `$code`, so transcripts stay the same run to run).
    pub async fn press_as(&mut self, keys: &str, at: Option<Duration>, shown: &str) {
        let Some(g) = self.gather.take() else {
            self.push(Line::Note(format!(
                "keys {keys} pressed while nothing listened"
            )));
            return;
        };
        let total = g.prompts_ms();
        let start = at.map_or(total, |a| {
            u64::try_from(a.as_millis()).unwrap_or(u64::MAX).min(total)
        });
        self.count_prompts(&g, start);
        if start < total {
            self.barge_in(&g, start);
        }
        self.pass(start).await;
        self.push(Line::Keys(shown.to_string()));
        let mut digits = String::new();
        let mut finished_on = None;
        let mut used = 0;
        for (i, k) in keys.chars().enumerate() {
            used = i + 1;
            self.keypresses += 1;
            let ms = self.carrier.timing.key_ms;
            self.spent.keying_ms += ms;
            self.pass(ms).await;
            if g.finish_on_key.contains(k) && !g.finish_on_key.is_empty() {
                if digits.is_empty() {
                    continue;
                }
                finished_on = Some(k.to_string());
                break;
            }
            digits.push(k);
            if g.num_digits == Some(digits.len()) {
                finished_on = Some(String::new());
                break;
            }
        }
        if used < keys.chars().count() {
            let rest: String = keys.chars().skip(used).collect();
            self.push(Line::Note(format!(
                "keys {rest} came after the input ended"
            )));
        }
        let finished_on = match finished_on {
            Some(k) => k,
            None => {
                self.spent.waiting_ms += g.timeout_s * 1000;
                self.pass(g.timeout_s * 1000).await;
                String::new()
            }
        };
        if digits.is_empty() {
            self.no_input(&g).await;
        } else {
            self.submit(&g, digits, finished_on).await;
        }
    }

    fn barge_in(&mut self, g: &Listening, cut_ms: u64) {
        let (first, lengths) = &g.prompts;
        let mut offset = 0;
        let mut keep = self.transcript.len();
        for (i, ms) in lengths.iter().enumerate() {
            let idx = first + i;
            if offset >= cut_ms {
                keep = keep.min(idx);
            } else if offset + ms > cut_ms
                && let Some(Entry {
                    line: Line::Say { interrupted, .. },
                    ..
                }) = self.transcript.get_mut(idx)
            {
                *interrupted = true;
            }
            offset += ms;
        }
        // Lines after the prompts (none while listening) are kept.
        let end = first + lengths.len();
        if keep < end {
            self.transcript.drain(keep..end);
        }
    }

    /// The waiting gather's prompts play to their end (time passes, messages arrive); the
    /// gather keeps listening.
    pub async fn finish_prompts(&mut self) {
        let Some(g) = self.gather.clone() else {
            return;
        };
        let ms = g.prompts_ms();
        self.count_prompts(&g, ms);
        self.pass(ms).await;
        if let Some(g) = self.gather.as_mut() {
            g.played = true;
        }
    }

    /// The caller says nothing: the prompts play out and the gather times out.
    pub async fn silence(&mut self) {
        let Some(g) = self.gather.take() else {
            return;
        };
        self.count_prompts(&g, g.prompts_ms());
        self.pass(g.prompts_ms()).await;
        self.push(Line::Silence);
        self.spent.waiting_ms += g.timeout_s * 1000;
        self.pass(g.timeout_s * 1000).await;
        self.no_input(&g).await;
    }

    /// The caller hangs up while the gather listens (after its prompts).
    pub async fn hang_up(&mut self) {
        if let Some(g) = self.gather.take() {
            self.count_prompts(&g, g.prompts_ms());
            self.pass(g.prompts_ms()).await;
        }
        self.finish(End::CallerHungUp).await;
    }

    async fn no_input(&mut self, g: &Listening) {
        if g.action_on_empty_result {
            self.submit(g, String::new(), String::new()).await;
        } else {
            self.run().await;
        }
    }

    async fn submit(&mut self, g: &Listening, digits: String, finished_on: String) {
        let extra = vec![
            ("Digits".to_string(), digits),
            ("FinishedOnKey".to_string(), finished_on),
        ];
        self.follow(&g.action, &g.method, extra).await;
        self.run().await;
    }

    /// When the call started on the shared clock, ms since the epoch.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }
}

/// Length of a PCM WAV file in ms, from its header.
fn wav_ms(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut i = 12;
    let mut byte_rate = 0u64;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let size = u64::from(u32::from_le_bytes(bytes[i + 4..i + 8].try_into().ok()?));
        if id == b"fmt " && i + 20 <= bytes.len() {
            byte_rate = u64::from(u32::from_le_bytes(bytes[i + 16..i + 20].try_into().ok()?));
        }
        if id == b"data" {
            return (byte_rate > 0).then(|| size * 1000 / byte_rate);
        }
        i += 8 + usize::try_from(size).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_masked_in_transcripts_but_short_numbers_stay() {
        assert_eq!(
            mask_codes("Your code is 123456. It expires in 10 minutes."),
            "Your code is ######. It expires in 10 minutes."
        );
    }

    #[test]
    fn wav_length_comes_from_the_header() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&0u32.to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 1, 0]);
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&16000u32.to_le_bytes());
        wav.extend_from_slice(&[2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&24000u32.to_le_bytes());
        assert_eq!(wav_ms(&wav), Some(1500));
        assert_eq!(wav_ms(b"not a wav"), None);
    }
}
