//! Test doubles for the backend traits, shared by the engine's, the server's and the
//! simulator's tests (and usable by anyone embedding the engine). They record every call so a
//! test can assert order and count ("paused before the first secret prompt", "one lookup for
//! a retried webhook"). Not for production: the directory keeps PINs in memory.

use std::sync::Mutex;
use std::time::Duration;

use resetline_flow::model::LookupBy;

use crate::backend::{
    Account, AccountState, BackendError, BoxFuture, Directory, Recording, RecordingAck,
    RecordingChange, SetSecretError,
};
use crate::secret::Secret;

/// The path (from `/voice/` on, `&amp;` decoded) of the first action URL in an answer as the
/// server renders it (a `<Gather>`'s `action`): where a test posts the caller's next input.
/// Step tokens are random, so tests follow the answers as a carrier does.
pub fn next_action(answer: &str) -> Option<String> {
    answer
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|a| a.find("/voice/").map(|i| a[i..].replace("&amp;", "&")))
}

/// `text` with every step token (`/step/<digits>`) shown as `N`: a random token's digits may
/// happen to contain a marker a test looks for.
pub fn mask_step_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("/step/") {
        out.push_str(&rest[..at + 6]);
        rest = rest[at + 6..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// A shared, ordered log of backend calls.
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Vec<String>>);

impl CallLog {
    /// Appends an entry.
    pub fn push(&self, entry: impl Into<String>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(entry.into());
        }
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// How many entries start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.entries()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

/// One account in a [`MemoryDirectory`].
#[derive(Debug, Clone)]
pub struct MemoryUser {
    /// The account.
    pub account: Account,
    /// Its PIN.
    pub pin: Secret,
}

/// An in-memory directory. Logs `find <value>`, `verify <id>`, `set <id>`.
#[derive(Debug)]
pub struct MemoryDirectory {
    users: Mutex<Vec<MemoryUser>>,
    log: std::sync::Arc<CallLog>,
    delay: Duration,
    reject: Option<(String, String)>,
    pin_checks: PinChecks,
}

/// How a [`MemoryDirectory`] answers PIN checks.
#[derive(Debug, Clone, Copy)]
enum PinChecks {
    /// Against the stored PIN.
    Answer,
    /// Every check fails like an outage (or a busy hash pool) before any comparison.
    Fail,
    /// Every check waits this long first (a slow bind, a queue for the hash pool).
    Wait(Duration),
}

impl MemoryDirectory {
    /// A directory with `users`, logging to `log`.
    pub fn new(users: Vec<MemoryUser>, log: std::sync::Arc<CallLog>) -> Self {
        MemoryDirectory {
            users: Mutex::new(users),
            log,
            delay: Duration::ZERO,
            reject: None,
            pin_checks: PinChecks::Answer,
        }
    }

    /// Every PIN check fails like a directory outage (or a busy hash pool), never comparing.
    pub fn failing_pin_checks(mut self) -> Self {
        self.pin_checks = PinChecks::Fail;
        self
    }

    /// Every PIN check waits `delay` before it compares (lookups stay fast).
    pub fn slow_pin_checks(mut self, delay: Duration) -> Self {
        self.pin_checks = PinChecks::Wait(delay);
        self
    }

    /// Every new secret is refused like a directory's HTTP 400 policy error: `prompt` is the
    /// spoken reason's catalog key, `reason` the backend's text (`{secret}` in it is replaced
    /// by the refused value, like a directory that quotes it).
    pub fn rejecting(mut self, prompt: &str, reason: &str) -> Self {
        self.reject = Some((prompt.to_string(), reason.to_string()));
        self
    }

    /// Every new secret fails like a directory outage (`reason` for the logs).
    pub fn failing_set_secret(mut self, reason: &str) -> Self {
        self.reject = Some((String::new(), reason.to_string()));
        self
    }

    /// Every call waits `delay` first (to exercise time budgets).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The demo-style user `1004217` (Dana Reyes, +15555550199, PIN 27182818).
    pub fn dana() -> MemoryUser {
        MemoryUser {
            account: Account {
                id: "1004217".into(),
                name: "Dana Reyes".into(),
                mobile: Some("+15555550199".into()),
                email: Some("dana@example.com".into()),
                state: AccountState::Active,
                allow_phone_reset: true,
                birth_date: Some("1984-07-21".into()),
            },
            pin: Secret::new("27182818"),
        }
    }
}

impl MemoryDirectory {
    /// The simulated directory latency (no timer round at all when it is zero).
    async fn latency(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Directory for MemoryDirectory {
    fn find<'a>(
        &'a self,
        by: LookupBy,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, BackendError>> {
        Box::pin(async move {
            self.log.push(format!("find {value}"));
            self.latency().await;
            let users = self
                .users
                .lock()
                .map_err(|_| BackendError::new("directory", "poisoned"))?;
            Ok(users
                .iter()
                .find(|u| match by {
                    LookupBy::EmployeeId | LookupBy::Username => u.account.id == value,
                    LookupBy::Phone => u.account.mobile.as_deref() == Some(value),
                    LookupBy::Email => u.account.email.as_deref() == Some(value),
                })
                .map(|u| u.account.clone()))
        })
    }

    fn verify_pin<'a>(
        &'a self,
        account: &'a str,
        pin: &'a Secret,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            self.log.push(format!("verify {account}"));
            self.latency().await;
            match self.pin_checks {
                PinChecks::Answer => {}
                PinChecks::Fail => return Err(BackendError::new("directory", "HTTP 503")),
                PinChecks::Wait(delay) => tokio::time::sleep(delay).await,
            }
            let users = self
                .users
                .lock()
                .map_err(|_| BackendError::new("directory", "poisoned"))?;
            Ok(users
                .iter()
                .any(|u| u.account.id == account && u.pin.ct_eq(pin)))
        })
    }

    fn set_secret<'a>(
        &'a self,
        account: &'a str,
        secret: &'a Secret,
    ) -> BoxFuture<'a, Result<(), SetSecretError>> {
        Box::pin(async move {
            self.log.push(format!("set {account}"));
            self.latency().await;
            if let Some((prompt, reason)) = &self.reject {
                // `{secret}` in the reason echoes the refused value, as some directories do.
                let reason = reason.replace("{secret}", secret.expose());
                if prompt.is_empty() {
                    return Err(SetSecretError::Backend(BackendError::new(
                        "directory",
                        reason,
                    )));
                }
                return Err(SetSecretError::Rejected {
                    prompt: prompt.clone(),
                    reason,
                });
            }
            let mut users = self
                .users
                .lock()
                .map_err(|_| SetSecretError::Backend(BackendError::new("directory", "poisoned")))?;
            match users.iter_mut().find(|u| u.account.id == account) {
                Some(u) if u.account.state == AccountState::Locked => Err(SetSecretError::Locked),
                Some(u) => {
                    u.pin = secret.clone();
                    Ok(())
                }
                None => Err(SetSecretError::Backend(BackendError::new(
                    "directory",
                    "no such account",
                ))),
            }
        })
    }
}

