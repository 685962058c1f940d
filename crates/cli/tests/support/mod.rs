//! What the `resetline` end-to-end tests share beyond `resetline_testkit`: a carrier-like
//! `Call` that follows each answer's action URL and keeps every webhook it sent (to replay
//! them), an SMTP sink, the reference flow's SMS reset call with its checks of what the
//! provider fakes saw, `resetline serve` started on a config, and a dump of every Redis key.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

pub use resetline_testkit::providers::{
    Delay, Log, form_value, providers, start_providers, start_slow_providers,
};
pub use resetline_testkit::serve::{Served, TOKEN};
pub use resetline_testkit::webhook::{ACCOUNT, Signed as Sent, get};
pub use resetline_testkit::{free_port, root};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_resetline");

pub const SID: &str = "CA0123456789abcdef0123456789abcdef";

/// Posts `params` signed with [`TOKEN`] for `public` + `path` to `addr`; the raw response.
pub async fn post_webhook(
    addr: std::net::SocketAddr,
    public: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    Sent::new(TOKEN, public, path, params).post(addr).await
}

/// One call as the carrier places it: each answer to a `<Gather>` goes to the action URL the
/// previous answer named (step tokens are random, so a test cannot write them down), and every
/// webhook is kept as sent (`sent`), so a test can replay the whole call.
#[derive(Debug)]
pub struct Call {
    addr: std::net::SocketAddr,
    public: String,
    pub sid: String,
    next: String,
    pub sent: Vec<Sent>,
}

impl Call {
    /// Posts the incoming-call webhook of `sid` for the flow at `base` (`/voice/<flow>`) from
    /// +15555550100 to +15555550000; the call and the answer.
    pub async fn start(
        addr: std::net::SocketAddr,
        public: &str,
        base: &str,
        sid: &str,
    ) -> (Call, String) {
        let mut call = Call {
            addr,
            public: public.to_string(),
            sid: sid.to_string(),
            next: String::new(),
            sent: Vec::new(),
        };
        let answer = call
            .post(
                base,
                &[
                    ("CallSid", sid),
                    ("AccountSid", ACCOUNT),
                    ("From", "+15555550100"),
                    ("To", "+15555550000"),
                ],
            )
            .await;
        (call, answer)
    }

    /// Answers the waiting `<Gather>` with `digits`; the answer.
    pub async fn press(&mut self, digits: &str) -> String {
        let (path, sid) = (self.next.clone(), self.sid.clone());
        self.post(&path, &[("CallSid", &sid), ("Digits", digits)])
            .await
    }

    /// Any webhook of this call (the status callback, a delivery report), signed and kept
    /// like the rest; an answer with a `<Gather>` names the next path.
    pub async fn post(&mut self, path: &str, params: &[(&str, &str)]) -> String {
        let sent = Sent::new(TOKEN, &self.public, path, params);
        let answer = sent.post(self.addr).await;
        self.sent.push(sent);
        if answer.contains("action=\"") {
            self.next = next_action(&answer);
        }
        answer
    }

    /// Where the answer to the waiting `<Gather>` goes.
    pub fn next(&self) -> &str {
        &self.next
    }

    /// Sends the next webhooks to the server at `addr` (another replica).
    pub fn on(&mut self, addr: std::net::SocketAddr) -> &mut Call {
        self.addr = addr;
        self
    }
}

/// A minimal SMTP sink on 127.0.0.1: greeting, EHLO, MAIL, RCPT, DATA, QUIT; keeps each
/// message's recipients and data.
pub async fn smtp_sink() -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
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

/// The reference flow's webhooks (`/voice/password-reset...`).
pub const BASE: &str = "/voice/password-reset";

/// The reference flow's happy path by SMS code against the server at `addr` (signed for
/// `public`): identify as 100001, get the code by SMS from the fake, set the new PIN
/// 58204617 twice, hear "Your PIN has been changed". Checks every provider request: the SMS
/// (To, From, StatusCallback), the recording pause and resume around the secure section,
/// the reset notice without the PIN, the incident opened and closed. Returns the call, with
/// every webhook the carrier sent.
pub async fn sms_reset_call(addr: std::net::SocketAddr, public: &str, log: &Log) -> Call {
    let mut call = verify_by_sms(addr, public, log).await;
    call.press("58204617").await;
    let resp = call.press("58204617").await;
    assert!(
        resp.contains("Your PIN has been changed. Goodbye.</Say><Hangup />"),
        "{resp}"
    );
    check_provider_requests(log);
    call
}

