//! A fake of Twilio's REST API (protocol.md §5-6) and the caller's handset.
//!
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` answers 201 with an `SM...` sid (or
//! Twilio's error body: 20003 bad credentials, 21604 no `To`, 21614 not a mobile number), and
//! schedules the message: after its configured delay in *simulated* time it lands in the
//! handset's inbox (or fails) and a signed delivery report goes to its `StatusCallback`.
//! `POST .../Calls/{CallSid}/Recordings/{Sid}.json` with `Status=paused|in-progress|stopped`
//! changes the recording state (404, code 20404, when the call has no recording).
//!
//! Email has no Twilio API: [`Mailbox`] is an in-process `Messenger` that puts mail in the same
//! inbox, so a flow test sees codes by SMS and by email alike.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use resetline_engine::{
    BoxFuture, Clock, FakeClock, Messenger, OutgoingMessage, SendError, SentMessage,
};

/// What happens to a message after Twilio accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Reaches the handset; report `delivered`.
    Delivered,
    /// Never reaches it; report `failed` with this error code (e.g. 30003).
    Failed(u32),
    /// Never reaches it; report `undelivered` with this error code (e.g. 30006).
    Undelivered(u32),
    /// Never arrives and no report is ever sent.
    Lost,
}

/// How the fake treats one message: after `delay` of simulated time, `outcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsBehaviour {
    /// Simulated time between acceptance and delivery (or failure).
    pub delay: Duration,
    /// What happens then.
    pub outcome: Delivery,
}

impl Default for SmsBehaviour {
    fn default() -> Self {
        SmsBehaviour {
            delay: Duration::from_secs(2),
            outcome: Delivery::Delivered,
        }
    }
}

/// A message on the handset (SMS or email).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// `sms` or `email`.
    pub channel: &'static str,
    /// Destination number or address.
    pub to: String,
    /// The text (subject and body for email).
    pub body: String,
    /// Simulated time it arrived, ms since the epoch.
    pub at_ms: u64,
}

impl Received {
    /// The first run of 4 to 10 digits in the text: the one-time code, if the message has one.
    pub fn code(&self) -> Option<String> {
        self.body
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| (4..=10).contains(&w.len()))
            .map(str::to_string)
    }
}

/// Something the fake saw that belongs in the call's transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestEvent {
    /// The recording changed state (`paused`, `in-progress`, `stopped`).
    Recording(String),
    /// A message reached the handset.
    Arrived(Received),
    /// A message failed; the delivery report said `status`.
    NotDelivered {
        /// Destination.
        to: String,
        /// `failed` or `undelivered`.
        status: String,
    },
}

#[derive(Debug)]
struct Message {
    sid: String,
    to: String,
    body: String,
    callback: Option<String>,
    due_ms: u64,
    outcome: Delivery,
    done: bool,
}

#[derive(Debug, Default)]
struct Shared {
    behaviours: Vec<SmsBehaviour>,
    refused: Vec<String>,
    down: bool,
    recording_absent: bool,
    recording: Vec<(u64, String)>,
    messages: Vec<Message>,
    inbox: Vec<Received>,
    events: Vec<RestEvent>,
}

/// The fake Twilio account: REST state, the handset's inbox, and what changed since the
/// carrier last looked.
#[derive(Debug, Clone)]
pub struct FakeTwilio {
    account: String,
    token: String,
    clock: FakeClock,
    state: Arc<Mutex<Shared>>,
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        format!(
            r#"{{"code": {code}, "message": "{message}", "more_info": "https://www.twilio.com/docs/errors/{code}", "status": {}}}"#,
            status.as_u16()
        ),
    )
        .into_response()
}

