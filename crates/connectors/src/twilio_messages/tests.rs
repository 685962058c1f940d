//! Tests against a fake Twilio Messages API ([`crate::fake_http`]) that records every request.

use tokio::net::TcpListener;

use super::*;
use crate::fake_http::{Fake, Reply};

const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "f00dfacef00dfacef00dfacef00dface";
/// `base64("{ACCOUNT}:{TOKEN}")`, computed independently.
const BASIC: &str = "Basic QUNhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYTpmMDBkZmFjZWYwMGRmYWNlZjAwZGZhY2VmMDBkZmFjZQ==";
const FROM: &str = "+15005550006";
const SERVICE: &str = "MGbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const TO: &str = "+15551230199";
/// A unique marker standing for a one-time code: it must never appear in an error or log.
const MARKER: &str = "Your Resetline code is 73914682";
const CALLBACK: &str = "/sms/status?call=CA0123456789abcdef0123456789abcdef";
const SID: &str = "SMcccccccccccccccccccccccccccccccc";

fn created() -> String {
    format!(
        r#"{{"sid": "{SID}", "account_sid": "{ACCOUNT}", "body": "{MARKER}", "status": "queued", "to": "{TO}", "from": "{FROM}", "direction": "outbound-api", "error_code": null}}"#
    )
}

fn sms() -> OutgoingMessage {
    OutgoingMessage {
        channel: Channel::Sms,
        to: TO.into(),
        subject: String::new(),
        body: Secret::new(MARKER),
        status_callback: Some(CALLBACK.into()),
    }
}

fn sender(fake: &Fake, sender: SmsSender) -> TwilioMessages {
    TwilioMessages::new(ACCOUNT, Secret::new(TOKEN), sender)
        .unwrap()
        .with_base_url(&fake.base())
        .unwrap()
}

fn from_number(fake: &Fake) -> TwilioMessages {
    sender(fake, SmsSender::From(FROM.into()))
        .with_public_url("https://reset.example.com/")
        .unwrap()
}

/// Every way an error can be shown.
fn shown(e: &SendError) -> String {
    match e {
        SendError::Undeliverable { reason, .. } => format!("{e:?} {reason}"),
        SendError::Backend(b) => format!("{e:?} {b} {}", b.message),
    }
}

fn assert_clean(e: &SendError) {
    let s = shown(e);
    assert!(!s.contains(TOKEN), "token in {s}");
    assert!(
        !s.contains(MARKER) && !s.contains("73914682"),
        "body in {s}"
    );
    assert!(
        !s.contains(TO) && !s.contains("5551230199"),
        "number in {s}"
    );
}