/// Recording control that answers as told. Logs `recording Pause { .. }` / `recording Resume`.
#[derive(Debug)]
pub struct ScriptedRecording {
    log: std::sync::Arc<CallLog>,
    answer: Result<RecordingAck, BackendError>,
}

impl ScriptedRecording {
    /// Every change is acknowledged.
    pub fn ok(log: std::sync::Arc<CallLog>) -> Self {
        ScriptedRecording {
            log,
            answer: Ok(RecordingAck::Done),
        }
    }

    /// Every change fails like an HTTP 500 from the carrier.
    pub fn failing(log: std::sync::Arc<CallLog>) -> Self {
        ScriptedRecording {
            log,
            answer: Err(BackendError::new("recording", "HTTP 500")),
        }
    }
}

impl Recording for ScriptedRecording {
    fn change<'a>(
        &'a self,
        _call_sid: &'a str,
        change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        let answer = self.answer.clone();
        Box::pin(async move {
            self.log.push(format!("recording {change:?}"));
            answer
        })
    }
}

/// A sent message as the [`MemoryMessenger`] recorded it. Test-only: it keeps the body.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Channel.
    pub channel: resetline_flow::model::Channel,
    /// Destination.
    pub to: String,
    /// The body (a test reads the code from it).
    pub body: Secret,
    /// The delivery-report URL given.
    pub status_callback: Option<String>,
    /// The id returned.
    pub id: String,
}

