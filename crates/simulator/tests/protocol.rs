//! The simulator against the protocol facts of shared/docs/protocol.md: signatures match the
//! §2.6 vectors and are what goes on the wire; the incoming-call parameter set of §1.2; Gather
//! semantics of §3.2-3.3 on hand-written TwiML; the limits and error codes of §4.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use resetline_engine::FakeClock;
use resetline_simulator::carrier::{self, APPLICATION_ERROR};
use resetline_simulator::{CallSpec, Carrier, End};

const TOKEN: &str = "12345";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    signature: String,
    params: Vec<(String, String)>,
}

impl Seen {
    fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Pages = Arc<Mutex<HashMap<String, (u16, String, String)>>>;

/// A hand-written TwiML app: `pages` maps a path to (status, content type, body); every
/// request is kept.
struct App {
    url: String,
    pages: Pages,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl App {
    async fn start() -> App {
        let pages: Pages = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (p, s) = (pages.clone(), seen.clone());
        let router = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
            let (p, s) = (p.clone(), s.clone());
            async move {
                let params = resetline_twiml::params::parse_owned(body.as_bytes());
                s.lock().expect("seen").push(Seen {
                    path: uri.path().to_string(),
                    signature: headers
                        .get("x-twilio-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    params,
                });
                match p.lock().expect("pages").get(uri.path()).cloned() {
                    Some((status, ct, body)) => (
                        StatusCode::from_u16(status).expect("status"),
                        [("content-type", ct)],
                        body,
                    )
                        .into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(axum::serve(listener, router).into_future());
        App { url, pages, seen }
    }

    fn page(&self, path: &str, twiml: &str) {
        self.raw(path, 200, "text/xml", twiml);
    }

    fn raw(&self, path: &str, status: u16, ct: &str, body: &str) {
        self.pages
            .lock()
            .expect("pages")
            .insert(path.to_string(), (status, ct.to_string(), body.to_string()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    fn spec(&self) -> CallSpec {
        let mut spec = CallSpec::new(&format!("{}/voice", self.url), "+15555550100");
        spec.status_callback = Some(format!("{}/status", self.url));
        spec
    }
}

fn carrier() -> Carrier {
    Carrier::new(
        "AC0123456789abcdef0123456789abcdef",
        TOKEN,
        FakeClock::at(0),
    )
    .expect("carrier")
}

fn lines(call: &resetline_simulator::Call) -> Vec<String> {
    call.transcript()
        .iter()
        .map(|e| e.line.to_string())
        .collect()
}

fn doc(body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>")
}

#[test]
fn the_signature_the_carrier_sends_matches_the_protocol_vectors() {
    let u = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let p: Vec<(String, String)> = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    type Params<'a> = &'a [(String, String)];
    let vectors: [(&str, Params, &str); 6] = [
        (u, &p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        (
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &p,
            "kvajT1Ptam85bY51eRf/AJRuM3w=",
        ),
        (
            "http://mycompany.com:80/myapp.php?foo=1&bar=2",
            &p,
            "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        ),
        (
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            &p,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        (u, &[], "zYQTYrRWXE7LtzbG4PfP7/bkkGo="),
        (
            "https://mycompany.com/myapp.php",
            &p,
            "1xaxFBvyzXYvWplzNOSs28HWO94=",
        ),
    ];
    for (url, params, want) in vectors {
        assert_eq!(carrier::sign(TOKEN, url, params), want, "{url}");
    }
    let upper: Vec<(String, String)> = [
        ("callSid", "lowercase"),
        ("CallSid", "uppercase"),
        ("CALLSID", "allcaps"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        carrier::sign(TOKEN, u, &upper),
        "jDK7WKT8wiNrwggd4ceTv4e1MJ4=",
        "vector 23: keys sort by bytes"
    );
}

#[tokio::test]
async fn every_request_carries_the_full_parameter_set_and_a_signature_over_the_url_sent() {
    let app = App::start().await;
    app.page("/voice", &doc("<Say>Hello.</Say>"));
    let call = carrier().place(app.spec()).await;
    assert_eq!(call.end(), Some(&End::Completed), "{:?}", lines(&call));
    let seen = app.seen();
    assert_eq!(seen.len(), 2, "the webhook and the status callback");
    let first = &seen[0];
    for key in [
        "AccountSid",
        "ApiVersion",
        "CallSid",
        "CallStatus",
        "Called",
        "CalledCity",
        "CalledCountry",
        "CalledState",
        "CalledZip",
        "Caller",
        "CallerCity",
        "CallerCountry",
        "CallerState",
        "CallerZip",
        "Direction",
        "From",
        "FromCity",
        "FromCountry",
        "FromState",
        "FromZip",
        "To",
        "ToCity",
        "ToCountry",
        "ToState",
        "ToZip",
    ] {
        assert!(first.get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        first.get("FromCity"),
        Some(""),
        "empty geo fields are sent empty"
    );
    assert_eq!(first.get("CallStatus"), Some("ringing"));
    assert_eq!(first.get("Direction"), Some("inbound"));
    assert!(
        first
            .get("CallSid")
            .is_some_and(|s| s.len() == 34 && s.starts_with("CA")),
        "CallSid shape ^CA[0-9a-f]{{32}}$"
    );
    for s in &seen {
        let url = format!("{}{}", app.url, s.path);
        assert!(
            resetline_twiml::signature::validate(
                TOKEN.as_bytes(),
                &url,
                &s.params,
                Some(&s.signature)
            )
            .is_ok(),
            "{} is signed over the URL it was sent to",
            s.path
        );
    }
    let status = &seen[1];
    assert_eq!(status.path, "/status");
    assert_eq!(status.get("CallStatus"), Some("completed"));
    assert_eq!(status.get("CallbackSource"), Some("call-progress-events"));
    assert_eq!(status.get("SequenceNumber"), Some("0"));
    assert!(status.get("CallDuration").is_some() && status.get("Timestamp").is_some());
}

#[tokio::test]
async fn gather_without_input_falls_through_to_the_next_verb_and_makes_no_request() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather action=\"/next\" timeout=\"3\"><Say>Press a key.</Say></Gather><Say>We didn't get anything.</Say>"),
    );
    let mut call = carrier().place(app.spec()).await;
    assert!(call.listening().is_some());
    call.silence().await;
    assert_eq!(
        lines(&call),
        [
            "say: Press a key.",
            "silence",
            "say: We didn't get anything.",
            "hangup"
        ]
    );
    assert!(app.seen().iter().all(|s| s.path != "/next"));
    assert!(call.elapsed_ms() >= 3000, "the timeout passed");
}

#[tokio::test]
async fn action_on_empty_result_posts_empty_digits() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather action=\"/next\" actionOnEmptyResult=\"true\"><Say>Press a key.</Say></Gather><Say>Not reached.</Say>"),
    );
    app.page("/next", &doc("<Say>Empty.</Say>"));
    let mut call = carrier().place(app.spec()).await;
    call.silence().await;
    let next = app
        .seen()
        .into_iter()
        .find(|s| s.path == "/next")
        .expect("posted");
    assert_eq!(next.get("Digits"), Some(""));
    assert!(!lines(&call).contains(&"say: Not reached.".to_string()));
}

#[tokio::test]
async fn finish_on_key_ends_input_only_after_a_digit_and_is_reported() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather action=\"/next\"><Say>ID then pound.</Say></Gather>"),
    );
    app.page("/next", &doc("<Hangup/>"));
    let mut call = carrier().place(app.spec()).await;
    call.press("#12#").await;
    let next = app
        .seen()
        .into_iter()
        .find(|s| s.path == "/next")
        .expect("posted");
    assert_eq!(next.get("Digits"), Some("12"), "a leading # is ignored");
    assert_eq!(next.get("FinishedOnKey"), Some("#"));
}

#[tokio::test]
async fn num_digits_ends_input_and_later_keys_are_not_sent() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather numDigits=\"4\" finishOnKey=\"\" action=\"/next\"><Say>Four digits.</Say></Gather>"),
    );
    app.page("/next", &doc("<Hangup/>"));
    let mut call = carrier().place(app.spec()).await;
    call.press("123456").await;
    let next = app
        .seen()
        .into_iter()
        .find(|s| s.path == "/next")
        .expect("posted");
    assert_eq!(next.get("Digits"), Some("1234"));
    assert_eq!(next.get("FinishedOnKey"), Some(""));
    assert!(lines(&call).contains(&"note: keys 56 came after the input ended".to_string()));
}

#[tokio::test]
async fn partial_input_is_sent_when_the_timeout_passes_to_the_current_document_by_default() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather timeout=\"2\"><Say>Digits.</Say></Gather>"),
    );
    let mut call = carrier().place(app.spec()).await;
    let before = call.elapsed_ms();
    call.press("12").await;
    let seen = app.seen();
    let again = seen
        .iter()
        .filter(|s| s.path == "/voice")
        .nth(1)
        .expect("re-requested");
    assert_eq!(again.get("Digits"), Some("12"));
    assert_eq!(again.get("FinishedOnKey"), Some(""));
    assert!(call.elapsed_ms() - before >= 2000);
}