fn backend(e: SendError) -> BackendError {
    match e {
        SendError::Backend(b) => b,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn posts_the_documented_form_with_from_and_status_callback() {
    let fake = Fake::start(201, &created(), Duration::ZERO).await;
    let sent = from_number(&fake).send(sms()).await.unwrap();
    assert_eq!(sent, SentMessage { id: SID.into() });
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        s.request_line,
        format!("POST /2010-04-01/Accounts/{ACCOUNT}/Messages.json HTTP/1.1")
    );
    assert_eq!(s.header("authorization"), Some(BASIC));
    assert_eq!(
        s.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let expected: Vec<(String, String)> = [
        ("To", TO.to_owned()),
        ("From", FROM.to_owned()),
        ("Body", MARKER.to_owned()),
        (
            "StatusCallback",
            format!("https://reset.example.com{CALLBACK}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(s.form(), expected);
    // `+` and `?`/`=` in values are percent-encoded on the wire.
    assert!(s.body.contains("To=%2B15551230199"), "{}", s.body);
}

#[tokio::test]
async fn a_messaging_service_replaces_from() {
    let fake = Fake::start(201, &created(), Duration::ZERO).await;
    let messages = sender(&fake, SmsSender::MessagingService(SERVICE.into()));
    messages.send(sms()).await.unwrap();
    let s = &fake.requests()[0];
    assert_eq!(s.field("MessagingServiceSid").as_deref(), Some(SERVICE));
    assert_eq!(s.field("From"), None);
    // No public URL configured: no StatusCallback.
    assert_eq!(s.field("StatusCallback"), None);
    assert_eq!(s.field("Body").as_deref(), Some(MARKER));
}

#[tokio::test]
async fn no_status_callback_when_the_message_has_none() {
    let fake = Fake::start(201, &created(), Duration::ZERO).await;
    let mut message = sms();
    message.status_callback = None;
    from_number(&fake).send(message).await.unwrap();
    assert_eq!(fake.requests()[0].field("StatusCallback"), None);
}

#[tokio::test]
async fn refused_destinations_are_undeliverable_in_both_error_shapes() {
    for code in TwilioMessages::UNDELIVERABLE_CODES {
        let legacy = format!(
            r#"{{"code": {code}, "message": "The 'To' number {TO} is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/{code}", "status": 400}}"#
        );
        let rfc9457 = format!(
            r#"{{"type": "https://www.twilio.com/docs/errors/{code}", "title": "Invalid", "status": 400, "code": {code}, "detail": "The 'To' number {TO} is invalid."}}"#
        );
        for body in [legacy, rfc9457] {
            let fake = Fake::start(400, &body, Duration::ZERO).await;
            let e = from_number(&fake).send(sms()).await.unwrap_err();
            match &e {
                SendError::Undeliverable { code: got, reason } => {
                    assert_eq!(*got, Some(code));
                    assert_eq!(reason, undeliverable_reason(code));
                }
                other => panic!("{code}: {other:?}"),
            }
            assert_clean(&e);
        }
    }
}

#[tokio::test]
async fn other_errors_are_backend_errors_with_twilio_s_code() {
    let auth = r#"{"type": "https://www.twilio.com/docs/errors/20003", "title": "Authenticate", "status": 401, "code": 20003, "detail": "Your AccountSid or AuthToken was incorrect."}"#;
    let fake = Fake::start(401, auth, Duration::ZERO).await;
    let e = from_number(&fake).send(sms()).await.unwrap_err();
    assert_clean(&e);
    let e = backend(e);
    assert_eq!(e.backend, "sms");
    assert!(!e.timeout);
    assert_eq!(
        e.message,
        "Twilio answered HTTP 401 (code 20003: Your AccountSid or AuthToken was incorrect.)"
    );

    let fake = Fake::start(503, "<html>busy</html>", Duration::ZERO).await;
    let e = backend(from_number(&fake).send(sms()).await.unwrap_err());
    assert_eq!(e.message, "Twilio answered HTTP 503");

    // An undeliverable code on a 5xx is not trusted as a statement about the destination.
    let odd = r#"{"code": 21211, "message": "x", "status": 500}"#;
    let fake = Fake::start(500, odd, Duration::ZERO).await;
    let e = backend(from_number(&fake).send(sms()).await.unwrap_err());
    assert_eq!(e.message, "Twilio answered HTTP 500 (code 21211: x)");
}

#[tokio::test]
async fn twilio_text_echoing_the_body_or_number_is_scrubbed() {
    let echo = format!(
        r#"{{"code": 21617, "message": "Body '{MARKER}' to {TO} (also 555-123-0199) exceeds the limit", "status": 400}}"#
    );
    let fake = Fake::start(400, &echo, Duration::ZERO).await;
    let e = from_number(&fake).send(sms()).await.unwrap_err();
    assert_clean(&e);
    let e = backend(e);
    assert_eq!(
        e.message,
        "Twilio answered HTTP 400 (code 21617: Body '[body]' to *** (also ***) exceeds the limit)"
    );
}

#[tokio::test]
async fn created_without_a_sid_is_a_backend_error() {
    for answer in ["{}", r#"{"sid": "SM/../x"}"#, "not json"] {
        let fake = Fake::start(201, answer, Duration::ZERO).await;
        let e = backend(from_number(&fake).send(sms()).await.unwrap_err());
        assert_eq!(e.message, "Twilio answered HTTP 201 without a message sid");
    }
}

#[tokio::test]
async fn a_slow_api_is_a_timeout() {
    let fake = Fake::start(201, &created(), Duration::from_secs(3)).await;
    let messages = from_number(&fake).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = messages.send(sms()).await.unwrap_err();
    assert_eq!(e, SendError::Backend(BackendError::timeout("sms")));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unreachable_api_is_a_backend_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let messages = TwilioMessages::new(ACCOUNT, Secret::new(TOKEN), SmsSender::From(FROM.into()))
        .unwrap()
        .with_base_url(&format!("http://{addr}"))
        .unwrap();
    let e = messages.send(sms()).await.unwrap_err();
    assert_clean(&e);
    let e = backend(e);
    assert!(!e.timeout);
    assert!(e.message.starts_with("request to Twilio failed"), "{e}");
}

#[tokio::test]
async fn email_and_empty_destinations_send_nothing() {
    let fake = Fake::script(vec![Reply::new(201, &created())]).await;
    let messages = from_number(&fake);
    let mut email = sms();
    email.channel = Channel::Email;
    email.to = "jane@example.com".into();
    let e = messages.send(email).await.unwrap_err();
    assert!(backend(e).message.contains("email message"));

    let mut nobody = sms();
    nobody.to = " ".into();
    assert!(matches!(
        messages.send(nobody).await,
        Err(SendError::Undeliverable { code: None, .. })
    ));

    let mut odd = sms();
    odd.status_callback = Some("//evil.example.com/x".into());
    assert!(matches!(
        messages.send(odd).await,
        Err(SendError::Backend(_))
    ));
    assert!(fake.requests().is_empty());
}

#[test]
fn configuration_is_checked() {
    let new = |sender| TwilioMessages::new(ACCOUNT, Secret::new(TOKEN), sender);
    assert_eq!(
        SmsSender::from_settings(Some(FROM), None),
        Ok(SmsSender::From(FROM.into()))
    );
    assert_eq!(
        SmsSender::from_settings(None, Some(SERVICE)),
        Ok(SmsSender::MessagingService(SERVICE.into()))
    );
    for (from, service) in [
        (Some(FROM), Some(SERVICE)),
        (None, None),
        (Some(""), None),
        (Some("+1555\n"), None),
        (None, Some("AC123")),
        (None, Some("MG../x")),
    ] {
        assert!(
            matches!(
                SmsSender::from_settings(from, service),
                Err(ConfigError::Sender(_))
            ),
            "{from:?} {service:?}"
        );
    }
    assert!(matches!(
        new(SmsSender::MessagingService("MGx y".into())),
        Err(ConfigError::Sender(_))
    ));
    assert!(matches!(
        TwilioMessages::new("AC/..", Secret::new(TOKEN), SmsSender::From(FROM.into())),
        Err(ConfigError::AccountSid)
    ));
    assert!(matches!(
        TwilioMessages::new(ACCOUNT, Secret::new(""), SmsSender::From(FROM.into())),
        Err(ConfigError::EmptyAuthToken)
    ));
    let ok = || new(SmsSender::From(FROM.into())).unwrap();
    assert_eq!(
        ok().with_base_url("https://api.example.com/prefix/")
            .unwrap()
            .url(),
        format!("https://api.example.com/prefix/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    );
    assert!(matches!(
        ok().with_base_url("http://api.twilio.com"),
        Err(ConfigError::BaseUrl(_))
    ));
    for bad in [
        "http://reset.example.com",
        "https://my_host.example.com",
        "https://reset.example.com/?x=1",
        "nope",
    ] {
        assert!(
            matches!(ok().with_public_url(bad), Err(ConfigError::PublicUrl(_))),
            "{bad}"
        );
    }
    let e = SmsSender::from_settings(None, None)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad Twilio SMS sender: "), "{e}");
}

#[test]
fn debug_shows_neither_token_nor_body() {
    let messages =
        TwilioMessages::new(ACCOUNT, Secret::new(TOKEN), SmsSender::From(FROM.into())).unwrap();
    let shown = format!("{messages:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(
        shown.contains("Secret(***)") && shown.contains(FROM),
        "{shown}"
    );
    let message = format!("{:?}", sms());
    assert!(!message.contains(MARKER), "{message}");
}