/// A messenger that records what it sends. Destinations in `refuse` are refused as Twilio
/// refuses invalid numbers (21211). Logs `send <to>`.
#[derive(Debug)]
pub struct MemoryMessenger {
    log: std::sync::Arc<CallLog>,
    sent: Mutex<Vec<Recorded>>,
    refuse: Vec<String>,
    down: bool,
}

impl MemoryMessenger {
    /// A messenger logging to `log`.
    pub fn new(log: std::sync::Arc<CallLog>) -> Self {
        MemoryMessenger {
            log,
            sent: Mutex::new(Vec::new()),
            refuse: Vec::new(),
            down: false,
        }
    }

    /// Refuses messages to `to` as undeliverable.
    pub fn refusing(mut self, to: &str) -> Self {
        self.refuse.push(to.to_string());
        self
    }

    /// Every send fails like a provider outage.
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }

    /// Messages sent so far.
    pub fn sent(&self) -> Vec<Recorded> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The digits of the last message's first run of 6 or more digits (the code).
    pub fn last_code(&self) -> Option<String> {
        let last = self.sent().pop()?;
        let body = last.body.expose().to_string();
        body.split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() >= 6)
            .map(str::to_string)
    }
}

impl crate::backend::Messenger for MemoryMessenger {
    fn send(
        &self,
        message: crate::backend::OutgoingMessage,
    ) -> BoxFuture<'_, Result<crate::backend::SentMessage, crate::backend::SendError>> {
        Box::pin(async move {
            self.log.push(format!("send {}", message.to));
            if self.down {
                return Err(crate::backend::SendError::Backend(BackendError::new(
                    "messages", "HTTP 503",
                )));
            }
            if self.refuse.contains(&message.to) {
                return Err(crate::backend::SendError::Undeliverable {
                    code: Some(21211),
                    reason: "invalid number".into(),
                });
            }
            let mut sent = self.sent.lock().map_err(|_| {
                crate::backend::SendError::Backend(BackendError::new("messages", "poisoned"))
            })?;
            let id = format!("SM{:032}", sent.len() + 1);
            sent.push(Recorded {
                channel: message.channel,
                to: message.to,
                body: message.body,
                status_callback: message.status_callback,
                id: id.clone(),
            });
            Ok(crate::backend::SentMessage { id })
        })
    }
}

/// Tickets numbered `INC0000001`...; `down()` makes every call fail. Logs `ticket open` and
/// `ticket close <number>`.
#[derive(Debug)]
pub struct MemoryTickets {
    log: std::sync::Arc<CallLog>,
    next: Mutex<u32>,
    down: std::sync::atomic::AtomicBool,
}

impl MemoryTickets {
    /// A working ticket system.
    pub fn new(log: std::sync::Arc<CallLog>) -> Self {
        MemoryTickets {
            log,
            next: Mutex::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A ticket system that is down.
    pub fn down(self) -> Self {
        self.set_down(true);
        self
    }

    /// Takes the ticket system down (`true`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::Relaxed);
    }
}

impl crate::backend::Tickets for MemoryTickets {
    fn open(
        &self,
        _ticket: crate::backend::NewTicket,
    ) -> BoxFuture<'_, Result<crate::backend::TicketRef, BackendError>> {
        Box::pin(async move {
            self.log.push("ticket open");
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(BackendError::new("tickets", "HTTP 503"));
            }
            let mut n = self
                .next
                .lock()
                .map_err(|_| BackendError::new("tickets", "poisoned"))?;
            *n += 1;
            let number = format!("INC{:07}", *n);
            tracing::info!(ticket = %number, "in-memory ticket opened");
            Ok(crate::backend::TicketRef {
                number,
                id: format!("sys{}", *n),
            })
        })
    }

    fn close<'a>(
        &'a self,
        ticket: &'a crate::backend::TicketRef,
        _note: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.log.push(format!("ticket close {}", ticket.number));
            tracing::info!(ticket = %ticket.number, "in-memory ticket closed");
            Ok(())
        })
    }
}

