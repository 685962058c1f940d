//! Tests against a tiny SMTP sink on 127.0.0.1 that speaks just enough SMTP (greeting, EHLO,
//! AUTH PLAIN, MAIL FROM, RCPT TO, DATA, QUIT), records the envelope and the message, and
//! refuses configured recipients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const FROM: &str = "Service Desk <noreply@example.com>";
const TO: &str = "jane.doe@example.org";
const REFUSED: &str = "gone@example.org";
const DEFERRED: &str = "later@example.org";
const USER: &str = "resetline";
const PASSWORD: &str = "smtp-Pa55word-for-tests";
/// A unique marker standing for a one-time code: it must never appear in an error or log.
const MARKER: &str = "Your Resetline code is 73914682";

/// What the sink saw.
#[derive(Clone, Debug, Default)]
struct Log {
    /// Every command line, as sent.
    commands: Vec<String>,
    /// `MAIL FROM` and `RCPT TO` arguments.
    mail_from: Vec<String>,
    rcpt_to: Vec<String>,
    /// Each message's DATA, without the final `.`.
    messages: Vec<String>,
}

#[derive(Clone)]
struct Script {
    /// Extra EHLO keywords (`AUTH PLAIN`, `STARTTLS`, ...).
    extensions: Vec<&'static str>,
    greeting_delay: Duration,
}

struct Sink {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Sink {
    async fn start(extensions: Vec<&'static str>, greeting_delay: Duration) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = Arc::clone(&log);
        let script = Script {
            extensions,
            greeting_delay,
        };
        tokio::spawn(async move {
            for _ in 0..16 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&shared);
                let script = script.clone();
                tokio::spawn(async move {
                    let _ = converse(stream, log, script).await;
                });
            }
        });
        Sink { addr, log }
    }

    async fn plain() -> Sink {
        Sink::start(vec!["8BITMIME"], Duration::ZERO).await
    }

    fn log(&self) -> Log {
        self.log.lock().unwrap().clone()
    }

    fn verbs(&self) -> Vec<String> {
        self.log()
            .commands
            .iter()
            .map(|c| c.split([' ', ':']).next().unwrap_or_default().to_owned())
            .collect()
    }

    fn mailer(&self) -> SmtpMailer {
        SmtpMailer::new("127.0.0.1", self.addr.port(), SmtpTls::None, FROM).unwrap()
    }
}

