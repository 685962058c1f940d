//! Tests against a fake Twilio API ([`crate::fake_http`]): a tiny HTTP/1.1 server on
//! 127.0.0.1 that records every request and answers with a scripted status, body and delay.

use tokio::net::TcpListener;

use super::*;
use crate::fake_http::Fake;

const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "f00dfacef00dfacef00dfacef00dface";
/// `base64("{ACCOUNT}:{TOKEN}")`, computed independently.
const BASIC: &str = "Basic QUNhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYTpmMDBkZmFjZWYwMGRmYWNlZjAwZGZhY2VmMDBkZmFjZQ==";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";

const PAUSED: &str = r#"{"sid": "REaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "status": "paused", "source": "StartCallRecordingAPI"}"#;
const NOT_FOUND: &str = r#"{"code": 20404, "message": "The requested resource /2010-04-01/Accounts/AC.../Recordings/Twilio.CURRENT.json was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}"#;
const SERVER_ERROR: &str = r#"{"code": 20500, "message": "An internal server error has occurred", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}"#;

fn client(fake: &Fake) -> TwilioRecording {
    TwilioRecording::new(ACCOUNT, Secret::new(TOKEN))
        .unwrap()
        .with_base_url(&fake.base())
        .unwrap()
}

fn expected_line() -> String {
    format!(
        "POST /2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}/Recordings/Twilio.CURRENT.json HTTP/1.1"
    )
}

#[tokio::test]
async fn pause_posts_the_documented_request() {
    let fake = Fake::start(200, PAUSED, Duration::ZERO).await;
    let rec = client(&fake);
    assert_eq!(
        rec.change(CALL, RecordingChange::Pause { skip: true })
            .await,
        Ok(RecordingAck::Done)
    );
    assert_eq!(
        rec.change(CALL, RecordingChange::Pause { skip: false })
            .await,
        Ok(RecordingAck::Done)
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.request_line, expected_line());
        assert_eq!(s.header("authorization"), Some(BASIC));
        assert_eq!(
            s.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            s.header("host").map(|h| h.to_owned()),
            Some(fake.addr.to_string())
        );
    }
    assert_eq!(seen[0].body, "Status=paused&PauseBehavior=skip");
    assert_eq!(seen[1].body, "Status=paused&PauseBehavior=silence");
}

#[tokio::test]
async fn resume_posts_in_progress() {
    let fake = Fake::start(200, PAUSED, Duration::ZERO).await;
    let rec = client(&fake);
    assert_eq!(
        rec.change(CALL, RecordingChange::Resume).await,
        Ok(RecordingAck::Done)
    );
    let seen = fake.requests();
    assert_eq!(seen[0].request_line, expected_line());
    assert_eq!(seen[0].body, "Status=in-progress");
    assert_eq!(seen[0].header("authorization"), Some(BASIC));
}

#[tokio::test]
async fn not_found_means_no_recording() {
    let fake = Fake::start(404, NOT_FOUND, Duration::ZERO).await;
    assert_eq!(
        client(&fake)
            .change(CALL, RecordingChange::Pause { skip: true })
            .await,
        Ok(RecordingAck::NoRecording)
    );
}

#[tokio::test]
async fn server_error_names_status_and_twilio_code_but_not_the_token() {
    let fake = Fake::start(500, SERVER_ERROR, Duration::ZERO).await;
    let e = client(&fake)
        .change(CALL, RecordingChange::Resume)
        .await
        .unwrap_err();
    assert_eq!(e.backend, "recording");
    assert!(!e.timeout);
    assert!(e.message.contains("HTTP 500"), "{e}");
    assert!(
        e.message
            .contains("code 20500: An internal server error has occurred"),
        "{e}"
    );
    assert!(!e.to_string().contains(TOKEN) && !format!("{e:?}").contains(TOKEN));

    let fake = Fake::start(401, "not json", Duration::ZERO).await;
    let e = client(&fake)
        .change(CALL, RecordingChange::Resume)
        .await
        .unwrap_err();
    assert_eq!(e.message, "Twilio answered HTTP 401");
}