/// Counters that count nothing and allow everything (for tests that do not exercise caps).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounters;

impl crate::backend::Counters for NoCounters {
    fn hit<'a>(
        &'a self,
        _key: &'a str,
        _window_ms: u64,
        _limit: u32,
    ) -> BoxFuture<'a, Result<bool, crate::backend::StoreError>> {
        Box::pin(async { Ok(true) })
    }
}

/// A counter store that is down: every hit fails (`failing`) or never answers (`hanging`,
/// so the engine's budget must end it). Logs `counter <key>`.
#[derive(Debug)]
pub struct BrokenCounters {
    log: std::sync::Arc<CallLog>,
    hang: bool,
}

impl BrokenCounters {
    /// Every hit fails at once, like a refused connection.
    pub fn failing(log: std::sync::Arc<CallLog>) -> Self {
        BrokenCounters { log, hang: false }
    }

    /// Every hit waits forever, like a store that accepted the connection and went silent.
    pub fn hanging(log: std::sync::Arc<CallLog>) -> Self {
        BrokenCounters { log, hang: true }
    }
}

impl crate::backend::Counters for BrokenCounters {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        _window_ms: u64,
        _limit: u32,
    ) -> BoxFuture<'a, Result<bool, crate::backend::StoreError>> {
        Box::pin(async move {
            self.log.push(format!("counter {key}"));
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(crate::backend::StoreError::Backend(BackendError::new(
                "counters",
                "connection refused",
            )))
        })
    }
}

/// An audit sink that keeps records in memory (tests; the demo and `serve` write files).
/// `failing()` makes every write fail, to test that calls go on and readiness drops;
/// `set_failing` switches that on and off (a sink that fails, then recovers). Like the real
/// sinks it writes a record id once: a retried record is not kept twice.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<resetline_audit::Record>>,
    fail: std::sync::atomic::AtomicBool,
}

impl MemoryAudit {
    /// A sink whose every write fails.
    pub fn failing() -> Self {
        let sink = MemoryAudit::default();
        sink.set_failing(true);
        sink
    }

    /// Makes writes fail (`true`) or succeed again.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records appended so far.
    pub fn records(&self) -> Vec<resetline_audit::Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn fails(&self) -> bool {
        self.fail.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl crate::backend::AuditSink for MemoryAudit {
    fn append(
        &self,
        records: Vec<resetline_audit::Record>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if self.fails() {
                return Err(BackendError::new("audit", "disk full"));
            }
            let mut kept = self
                .records
                .lock()
                .map_err(|_| BackendError::new("audit", "poisoned"))?;
            for record in records {
                let seen = record.id.is_some() && kept.iter().any(|r| r.id == record.id);
                if !seen {
                    kept.push(record);
                }
            }
            Ok(())
        })
    }

    fn healthy(&self) -> bool {
        !self.fails()
    }

    fn open_intents(&self) -> BoxFuture<'_, Result<Vec<resetline_audit::Record>, BackendError>> {
        let mut open = resetline_audit::OpenIntents::default();
        for (seq, record) in self.records().iter().enumerate() {
            open.see(seq as u64 + 1, record);
        }
        Box::pin(async move { Ok(open.open()) })
    }
}

/// HTTP data actions when none are configured: every call is refused, so `http` nodes take
/// their error path.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHttp;

