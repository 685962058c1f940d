//! `messages:` (the SMS sender, SMTP for email) and `limits:` (where codes may be sent, and
//! how many per hour in total). Problems are added to the caller's list, like every other
//! section's.

use serde::Deserialize;

use resetline_engine::Secret;

use crate::secret_env;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMessages {
    sms: Option<RawSms>,
    email: Option<RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    from: Option<String>,
    messaging_service_sid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    host: String,
    port: Option<u16>,
    #[serde(default = "default_tls")]
    tls: String,
    from: String,
    username: Option<String>,
    password_env: Option<String>,
}

fn default_tls() -> String {
    "starttls".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    sms_prefixes: Vec<String>,
    global_per_hour: Option<u32>,
}

/// Where SMS come from (Twilio Messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsFrom {
    /// A Twilio number (E.164).
    Number(String),
    /// A Messaging Service (`MG...`).
    Service(String),
}

/// Email over SMTP.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// SMTP host.
    pub host: String,
    /// Port (default by TLS mode).
    pub port: Option<u16>,
    /// `none` (loopback only), `starttls` or `tls`.
    pub tls: String,
    /// From address.
    pub from: String,
    /// Login, when the server needs one.
    pub credentials: Option<(String, Secret)>,
}

/// Checks `messages:`: the SMS sender and SMTP, each optional.
pub(crate) fn messages(
    raw: RawMessages,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> (Option<SmsFrom>, Option<EmailConfig>) {
    let sms = sms(raw.sms, problems);
    (sms, email(raw.email, env, problems))
}

/// Checks `messages.sms`: exactly one of a number or a Messaging Service.
fn sms(raw: Option<RawSms>, problems: &mut Vec<String>) -> Option<SmsFrom> {
    match raw? {
        RawSms {
            from: Some(n),
            messaging_service_sid: None,
        } if n.starts_with('+') && n.len() >= 8 && n[1..].chars().all(|c| c.is_ascii_digit()) => {
            Some(SmsFrom::Number(n))
        }
        RawSms {
            from: None,
            messaging_service_sid: Some(m),
        } if m.len() == 34 && m.starts_with("MG") => Some(SmsFrom::Service(m)),
        _ => {
            problems.push("`messages.sms`: give exactly one of `from` (an E.164 number) or `messaging_service_sid` (MG + 32 hex digits)".into());
            None
        }
    }
}

/// Checks `messages.email`.
fn email(
    raw: Option<RawEmail>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<EmailConfig> {
    let e = raw?;
    if !matches!(e.tls.as_str(), "none" | "starttls" | "tls") {
        problems.push(format!(
            "`messages.email.tls`: `{}` must be none, starttls or tls",
            e.tls
        ));
    }
    if !e.from.contains('@') {
        problems.push(format!(
            "`messages.email.from`: `{}` is not an email address",
            e.from
        ));
    }
    let credentials = match (e.username, e.password_env) {
        (Some(u), Some(env_name)) => {
            secret_env(env, &env_name, "`messages.email.password_env`", 1, problems).map(|p| (u, p))
        }
        (None, None) => None,
        _ => {
            problems.push("`messages.email`: `username` and `password_env` go together".into());
            None
        }
    };
    Some(EmailConfig {
        host: e.host,
        port: e.port,
        tls: e.tls,
        from: e.from,
        credentials,
    })
}

/// Checks `limits:`; returns the SMS prefixes and the global sends per hour (default 1000).
pub(crate) fn limits(raw: RawLimits, problems: &mut Vec<String>) -> (Vec<String>, u32) {
    for p in &raw.sms_prefixes {
        if !(p.starts_with('+')
            && p.len() >= 2
            && p.len() <= 8
            && p[1..].chars().all(|c| c.is_ascii_digit()))
        {
            problems.push(format!(
                "`limits.sms_prefixes`: `{p}` is not an E.164 prefix such as `+1` or `+44`"
            ));
        }
    }
    if raw.global_per_hour == Some(0) {
        problems.push("`limits.global_per_hour` must be at least 1".into());
    }
    (raw.sms_prefixes, raw.global_per_hour.unwrap_or(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;
    use crate::testing::{GOOD, env, write};

    #[test]
    fn messages_and_tickets_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = format!(
            "{GOOD}messages: {{ sms: {{ from: \"+15555550000\" }}, email: {{ host: 127.0.0.1, port: 2525, tls: none, from: desk@example.com }} }}\ntickets: {{ kind: servicenow, base_url: http://127.0.0.1:9/, token_env: TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &good), &env).expect("config");
        assert_eq!(c.sms, Some(SmsFrom::Number("+15555550000".into())));
        assert_eq!(c.email.map(|e| e.port), Some(Some(2525)));
        assert!(matches!(
            c.tickets.map(|t| t.system),
            Some(crate::TicketSystem::ServiceNow { base_url, .. }) if base_url == "http://127.0.0.1:9"
        ));
        let bad = format!(
            "{GOOD}messages: {{ sms: {{ from: \"+1555\", messaging_service_sid: MG1 }}, email: {{ host: h, tls: ssl, from: nobody }} }}\ntickets: {{ kind: jira, base_url: x }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`messages.sms`",
            "`messages.email.tls`",
            "`messages.email.from`",
            "`tickets.kind`",
            "`tickets.base_url`",
            "`tickets`: give",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