#[tokio::test]
async fn other_success_codes_are_not_an_acknowledgement() {
    let fake = Fake::start(202, "", Duration::ZERO).await;
    let e = client(&fake)
        .change(CALL, RecordingChange::Pause { skip: true })
        .await
        .unwrap_err();
    assert!(e.message.contains("HTTP 202"), "{e}");
}

#[tokio::test]
async fn a_slow_api_is_a_timeout() {
    let fake = Fake::start(200, PAUSED, Duration::from_secs(3)).await;
    let rec = client(&fake).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = rec
        .change(CALL, RecordingChange::Pause { skip: true })
        .await
        .unwrap_err();
    assert!(e.timeout, "{e}");
    assert_eq!(e, BackendError::timeout("recording"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up in time"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_a_backend_error() {
    // Bind then drop: nothing listens on the port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let rec = TwilioRecording::new(ACCOUNT, Secret::new(TOKEN))
        .unwrap()
        .with_base_url(&format!("http://{addr}/"))
        .unwrap();
    let e = rec.change(CALL, RecordingChange::Resume).await.unwrap_err();
    assert!(!e.timeout);
    assert!(e.message.starts_with("request to Twilio failed"), "{e}");
    assert!(!e.message.contains(TOKEN));
}

#[tokio::test]
async fn a_bad_call_sid_sends_nothing() {
    let fake = Fake::start(200, PAUSED, Duration::ZERO).await;
    let rec = client(&fake);
    for sid in ["", "CA../../x", "CA123?x=1", "CA 1"] {
        let e = rec.change(sid, RecordingChange::Resume).await.unwrap_err();
        assert!(e.message.contains("CallSid"), "{e}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn base_urls_are_checked() {
    let rec = || TwilioRecording::new(ACCOUNT, Secret::new(TOKEN)).unwrap();
    assert_eq!(rec().base, "https://api.twilio.com");
    assert_eq!(
        rec()
            .with_base_url("https://twilio.example.com/prefix/")
            .unwrap()
            .url(CALL),
        format!(
            "https://twilio.example.com/prefix/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}/Recordings/Twilio.CURRENT.json"
        )
    );
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
    ] {
        assert!(rec().with_base_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://api.twilio.com",
        "ftp://127.0.0.1",
        "https://u:p@api.twilio.com",
        "https://api.twilio.com/?a=1",
        "not a url",
    ] {
        assert!(
            matches!(rec().with_base_url(bad), Err(ConfigError::BaseUrl(_))),
            "{bad}"
        );
    }
    assert_eq!(
        TwilioRecording::new("AC/..", Secret::new(TOKEN)).unwrap_err(),
        ConfigError::AccountSid
    );
    assert_eq!(
        TwilioRecording::new(ACCOUNT, Secret::new("")).unwrap_err(),
        ConfigError::EmptyAuthToken
    );
}

#[test]
fn debug_hides_the_token() {
    let shown = format!(
        "{:?}",
        TwilioRecording::new(ACCOUNT, Secret::new(TOKEN)).unwrap()
    );
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(
        shown.contains("Secret(***)") && shown.contains(ACCOUNT),
        "{shown}"
    );
}

#[test]
fn reads_both_twilio_error_shapes() {
    assert_eq!(
        twilio_error(SERVER_ERROR.as_bytes()).as_deref(),
        Some("code 20500: An internal server error has occurred")
    );
    let rfc9457 = br#"{"type": "https://www.twilio.com/docs/errors/20003", "title": "Authenticate", "status": 401, "code": 20003, "detail": "Your AccountSid or AuthToken was incorrect."}"#;
    assert_eq!(
        twilio_error(rfc9457).as_deref(),
        Some("code 20003: Your AccountSid or AuthToken was incorrect.")
    );
    assert_eq!(
        twilio_error(br#"{"message": "line\nbreak"}"#).as_deref(),
        Some("line break")
    );
    assert_eq!(twilio_error(b"<html>"), None);
}