impl crate::backend::HttpActions for NoHttp {
    fn call(
        &self,
        _request: crate::backend::HttpRequest,
    ) -> BoxFuture<'_, Result<crate::backend::HttpResponse, crate::backend::HttpError>> {
        Box::pin(async {
            Err(crate::backend::HttpError::Refused(BackendError::new(
                "http",
                "no HTTP data action backend is configured",
            )))
        })
    }
}

/// One scripted answer of [`ScriptedHttp`].
#[derive(Debug, Clone)]
pub enum HttpReply {
    /// A status and a JSON body (`Null` for none).
    Answer(u16, serde_json::Value),
    /// A failure.
    Error(crate::backend::HttpError),
    /// Never answers (the engine's budget must end the try).
    Hang,
}

/// HTTP data actions answering from a script (the last reply repeats) and keeping every
/// request, bodies included (tests only). Logs `http <METHOD> <url>`.
#[derive(Debug)]
pub struct ScriptedHttp {
    log: std::sync::Arc<CallLog>,
    replies: Mutex<Vec<HttpReply>>,
    seen: Mutex<Vec<crate::backend::HttpRequest>>,
}

impl ScriptedHttp {
    /// Answers with `replies` in order.
    pub fn new(log: std::sync::Arc<CallLog>, replies: Vec<HttpReply>) -> Self {
        ScriptedHttp {
            log,
            replies: Mutex::new(replies),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<crate::backend::HttpRequest> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl crate::backend::HttpActions for ScriptedHttp {
    fn call(
        &self,
        request: crate::backend::HttpRequest,
    ) -> BoxFuture<'_, Result<crate::backend::HttpResponse, crate::backend::HttpError>> {
        Box::pin(async move {
            self.log
                .push(format!("http {} {}", request.method, request.url));
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request);
            }
            let reply = {
                let mut replies = self.replies.lock().map_err(|_| {
                    crate::backend::HttpError::Refused(BackendError::new("http", "poisoned"))
                })?;
                if replies.len() > 1 {
                    replies.remove(0)
                } else {
                    replies.first().cloned().unwrap_or(HttpReply::Hang)
                }
            };
            match reply {
                HttpReply::Answer(status, body) => Ok(crate::backend::HttpResponse {
                    status,
                    body: (!body.is_null()).then_some(body),
                }),
                HttpReply::Error(e) => Err(e),
                HttpReply::Hang => {
                    std::future::pending::<()>().await;
                    Err(crate::backend::HttpError::Failed(BackendError::timeout(
                        "http",
                    )))
                }
            }
        })
    }
}

/// An engine on these doubles, for tests that drive the server or a whole call: the directory
/// holds `users`, recording is acknowledged, messages and tickets stay in memory (all logging
/// to `log`), no `http` backends, no send counters, `lockouts` as given (the memory one lives
/// in `resetline-store`), a journal in memory, a fixed 32-byte hash key, 500 ms per backend
/// call and 12 s per step.
/// Change a field with struct update syntax: `Engine { counters, ..testing::engine(..) }`.
pub fn engine(
    users: Vec<MemoryUser>,
    log: &std::sync::Arc<CallLog>,
    clock: std::sync::Arc<dyn crate::Clock>,
    lockouts: std::sync::Arc<dyn crate::backend::Lockouts>,
) -> crate::Engine {
    use std::sync::Arc;
    crate::Engine {
        catalogs: Arc::new(Default::default()),
        directory: Arc::new(MemoryDirectory::new(users, log.clone())),
        recording: Arc::new(ScriptedRecording::ok(log.clone())),
        messenger: Arc::new(MemoryMessenger::new(log.clone())),
        tickets: Arc::new(MemoryTickets::new(log.clone())),
        http: Arc::new(NoHttp),
        counters: Arc::new(NoCounters),
        lockouts,
        limits: Default::default(),
        clock,
        random: Arc::new(crate::OsRandom),
        journal: Arc::new(MemoryAudit::default()),
        hash_key: Arc::new(Secret::new("k".repeat(32))),
        budget: Duration::from_millis(500),
        step_budget: Duration::from_secs(12),
    }
}