/// The call up to the new-PIN prompt: identify as 100001, choose SMS, enter the code the
/// fake received; the recording is paused. The call waits for the new PIN.
pub async fn verify_by_sms(addr: std::net::SocketAddr, public: &str, log: &Log) -> Call {
    let (mut call, resp) = Call::start(addr, public, BASE, SID).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    call.press("1").await;
    call.press("100001").await;
    let resp = call.press("1").await;
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
    let code = sms_code(log);

    call.press(&code).await;
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
    call
}

/// The 6-digit code in the last SMS the fake Messages API received.
pub fn sms_code(log: &Log) -> String {
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();
    let sms = requests
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/Messages.json"))
        .expect("an SMS request");
    let text = form_value(&sms.body, "Body").expect("body");
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("6-digit code")
        .to_string()
}

/// After a completed reset call: the provider requests in order (SMS, pause, resume, notice,
/// incident opened and closed) and their contents.
pub fn check_provider_requests(log: &Log) {
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
}

/// The `messages:` section of the reference flows: SMS from the carrier number.
pub const SMS_ONLY: &str = "  sms: { from: \"+15555550000\" }\n";

/// Writes `<dir>/resetline.yaml` for the flows in `flows` (prompts from `voice-prompts/`), the
/// carrier and ServiceNow fakes at `fake_url`, and the given `directory:` and `messages:`
/// sections (YAML, indented by two), and starts `resetline serve` with it: the carrier
/// token, ServiceNow password and hash key come from the environment, with `env` added.
pub async fn serve_flows(
    dir: &std::path::Path,
    flows: &std::path::Path,
    fake_url: &str,
    directory: &str,
    messages: &str,
    env: &[(&str, &str)],
) -> Served {
    let root = root();
    let port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
flows_dir: {flows}
prompts_dir: {prompts}
carrier: {{ account_sid: {ACCOUNT}, auth_token_env: RESETLINE_TEST_TOKEN, api_base: \"{fake_url}\" }}
directory:
{directory}messages:
{messages}tickets: {{ kind: servicenow, base_url: \"{fake_url}\", username: resetline, password_env: RESETLINE_TEST_SN }}
hash_key_env: RESETLINE_TEST_KEY
audit: {{ dir: audit, key_env: RESETLINE_TEST_KEY }}
reload: {{ enabled: false }}
",
        flows = flows.display(),
        prompts = root.join("voice-prompts").display(),
    );
    let key = "k".repeat(32);
    let mut all = vec![
        ("RESETLINE_TEST_TOKEN", TOKEN),
        ("RESETLINE_TEST_SN", "sn-password"),
        ("RESETLINE_TEST_KEY", key.as_str()),
    ];
    all.extend_from_slice(env);
    serve(dir, port, &config, &all).await
}

/// Runs `resetline serve` on `<dir>/resetline.yaml` (written by the caller) with `env`; see
/// [`serve`].
pub async fn serve_binary(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Served {
    let yaml = std::fs::read_to_string(dir.join("resetline.yaml")).expect("config");
    serve(dir, port, &yaml, env).await
}

/// Writes `yaml` to `<dir>/resetline.yaml` and runs `resetline serve` on it with `env`, waiting
/// until it answers `/healthz` (`resetline_testkit::serve::Served::start`).
pub async fn serve(dir: &std::path::Path, port: u16, yaml: &str, env: &[(&str, &str)]) -> Served {
    Served::start(BIN, dir, port, yaml, env).await
}

/// The path of the `action` URL of the first `<Gather>` in a TwiML answer: the next webhook.
pub fn next_action(resp: &str) -> String {
    resetline_engine::testing::next_action(resp).unwrap_or_else(|| panic!("no action in:\n{resp}"))
}

/// Every key in the Redis at `url` with its value (strings, hashes, sorted sets), one line each
/// as text, sorted by key.
pub async fn redis_dump(url: &str) -> String {
    let mut c = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("KEYS");
    keys.sort();
    let mut out = String::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("TYPE");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .expect("GET"),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(&k)
                .query_async(&mut c)
                .await
                .expect("HGETALL"),
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await
                .expect("ZRANGE"),
            other => panic!("unexpected key type {other} for {k}"),
        };
        out.push_str(&format!("{k} ({kind}):"));
        for v in values {
            out.push(' ');
            out.push_str(&String::from_utf8_lossy(&v));
        }
        out.push('\n');
    }
    out
}