impl FakeTwilio {
    /// A fake account `account` with auth token `token`, timed by `clock`.
    pub fn new(account: &str, token: &str, clock: FakeClock) -> Self {
        FakeTwilio {
            account: account.to_string(),
            token: token.to_string(),
            clock,
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the n-th message (from 0) is treated; the last entry applies to all later ones.
    pub fn set_sms(&self, behaviours: Vec<SmsBehaviour>) {
        self.lock().behaviours = behaviours;
    }

    /// Numbers Twilio refuses with 21614 ("not a valid mobile number").
    pub fn refuse(&self, number: &str) {
        self.lock().refused.push(number.to_string());
    }

    /// The Messages API answers HTTP 500 (Twilio error 20500) while `down`.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Calls have no recording to pause (Twilio answers 404).
    pub fn set_recording_absent(&self, absent: bool) {
        self.lock().recording_absent = absent;
    }

    /// Every recording state change so far: (simulated ms, status).
    pub fn recording_changes(&self) -> Vec<(u64, String)> {
        self.lock().recording.clone()
    }

    /// The recording state now: `in-progress` unless the last change said otherwise.
    pub fn recording_state(&self) -> String {
        self.lock()
            .recording
            .last()
            .map_or_else(|| "in-progress".to_string(), |(_, s)| s.clone())
    }

    /// Messages on the handset, oldest first.
    pub fn inbox(&self) -> Vec<Received> {
        self.lock().inbox.clone()
    }

    /// Messages Twilio accepted so far (delivered or not).
    pub fn accepted(&self) -> usize {
        self.lock().messages.len()
    }

    /// When the next message falls due (delivery or failure), if one is pending.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.lock()
            .messages
            .iter()
            .filter(|m| !m.done)
            .map(|m| m.due_ms)
            .min()
    }

    /// Takes the events since the last call.
    pub fn drain_events(&self) -> Vec<RestEvent> {
        std::mem::take(&mut self.lock().events)
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.account, self.token));
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Basic {expected}"))
    }

    /// The REST routes, to serve on a local port.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(messages),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{sid}",
                post(recording),
            )
            .with_state(self.clone())
    }

    /// Delivers (or fails) every message whose time has come, putting it in the inbox and
    /// sending its signed delivery report. Returns how many reports were sent.
    pub async fn deliver_due(&self, http: &reqwest::Client) -> usize {
        let now = self.clock.now_ms();
        let mut reports: Vec<(String, Vec<(String, String)>)> = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            for m in st
                .messages
                .iter_mut()
                .filter(|m| !m.done && m.due_ms <= now)
            {
                m.done = true;
                let (status, code) = match &m.outcome {
                    Delivery::Delivered => {
                        let r = Received {
                            channel: "sms",
                            to: m.to.clone(),
                            body: m.body.clone(),
                            at_ms: now,
                        };
                        st.inbox.push(r.clone());
                        st.events.push(RestEvent::Arrived(r));
                        ("delivered", None)
                    }
                    Delivery::Failed(c) => ("failed", Some(*c)),
                    Delivery::Undelivered(c) => ("undelivered", Some(*c)),
                    Delivery::Lost => continue,
                };
                if code.is_some() {
                    st.events.push(RestEvent::NotDelivered {
                        to: m.to.clone(),
                        status: status.to_string(),
                    });
                }
                if let Some(url) = &m.callback {
                    let mut params = vec![
                        ("AccountSid".to_string(), self.account.clone()),
                        ("ApiVersion".to_string(), "2010-04-01".to_string()),
                        ("From".to_string(), "+15005550006".to_string()),
                        ("MessageSid".to_string(), m.sid.clone()),
                        ("MessageStatus".to_string(), status.to_string()),
                        ("SmsSid".to_string(), m.sid.clone()),
                        ("SmsStatus".to_string(), status.to_string()),
                        ("To".to_string(), m.to.clone()),
                    ];
                    if let Some(c) = code {
                        params.push(("ErrorCode".to_string(), c.to_string()));
                    }
                    reports.push((url.clone(), params));
                }
            }
        }
        let sent = reports.len();
        for (url, params) in reports {
            let signature = crate::carrier::sign(&self.token, &url, &params);
            let result = http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header(resetline_twiml::signature::HEADER_NAME, signature)
                .body(resetline_twiml::params::serialize(&params))
                .send()
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "delivery report not delivered");
            }
        }
        sent
    }

    fn mail(&self, to: &str, body: String) {
        let r = Received {
            channel: "email",
            to: to.to_string(),
            body,
            at_ms: self.clock.now_ms(),
        };
        let mut st = self.lock();
        st.inbox.push(r.clone());
        st.events.push(RestEvent::Arrived(r));
    }
}

async fn messages(
    State(fake): State<FakeTwilio>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if account != fake.account || !fake.authorised(&headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form = resetline_twiml::params::parse_owned(body.as_bytes());
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let Some(to) = get("To") else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    let mut st = fake.lock();
    if st.down {
        return twilio_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        );
    }
    if st.refused.contains(&to) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21614,
            "The 'To' number is not a valid mobile number.",
        );
    }
    let n = st.messages.len();
    let behaviour = st
        .behaviours
        .get(n)
        .or(st.behaviours.last())
        .cloned()
        .unwrap_or_default();
    let sid = format!("SM{n:032x}");
    let delay = u64::try_from(behaviour.delay.as_millis()).unwrap_or(u64::MAX);
    st.messages.push(Message {
        sid: sid.clone(),
        to: to.clone(),
        body: get("Body").unwrap_or_default(),
        callback: get("StatusCallback"),
        due_ms: fake.clock.now_ms().saturating_add(delay),
        outcome: behaviour.outcome,
        done: false,
    });
    drop(st);
    let json = format!(
        r#"{{"sid": "{sid}", "account_sid": "{}", "api_version": "2010-04-01", "direction": "outbound-api", "status": "queued", "to": "{to}", "num_segments": "1", "num_media": "0", "error_code": null, "error_message": null}}"#,
        fake.account
    );
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        json,
    )
        .into_response()
}

async fn recording(
    State(fake): State<FakeTwilio>,
    Path((account, _call, sid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if account != fake.account || !fake.authorised(&headers) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if !sid.ends_with(".json") {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let status = resetline_twiml::params::parse_owned(body.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "Status")
        .map(|(_, v)| v);
    let Some(status) =
        status.filter(|s| matches!(s.as_str(), "paused" | "in-progress" | "stopped"))
    else {
        return twilio_error(StatusCode::BAD_REQUEST, 20001, "Status is required");
    };
    let mut st = fake.lock();
    if st.recording_absent {
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    st.recording.push((fake.clock.now_ms(), status.clone()));
    st.events.push(RestEvent::Recording(status.clone()));
    drop(st);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        format!(
            r#"{{"sid": "RE0123456789abcdef0123456789abcdef", "status": "{status}", "source": "StartCallRecordingAPI", "track": "both", "channels": 1}}"#
        ),
    )
        .into_response()
}

/// Email for the simulated caller: puts the message in the fake's inbox (there is no Twilio
/// API for email; this stands in for the SMTP connector).
#[derive(Debug, Clone)]
pub struct Mailbox(pub FakeTwilio);

impl Messenger for Mailbox {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        Box::pin(async move {
            let text = format!("{}: {}", message.subject, message.body.expose());
            self.0.mail(&message.to, text);
            Ok(SentMessage {
                id: format!("email-{}", self.0.lock().inbox.len()),
            })
        })
    }
}
