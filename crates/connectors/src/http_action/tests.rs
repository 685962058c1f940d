//! Tests against a local fake service ([`crate::fake_http`]) recording each request.

use std::time::Duration;

use resetline_engine::{FakeClock, HttpSigning};
use serde_json::json;

use super::*;
use crate::fake_http::{Fake, Reply};

const API_TOKEN: &str = "hr-api-token-for-tests";
const SIGNING: &str = "hr-signing-token-for-tests";
const NOW_MS: u64 = 1_700_000_000_000;

fn actions(fake: &Fake, policy: BreakerPolicy) -> HttpDataActions {
    HttpDataActions::new(Arc::new(FakeClock::at(NOW_MS)), policy)
        .unwrap()
        .with_backend(
            "hr",
            &format!("{}/api", fake.base()),
            Some(Secret::new(API_TOKEN)),
            Some(("HR_SIGNING_TOKEN".into(), Secret::new(SIGNING))),
        )
        .unwrap()
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url,
        headers: vec![("X-Call-Sid".into(), "CA1".into())],
        body: None,
        timeout: Duration::from_secs(2),
        sign: None,
    }
}

#[tokio::test]
async fn sends_to_a_configured_backend_with_its_token() {
    let fake = Fake::start(
        200,
        r#"{"employment": {"status": "active"}}"#,
        Duration::ZERO,
    )
    .await;
    let a = actions(&fake, BreakerPolicy::default());
    let r = a
        .call(get(format!("{}/api/employees/100001/status", fake.base())))
        .await
        .unwrap();
    assert_eq!(
        r,
        HttpResponse {
            status: 200,
            body: Some(json!({"employment": {"status": "active"}}))
        }
    );
    let seen = fake.requests();
    assert_eq!(
        seen[0].request_line,
        "GET /api/employees/100001/status HTTP/1.1"
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {API_TOKEN}").as_str())
    );
    assert_eq!(seen[0].header("x-call-sid"), Some("CA1"));
    assert_eq!(seen[0].header("accept"), Some("application/json"));
    assert_eq!(seen[0].header("x-resetline-signature"), None);
}

#[tokio::test]
async fn urls_outside_the_configured_backends_are_refused_unsent() {
    let fake = Fake::start(200, "{}", Duration::ZERO).await;
    let a = actions(&fake, BreakerPolicy::default());
    let other_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("{}/apix/1", fake.base()),
        format!("{}/", fake.base()),
        format!("http://127.0.0.1:{other_port}/api/1"),
        format!("http://user:pw@{}/api/1", fake.addr),
        "https://evil.example.com/api/1".to_owned(),
        "not a url".to_owned(),
    ] {
        let e = a.call(get(url.clone())).await.unwrap_err();
        assert!(matches!(e, HttpError::Refused(_)), "{url}: {e:?}");
    }
    assert!(fake.requests().is_empty());
    // The base itself and anything under it are fine.
    assert!(a.call(get(format!("{}/api", fake.base()))).await.is_ok());
}

