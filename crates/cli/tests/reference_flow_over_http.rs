//! The reference flow end to end over real HTTP with the real connectors: the server on a
//! bound port, the embedded directory on a temporary users file, and local fakes of the Twilio
//! REST API (Recordings, Messages) and the ServiceNow Table API that record every request
//! (paths, auth headers, bodies) and answer with the documented shapes (protocol.md §5-6);
//! those and the SMS call itself are in `support/` (shared with `ldap_directory.rs`).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use resetline_connectors::{
    EmbeddedDirectory, ServiceNowAuth, ServiceNowTickets, SmsSender, TwilioMessages,
    TwilioRecording,
};
use resetline_engine::testing::MemoryAudit;
use resetline_engine::{Directory, Engine, OsRandom, Secret, SystemClock};
use resetline_server::{AppState, Registry, app};
use resetline_store::{MemoryCounters, MemoryLockouts, MemoryStore};
use support::{ACCOUNT, Log, SID, TOKEN, providers, smtp_sink};

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
        journal: Arc::new(resetline_engine::testing::MemoryAudit::default()),
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

    support::sms_reset_call(addr, &public, &log).await;

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
        journal: Arc::new(resetline_engine::testing::MemoryAudit::default()),
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

    let (mut call, _) = support::Call::start(addr, &public, support::BASE, SID).await;
    call.press("1").await;
    call.press("100001").await;
    let resp = call.press("2").await;
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
    let resp = call.press(&code).await;
    assert!(resp.contains("Please enter your new PIN"), "{resp}");
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        requests.iter().all(|r| !r.path.ends_with("Messages.json")),
        "no SMS on the email path"
    );
}