async fn converse(stream: TcpStream, log: Arc<Mutex<Log>>, script: Script) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    tokio::time::sleep(script.greeting_delay).await;
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        log.lock().unwrap().commands.push(command.clone());
        let upper = command.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let mut reply = String::from("250-sink.test\r\n");
            for ext in &script.extensions {
                reply.push_str(&format!("250-{ext}\r\n"));
            }
            reply.push_str("250 SIZE 1000000\r\n");
            reply
        } else if upper.starts_with("AUTH PLAIN") {
            "235 2.7.0 Authentication successful\r\n".into()
        } else if let Some(arg) = upper.strip_prefix("MAIL FROM:") {
            log.lock().unwrap().mail_from.push(arg.to_ascii_lowercase());
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let arg = command["RCPT TO:".len()..].to_owned();
            log.lock().unwrap().rcpt_to.push(arg.clone());
            if arg.contains(REFUSED) {
                format!("550 5.1.1 {arg}: Recipient address rejected: User unknown\r\n")
            } else if arg.contains(DEFERRED) {
                format!("450 4.2.0 {arg}: Recipient address rejected: Greylisted\r\n")
            } else {
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if lines.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            log.lock().unwrap().messages.push(data);
            "250 2.0.0 Ok: queued as 4F00D\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok\r\n".into()
        } else {
            "502 5.5.2 Error: command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

fn email(to: &str) -> OutgoingMessage {
    OutgoingMessage {
        channel: Channel::Email,
        to: to.into(),
        subject: "Your password reset code".into(),
        body: Secret::new(MARKER),
        status_callback: None,
    }
}

/// Every way an error can be shown must hide the body, the password and the full address.
fn assert_clean(e: &SendError, to: &str) {
    let shown = match e {
        SendError::Undeliverable { reason, .. } => format!("{e:?} {reason}"),
        SendError::Backend(b) => format!("{e:?} {b}"),
    };
    assert!(
        !shown.contains(MARKER) && !shown.contains("73914682"),
        "{shown}"
    );
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!shown.contains(to), "{shown}");
}

fn backend(e: SendError) -> BackendError {
    match e {
        SendError::Backend(b) => b,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_a_plain_text_message_with_the_right_envelope() {
    let sink = Sink::plain().await;
    let sent = sink.mailer().send(email(TO)).await.unwrap();
    assert_eq!(sink.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
    let log = sink.log();
    assert_eq!(log.mail_from, ["<noreply@example.com>"]);
    assert_eq!(log.rcpt_to, [format!("<{TO}>")]);
    assert_eq!(log.messages.len(), 1);
    let message = &log.messages[0];
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
            .to_owned()
    };
    assert_eq!(header("From"), "\"Service Desk\" <noreply@example.com>");
    assert_eq!(header("To"), TO);
    assert_eq!(header("Subject"), "Your password reset code");
    assert_eq!(header("Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(header("Content-Transfer-Encoding"), "7bit");
    assert!(head.contains("\r\nDate: "), "{head}");
    let id = header("Message-ID");
    assert_eq!(id, format!("<{}>", sent.id));
    assert!(
        sent.id.ends_with("@example.com") && sent.id.len() == 32 + 12,
        "{}",
        sent.id
    );
    assert_eq!(body, format!("{MARKER}\r\n"));
}

#[tokio::test]
async fn non_ascii_text_is_encoded_for_the_wire() {
    let sink = Sink::plain().await;
    let mut message = email(TO);
    message.subject = "Código de restablecimiento".into();
    message.body = Secret::new("Su código es 73914682. ¡Gracias!");
    sink.mailer().send(message).await.unwrap();
    let data = &sink.log().messages[0];
    assert!(data.is_ascii(), "{data}");
    assert!(data.contains("Subject: =?utf-8?"), "{data}");
    assert!(
        data.contains("Content-Transfer-Encoding: quoted-printable"),
        "{data}"
    );
}

#[tokio::test]
async fn a_refused_recipient_is_undeliverable_and_no_data_is_sent() {
    let sink = Sink::plain().await;
    let e = sink.mailer().send(email(REFUSED)).await.unwrap_err();
    match &e {
        SendError::Undeliverable { code, reason } => {
            assert_eq!(*code, Some(550));
            assert_eq!(
                reason,
                "the mail server refused the recipient: permanent error (550): 5.1.1 <g***@example.org>: Recipient address rejected: User unknown"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_clean(&e, REFUSED);
    assert!(!sink.verbs().contains(&"DATA".to_owned()));
    assert!(sink.log().messages.is_empty());
}

#[tokio::test]
async fn a_deferred_recipient_is_a_backend_error() {
    let sink = Sink::plain().await;
    let e = sink.mailer().send(email(DEFERRED)).await.unwrap_err();
    assert_clean(&e, DEFERRED);
    let e = backend(e);
    assert_eq!(e.backend, "email");
    assert!(!e.timeout);
    assert!(
        e.message
            .starts_with("SMTP RCPT TO failed: transient error (450)"),
        "{e}"
    );
    assert!(e.message.contains("l***@example.org"), "{e}");
}

#[tokio::test]
async fn credentials_are_sent_with_auth_plain_and_never_shown() {
    let sink = Sink::start(vec!["AUTH PLAIN LOGIN", "8BITMIME"], Duration::ZERO).await;
    let mailer = sink
        .mailer()
        .with_credentials(USER, Secret::new(PASSWORD))
        .unwrap();
    mailer.send(email(TO)).await.unwrap();
    assert_eq!(
        sink.verbs(),
        ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    // base64("\0resetline\0smtp-Pa55word-for-tests"), computed independently.
    assert_eq!(
        sink.log().commands[1],
        "AUTH PLAIN AHJlc2V0bGluZQBzbXRwLVBhNTV3b3JkLWZvci10ZXN0cw=="
    );
    let shown = format!("{mailer:?}");
    assert!(
        !shown.contains(PASSWORD) && shown.contains("Secret(***)"),
        "{shown}"
    );

    // A server offering no usable mechanism: a backend error, and still no password shown.
    let sink = Sink::plain().await;
    let mailer = sink
        .mailer()
        .with_credentials(USER, Secret::new(PASSWORD))
        .unwrap();
    let e = mailer.send(email(TO)).await.unwrap_err();
    assert_clean(&e, TO);
    assert!(backend(e).message.starts_with("SMTP authenticating failed"));
    assert!(!sink.verbs().contains(&"MAIL".to_owned()));
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let sink = Sink::plain().await;
    // `starttls` to a server that does not offer it: no downgrade, nothing sent.
    let mailer = SmtpMailer::new("127.0.0.1", sink.addr.port(), SmtpTls::StartTls, FROM).unwrap();
    let e = backend(mailer.send(email(TO)).await.unwrap_err());
    assert!(e.message.starts_with("SMTP STARTTLS failed"), "{e}");
    assert_eq!(sink.verbs(), ["EHLO", "QUIT"]);
}

#[tokio::test]
async fn implicit_tls_to_a_plaintext_server_fails() {
    let sink = Sink::plain().await;
    let mailer = SmtpMailer::new("127.0.0.1", sink.addr.port(), SmtpTls::Tls, FROM)
        .unwrap()
        .with_timeout(Duration::from_secs(3));
    let e = backend(mailer.send(email(TO)).await.unwrap_err());
    assert!(e.message.starts_with("SMTP connecting failed"), "{e}");
    assert!(sink.log().mail_from.is_empty());
}

#[tokio::test]
async fn a_slow_server_is_a_timeout() {
    let sink = Sink::start(vec![], Duration::from_secs(3)).await;
    let mailer = sink.mailer().with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(
        mailer.send(email(TO)).await.unwrap_err(),
        SendError::Backend(BackendError::timeout("email"))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mailer = SmtpMailer::new("127.0.0.1", port, SmtpTls::None, FROM).unwrap();
    let e = backend(mailer.send(email(TO)).await.unwrap_err());
    assert!(!e.timeout);
    assert!(e.message.starts_with("SMTP connecting failed"), "{e}");
}

#[tokio::test]
async fn sms_and_malformed_addresses_send_nothing() {
    let sink = Sink::plain().await;
    let mut sms = email("+15551230199");
    sms.channel = Channel::Sms;
    let e = backend(sink.mailer().send(sms).await.unwrap_err());
    assert!(e.message.contains("SMS message"), "{e}");
    for bad in [
        "",
        "jane",
        "jane@",
        "a b@example.org",
        "<jane@example.org>\r\nRCPT TO:<x@y>",
    ] {
        assert_eq!(
            sink.mailer().send(email(bad)).await.unwrap_err(),
            SendError::Undeliverable {
                code: None,
                reason: "not a valid email address".into()
            },
            "{bad:?}"
        );
    }
    assert!(sink.log().commands.is_empty());
}

#[test]
fn configuration_is_checked() {
    assert!(SmtpMailer::new("localhost", 25, SmtpTls::None, "a@b.example").is_ok());
    assert!(SmtpMailer::new("[::1]", 25, SmtpTls::None, "a@b.example").is_ok());
    assert!(SmtpMailer::new("smtp.example.com", 587, SmtpTls::StartTls, FROM).is_ok());
    assert!(SmtpMailer::new("smtp.example.com", 465, SmtpTls::Tls, FROM).is_ok());
    assert_eq!(
        SmtpMailer::new("smtp.example.com", 25, SmtpTls::None, FROM).unwrap_err(),
        SmtpConfigError::PlaintextNotLoopback
    );
    assert_eq!(
        SmtpMailer::new("", 25, SmtpTls::Tls, FROM).unwrap_err(),
        SmtpConfigError::Host
    );
    assert_eq!(
        SmtpMailer::new("smtp.example.com:25", 25, SmtpTls::Tls, FROM).unwrap_err(),
        SmtpConfigError::Host
    );
    assert_eq!(
        SmtpMailer::new("smtp.example.com", 0, SmtpTls::Tls, FROM).unwrap_err(),
        SmtpConfigError::Port
    );
    assert!(matches!(
        SmtpMailer::new("smtp.example.com", 465, SmtpTls::Tls, "not an address"),
        Err(SmtpConfigError::From(_))
    ));
    let ok = || SmtpMailer::new("localhost", 25, SmtpTls::None, FROM).unwrap();
    assert_eq!(
        ok().with_credentials("", Secret::new("x")).unwrap_err(),
        SmtpConfigError::Credentials
    );
    assert_eq!(
        ok().with_credentials("u", Secret::new("")).unwrap_err(),
        SmtpConfigError::Credentials
    );
    assert!(ok().with_hello_name("mail.example.com").is_ok());
    for bad in ["", "10.0.0.1", "bad name"] {
        assert_eq!(
            ok().with_hello_name(bad).unwrap_err(),
            SmtpConfigError::HelloName,
            "{bad}"
        );
    }
    assert_eq!("STARTTLS".parse::<SmtpTls>(), Ok(SmtpTls::StartTls));
    assert_eq!("none".parse::<SmtpTls>(), Ok(SmtpTls::None));
    assert_eq!("tls".parse::<SmtpTls>(), Ok(SmtpTls::Tls));
    assert_eq!(
        "ssl".parse::<SmtpTls>().unwrap_err().to_string(),
        "unknown SMTP TLS mode \"ssl\": use none, starttls or tls"
    );
    assert_eq!(SmtpTls::Tls.default_port(), 465);
}