#[tokio::test]
async fn signed_requests_verify_at_the_receiver() {
    let fake = Fake::start(201, r#"{"ok": true}"#, Duration::ZERO).await;
    let a = actions(&fake, BreakerPolicy::default());
    let body = r#"{"code":"735911","employee":"100001"}"#;
    let request = HttpRequest {
        method: "POST".into(),
        url: format!("{}/api/badges/check", fake.base()),
        headers: Vec::new(),
        body: Some(Secret::new(body)),
        timeout: Duration::from_secs(2),
        sign: Some(HttpSigning {
            token_env: "HR_SIGNING_TOKEN".into(),
            header: "X-Resetline-Signature".into(),
        }),
    };
    let r = a.call(request.clone()).await.unwrap();
    assert_eq!(r.status, 201);
    let seen = &fake.requests()[0];
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let header = seen.header("x-resetline-signature").expect("signed");
    assert!(header.starts_with("t=1700000000,v1="), "{header}");
    let window = Duration::from_secs(300);
    assert_eq!(
        crate::signing::verify(
            SIGNING.as_bytes(),
            header,
            seen.body.as_bytes(),
            NOW_MS / 1000 + 10,
            window
        ),
        Ok(())
    );
    assert_eq!(
        crate::signing::verify(
            SIGNING.as_bytes(),
            header,
            seen.body.as_bytes(),
            NOW_MS / 1000 + 301,
            window
        ),
        Err(crate::signing::SignatureError::Stale),
        "a replay after the window is refused"
    );
    // A signing token the backend was not configured with: refused, nothing sent.
    let mut wrong = request;
    wrong.sign = Some(HttpSigning {
        token_env: "OTHER_TOKEN".into(),
        header: "X-Resetline-Signature".into(),
    });
    assert!(matches!(a.call(wrong).await, Err(HttpError::Refused(_))));
    assert_eq!(fake.requests().len(), 1);
    let shown = format!("{a:?}");
    assert!(
        !shown.contains(API_TOKEN) && !shown.contains(SIGNING),
        "{shown}"
    );
}

#[tokio::test]
async fn a_flow_cannot_override_the_backend_s_authorization() {
    let fake = Fake::start(200, "{}", Duration::ZERO).await;
    let a = actions(&fake, BreakerPolicy::default());
    let mut r = get(format!("{}/api/x", fake.base()));
    r.headers
        .push(("Authorization".into(), "Bearer mine".into()));
    assert!(matches!(a.call(r).await, Err(HttpError::Refused(_))));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn failures_are_classified_and_open_the_breaker() {
    // Nothing listening: not sent.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let a = HttpDataActions::new(Arc::new(FakeClock::at(NOW_MS)), BreakerPolicy::default())
        .unwrap()
        .with_backend("down", &format!("http://{closed}"), None, None)
        .unwrap();
    let e = a.call(get(format!("http://{closed}/x"))).await.unwrap_err();
    assert!(matches!(e, HttpError::NotSent(_)), "{e:?}");

    // Slow: a timeout, after sending.
    let fake = Fake::start(200, "{}", Duration::from_secs(3)).await;
    let a = actions(&fake, BreakerPolicy::default());
    let mut r = get(format!("{}/api/x", fake.base()));
    r.timeout = Duration::from_millis(200);
    let e = a.call(r).await.unwrap_err();
    assert!(matches!(&e, HttpError::Failed(b) if b.timeout), "{e:?}");

    // 5xx answers count as failures: after two, the breaker refuses without sending.
    let fake = Fake::start(503, "<html>down</html>", Duration::ZERO).await;
    let a = actions(
        &fake,
        BreakerPolicy {
            failures: 2,
            cool_down: Duration::from_secs(30),
        },
    );
    for _ in 0..2 {
        let r = a.call(get(format!("{}/api/x", fake.base()))).await.unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 503,
                body: None
            }
        );
    }
    let e = a
        .call(get(format!("{}/api/x", fake.base())))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HttpError::Refused(b) if b.message.contains("circuit open")),
        "{e:?}"
    );
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(a.breakers()[0].1.state(), crate::BreakerState::Open);

    // 4xx is an answer: the breaker stays closed.
    let fake = Fake::script(vec![Reply::new(404, r#"{"error": "none"}"#)]).await;
    let a = actions(
        &fake,
        BreakerPolicy {
            failures: 1,
            cool_down: Duration::from_secs(30),
        },
    );
    for _ in 0..3 {
        assert_eq!(
            a.call(get(format!("{}/api/x", fake.base())))
                .await
                .unwrap()
                .status,
            404
        );
    }
}

#[test]
fn configuration_is_checked() {
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::at(0));
    let new = || HttpDataActions::new(clock.clone(), BreakerPolicy::default()).unwrap();
    assert_eq!(
        new()
            .with_backend("a b", "https://x.example", None, None)
            .unwrap_err(),
        HttpConfigError::Name("a b".into())
    );
    assert!(matches!(
        new().with_backend("hr", "http://hr.example.com", None, None),
        Err(HttpConfigError::BaseUrl(..))
    ));
    assert_eq!(
        new()
            .with_backend("hr", "https://hr.example.com", Some(Secret::new("")), None)
            .unwrap_err(),
        HttpConfigError::Token("hr".into())
    );
    assert_eq!(
        new()
            .with_backend("hr", "https://a.example", None, None)
            .unwrap()
            .with_backend("hr", "https://b.example", None, None)
            .unwrap_err(),
        HttpConfigError::Duplicate("hr".into())
    );
}
