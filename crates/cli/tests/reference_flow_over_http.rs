//! The reference flow end to end over real HTTP with the real connectors: the server on a
//! bound port, the embedded directory on a temporary users file, and local fakes of the Twilio
//! REST API (Recordings, Messages) and the ServiceNow Table API that record every request
//! (paths, auth headers, bodies) and answer with the documented shapes (protocol.md §5-6).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{patch, post};
use resetline_connectors::{
    EmbeddedDirectory, ServiceNowAuth, ServiceNowTickets, SmsSender, TwilioMessages,
    TwilioRecording,
};
use resetline_engine::testing::MemoryAudit;
use resetline_engine::{Directory, Engine, OsRandom, Secret, SystemClock};
use resetline_server::{AppState, Registry, app};
use resetline_store::{MemoryCounters, MemoryLockouts, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    path: String,
    auth: String,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn seen(log: &Log, method: &'static str, path: String, headers: &HeaderMap, body: String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Ok(mut l) = log.lock() {
        l.push(Seen {
            method,
            path,
            auth,
            body,
        });
    }
}

fn providers(log: Log) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{rec}",
            post(|State(log): State<Log>, Path((account, call, rec)): Path<(String, String, String)>, headers: HeaderMap, body: String| async move {
                seen(&log, "POST", format!("/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{rec}"), &headers, body);
                (StatusCode::OK, [("content-type", "application/json")], r#"{"sid":"RE0123456789abcdef0123456789abcdef","status":"paused","source":"StartCallRecordingAPI"}"#)
            }),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(|State(log): State<Log>, Path(account): Path<String>, headers: HeaderMap, body: String| async move {
                let n = log.lock().map(|l| l.len()).unwrap_or(0);
                seen(&log, "POST", format!("/2010-04-01/Accounts/{account}/Messages.json"), &headers, body);
                let sid = format!("SM{n:032}");
                (StatusCode::CREATED, [("content-type", "application/json")], format!(r#"{{"sid":"{sid}","status":"queued","direction":"outbound-api","error_code":null}}"#)).into_response()
            }),
        )
        .route(
            "/api/now/table/incident",
            post(|State(log): State<Log>, headers: HeaderMap, body: String| async move {
                seen(&log, "POST", "/api/now/table/incident".into(), &headers, body);
                (StatusCode::CREATED, [("content-type", "application/json")], r#"{"result":{"number":"INC0010001","sys_id":"9d385017c611228701d22104cc95c371"}}"#)
            }),
        )
        .route(
            "/api/now/table/incident/{id}",
            patch(|State(log): State<Log>, Path(id): Path<String>, headers: HeaderMap, body: String| async move {
                seen(&log, "PATCH", format!("/api/now/table/incident/{id}"), &headers, body);
                (StatusCode::OK, [("content-type", "application/json")], r#"{"result":{"number":"INC0010001","state":"7"}}"#)
            }),
        )
        .with_state(log)
}

fn form_value(body: &str, key: &str) -> Option<String> {
    let params = resetline_twiml::params::parse(body.as_bytes(), 65_536).ok()?;
    params.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

async fn post_webhook(
    addr: std::net::SocketAddr,
    public: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig =
        resetline_twiml::signature::compute(TOKEN.as_bytes(), &format!("{public}{path}"), &owned);
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_by_sms_with_real_connectors_against_local_fakes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let log: Log = Arc::default();
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let fake_url = format!("http://{}", fake.local_addr().expect("addr"));
    tokio::spawn(axum::serve(fake, providers(log.clone())).into_future());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let public = format!("http://{addr}");

    let scratch = tempfile::tempdir().expect("tempdir");
    let users = scratch.path().join("users.yaml");
    std::fs::copy(root.join("examples/demo/users.yaml"), &users).expect("copy users");
    let directory = Arc::new(EmbeddedDirectory::load(&users).expect("users"));
    let recording = TwilioRecording::new(ACCOUNT, Secret::new(TOKEN))
        .and_then(|r| r.with_base_url(&fake_url))
        .expect("recording");
    let sms = TwilioMessages::new(
        ACCOUNT,
        Secret::new(TOKEN),
        SmsSender::From("+15555550000".into()),
    )
    .and_then(|m| m.with_base_url(&fake_url))
    .and_then(|m| m.with_public_url(&public))
    .expect("messages");
    let tickets = ServiceNowTickets::new(
        &fake_url,
        ServiceNowAuth::Basic {
            user: "resetline".into(),
            password: Secret::new("sn-password"),
        },
    )
    .expect("tickets");
    let clock = Arc::new(SystemClock);
    let audit = Arc::new(MemoryAudit::default());
    let engine = Engine {
        catalogs: Arc::new(Default::default()),
        directory: directory.clone(),
        recording: Arc::new(recording),
        messenger: Arc::new(sms),
        tickets: Arc::new(tickets),
        http: Arc::new(resetline_engine::testing::NoHttp),
        counters: Arc::new(MemoryCounters::new(clock.clone())),
        limits: Default::default(),
        lockouts: Arc::new(MemoryLockouts::new()),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        hash_key: Arc::new(Secret::new("k".repeat(32))),
        budget: Duration::from_secs(4),
        step_budget: Duration::from_secs(12),
    };
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root.join("flows"), &root.join("voice-prompts"));
    let store = Arc::new(MemoryStore::new(clock, 100));
    let state = AppState::new(
        &public,
        Secret::new(TOKEN),
        engine,
        registry,
        store,
        audit.clone(),
        root.join("voice-prompts"),
    );
    tokio::spawn(axum::serve(listener, app(state)).into_future());

    let base = "/voice/password-reset";
    let resp = post_webhook(
        addr,
        &public,
        base,
        &[
            ("CallSid", SID),
            ("AccountSid", ACCOUNT),
            ("From", "+15555550100"),
            ("To", "+15555550000"),
        ],
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    post_webhook(
        addr,
        &public,
        &format!("{base}/step/1"),
        &[("CallSid", SID), ("Digits", "1")],
    )
    .await;
    post_webhook(
        addr,
        &public,
        &format!("{base}/step/2"),
        &[("CallSid", SID), ("Digits", "100001")],
    )
    .await;
    let resp = post_webhook(
        addr,
        &public,
        &format!("{base}/step/3"),
        &[("CallSid", SID), ("Digits", "1")],
    )
    .await;
    assert!(
        resp.contains(
            "We sent a code to the number ending in <say-as interpret-as=\"digits\">0199</say-as>."
        ),
        "{resp}"
    );

    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let sms = requests
        .iter()
        .find(|r| r.path.ends_with("/Messages.json"))
        .expect("an SMS request");
    assert_eq!(
        sms.path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    );
    assert!(sms.auth.starts_with("Basic "), "HTTP Basic auth");
    assert_eq!(form_value(&sms.body, "To").as_deref(), Some("+15555550199"));
    assert_eq!(
        form_value(&sms.body, "From").as_deref(),
        Some("+15555550000")
    );
    assert_eq!(
        form_value(&sms.body, "StatusCallback"),
        Some(format!("{public}/sms/status?call={SID}"))
    );
    let text = form_value(&sms.body, "Body").expect("body");
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("6-digit code")
        .to_string();

    post_webhook(
        addr,
        &public,
        &format!("{base}/step/4"),
        &[("CallSid", SID), ("Digits", &code)],
    )
    .await;
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let pause = requests
        .iter()
        .find(|r| r.path.contains("/Recordings/"))
        .expect("a recording pause");
    assert_eq!(
        pause.path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{SID}/Recordings/Twilio.CURRENT.json")
    );
    assert_eq!(form_value(&pause.body, "Status").as_deref(), Some("paused"));
    post_webhook(
        addr,
        &public,
        &format!("{base}/step/5"),
        &[("CallSid", SID), ("Digits", "58204617")],
    )
    .await;
    let resp = post_webhook(
        addr,
        &public,
        &format!("{base}/step/6"),
        &[("CallSid", SID), ("Digits", "58204617")],
    )
    .await;
    assert!(
        resp.contains("Your PIN has been changed. Goodbye.</Say><Hangup />"),
        "{resp}"
    );

    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let order: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.method,
                r.path.rsplit('/').next().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            "POST Messages.json",
            "POST Twilio.CURRENT.json",
            "POST Twilio.CURRENT.json",
            "POST Messages.json",
            "POST incident",
            "PATCH 9d385017c611228701d22104cc95c371"
        ]
    );
    let resume = &requests[2];
    assert_eq!(
        form_value(&resume.body, "Status").as_deref(),
        Some("in-progress")
    );
    let notice = form_value(&requests[3].body, "Body").unwrap_or_default();
    assert!(
        notice.starts_with("Your service desk PIN was changed") && !notice.contains("58204617"),
        "{notice}"
    );
    let incident = &requests[4];
    assert!(
        incident
            .body
            .contains("\"correlation_id\":\"CA0123456789abcdef0123456789abcdef\""),
        "{}",
        incident.body
    );
    assert!(incident.auth.starts_with("Basic "));
    assert!(
        requests[5].body.contains("\"state\":\"7\""),
        "{}",
        requests[5].body
    );

    // The users file now holds the new PIN's hash (and no plaintext), and it verifies.
    let file = std::fs::read_to_string(&users).expect("users");
    assert!(!file.contains("58204617"));
    assert!(
        directory
            .verify_pin("100001", &Secret::new("58204617"))
            .await
            .expect("verify")
    );
    let events: Vec<String> = audit
        .records()
        .iter()
        .map(|e| e.event.as_str().to_string())
        .collect();
    assert!(
        events.contains(&"authn_password_change".to_string())
            && events.contains(&"call_ended".to_string()),
        "{events:?}"
    );
}

/// A minimal SMTP sink on 127.0.0.1: greeting, EHLO, MAIL, RCPT, DATA, QUIT; keeps each
/// message's recipients and data.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind smtp");
    let port = listener.local_addr().expect("addr").port();
    let mail: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let kept = mail.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let (mut rcpt, mut line) = (String::new(), String::new());
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt = line.trim_end()[8..].to_string();
                        b"250 Ok\r\n"
                    } else if upper == "DATA" {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            if lines.read_line(&mut l).await.unwrap_or(0) == 0 || l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        if let Ok(mut m) = kept.lock() {
                            m.push((rcpt.clone(), data));
                        }
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 Ok\r\n"
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, mail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_by_email_code_through_an_smtp_sink() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let log: Log = Arc::default();
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let fake_url = format!("http://{}", fake.local_addr().expect("addr"));
    tokio::spawn(axum::serve(fake, providers(log.clone())).into_future());
    let (smtp_port, mail) = smtp_sink().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let public = format!("http://{addr}");
    let scratch = tempfile::tempdir().expect("tempdir");
    let users = scratch.path().join("users.yaml");
    std::fs::copy(root.join("examples/demo/users.yaml"), &users).expect("copy users");
    let mailer = resetline_connectors::SmtpMailer::new(
        "127.0.0.1",
        smtp_port,
        resetline_connectors::SmtpTls::None,
        "Service Desk <desk@example.com>",
    )
    .expect("mailer");
    let sms = TwilioMessages::new(
        ACCOUNT,
        Secret::new(TOKEN),
        SmsSender::From("+15555550000".into()),
    )
    .and_then(|m| m.with_base_url(&fake_url))
    .expect("sms");
    let clock = Arc::new(SystemClock);
    let engine = Engine {
        catalogs: Arc::new(Default::default()),
        directory: Arc::new(EmbeddedDirectory::load(&users).expect("users")),
        recording: Arc::new(
            TwilioRecording::new(ACCOUNT, Secret::new(TOKEN))
                .and_then(|r| r.with_base_url(&fake_url))
                .expect("recording"),
        ),
        messenger: Arc::new(
            resetline_connectors::ByChannel::new()
                .sms(Arc::new(sms))
                .email(Arc::new(mailer)),
        ),
        tickets: Arc::new(
            ServiceNowTickets::new(&fake_url, ServiceNowAuth::Bearer(Secret::new("sn-token")))
                .expect("tickets"),
        ),
        http: Arc::new(resetline_engine::testing::NoHttp),
        counters: Arc::new(MemoryCounters::new(clock.clone())),
        limits: Default::default(),
        lockouts: Arc::new(MemoryLockouts::new()),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        hash_key: Arc::new(Secret::new("k".repeat(32))),
        budget: Duration::from_secs(4),
        step_budget: Duration::from_secs(12),
    };
    let registry = Arc::new(Registry::default());
    registry.load_dir(&root.join("flows"), &root.join("voice-prompts"));
    let state = AppState::new(
        &public,
        Secret::new(TOKEN),
        engine,
        registry,
        Arc::new(MemoryStore::new(clock, 100)),
        Arc::new(MemoryAudit::default()),
        root.join("voice-prompts"),
    );
    tokio::spawn(axum::serve(listener, app(state)).into_future());

    let base = "/voice/password-reset";
    post_webhook(
        addr,
        &public,
        base,
        &[("CallSid", SID), ("From", "+15555550100")],
    )
    .await;
    post_webhook(
        addr,
        &public,
        &format!("{base}/step/1"),
        &[("CallSid", SID), ("Digits", "1")],
    )
    .await;
    post_webhook(
        addr,
        &public,
        &format!("{base}/step/2"),
        &[("CallSid", SID), ("Digits", "100001")],
    )
    .await;
    let resp = post_webhook(
        addr,
        &public,
        &format!("{base}/step/3"),
        &[("CallSid", SID), ("Digits", "2")],
    )
    .await;
    assert!(
        resp.contains("We sent a code to your email address on file."),
        "{resp}"
    );
    let (rcpt, data) = mail.lock().map(|m| m[0].clone()).expect("one message");
    assert_eq!(rcpt, "<alex.rivera@example.com>");
    assert!(
        data.contains("Subject: Your service desk verification code"),
        "{data}"
    );
    let after = data
        .split("verification code is ")
        .nth(1)
        .expect("the code sentence in the body");
    let code: String = after.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{data}");
    let resp = post_webhook(
        addr,
        &public,
        &format!("{base}/step/4"),
        &[("CallSid", SID), ("Digits", &code)],
    )
    .await;
    assert!(resp.contains("Please enter your new PIN"), "{resp}");
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        requests.iter().all(|r| !r.path.ends_with("Messages.json")),
        "no SMS on the email path"
    );
}