#[tokio::test]
async fn keys_during_nested_prompts_barge_in() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Gather numDigits=\"1\" action=\"/next\"><Say>one two three four five six seven eight</Say><Pause length=\"5\"/><Say>Not heard.</Say></Gather>"),
    );
    app.page("/next", &doc("<Say>Thanks.</Say>"));
    let mut call = carrier().place(app.spec()).await;
    call.press_at("1", Some(std::time::Duration::from_secs(1)))
        .await;
    assert_eq!(
        lines(&call),
        [
            "say: one two three four five six seven eight [interrupted]",
            "press: 1",
            "say: Thanks.",
            "hangup"
        ]
    );
}

#[tokio::test]
async fn redirect_follows_relative_urls_and_the_end_of_the_document_hangs_up() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Say>One.</Say><Redirect>/two</Redirect><Say>Never.</Say>"),
    );
    app.page("/two", &doc("<Pause length=\"2\"/><Say>Two.</Say>"));
    let call = carrier().place(app.spec()).await;
    assert_eq!(
        lines(&call),
        ["say: One.", "pause: 2s", "say: Two.", "hangup"]
    );
    assert_eq!(call.end(), Some(&End::Completed));
}

#[tokio::test]
async fn enqueue_and_dial_post_their_result_to_the_action_url() {
    let app = App::start().await;
    app.page(
        "/voice",
        &doc("<Say>Hold on.</Say><Enqueue action=\"/q\">service-desk</Enqueue><Say>Not reached.</Say>"),
    );
    app.page("/q", &doc(""));
    let call = carrier().place(app.spec()).await;
    assert_eq!(
        call.end(),
        Some(&End::Transferred("queue service-desk".into()))
    );
    let q = app
        .seen()
        .into_iter()
        .find(|s| s.path == "/q")
        .expect("action posted");
    assert_eq!(q.get("QueueResult"), Some("bridged"));
    assert!(q.get("QueueSid").is_some() && q.get("QueueTime").is_some());

    app.page("/q", &doc("<Say>The queue is full.</Say>"));
    let mut spec = app.spec();
    spec.transfer_result = "queue-full".into();
    let call = carrier().place(spec).await;
    assert_eq!(
        call.end(),
        Some(&End::Completed),
        "the action's TwiML ran on"
    );
    assert!(lines(&call).contains(&"say: The queue is full.".to_string()));

    app.page(
        "/voice",
        &doc("<Dial><Number>+15555550111</Number></Dial><Say>Next.</Say>"),
    );
    let call = carrier().place(app.spec()).await;
    assert_eq!(
        call.end(),
        Some(&End::Transferred("dial +15555550111".into())),
        "no action: an answered dial ends the call"
    );
    let mut spec = app.spec();
    spec.transfer_result = "busy".into();
    let call = carrier().place(spec).await;
    assert_eq!(
        lines(&call),
        ["transfer: dial +15555550111 (busy)", "say: Next.", "hangup"],
        "no action: a failed dial falls through"
    );
}

#[tokio::test]
async fn twilio_limits_fail_the_call_with_its_error_codes() {
    let app = App::start().await;
    let cases: [(u16, &str, String, u32); 6] = [
        (
            200,
            "text/xml",
            "<Response><Say>a & b</Say></Response>".into(),
            12100,
        ),
        (200, "text/xml", "<Document/>".into(), 12102),
        (500, "text/xml", doc("<Say>x</Say>"), 11200),
        (200, "application/json", "{}".into(), 12300),
        (
            200,
            "text/xml",
            doc(&format!("<Say>{}</Say>", "a ".repeat(40_000))),
            11750,
        ),
        (200, "text/xml", doc("<Record/>"), 12100),
    ];
    for (status, ct, body, code) in cases {
        app.raw("/voice", status, ct, &body);
        let call = carrier().place(app.spec()).await;
        assert_eq!(call.end(), Some(&End::Failed(code)), "{ct} {status}");
        assert!(lines(&call).contains(&format!("say: {APPLICATION_ERROR}")));
    }
    app.raw("/voice", 200, "text/plain", "Plain words.");
    let call = carrier().place(app.spec()).await;
    assert_eq!(
        lines(&call),
        ["say: Plain words.", "hangup"],
        "text/plain is read aloud"
    );
}

#[tokio::test]
async fn a_wrong_token_is_what_the_server_sees() {
    let app = App::start().await;
    app.page("/voice", &doc("<Hangup/>"));
    let mut spec = app.spec();
    spec.sign_with = Some("wrong".into());
    carrier().place(spec).await;
    let first = &app.seen()[0];
    let url = format!("{}/voice", app.url);
    assert!(
        resetline_twiml::signature::validate(
            TOKEN.as_bytes(),
            &url,
            &first.params,
            Some(&first.signature)
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_server_that_answers_too_late_fails_the_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let slow = Router::new().fallback(|| async {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        ([("content-type", "text/xml")], doc("<Say>Too late.</Say>"))
    });
    tokio::spawn(axum::serve(listener, slow).into_future());
    let carrier = Carrier::with_response_timeout(
        "AC0123456789abcdef0123456789abcdef",
        TOKEN,
        FakeClock::at(0),
        std::time::Duration::from_millis(300),
    )
    .expect("carrier");
    assert_eq!(
        carrier::RESPONSE_TIMEOUT,
        std::time::Duration::from_secs(15)
    );
    let call = carrier
        .place(CallSpec::new(&format!("{url}/voice"), "+15555550100"))
        .await;
    assert_eq!(call.end(), Some(&End::Failed(11200)));
    assert!(!lines(&call).contains(&"say: Too late.".to_string()));
}
