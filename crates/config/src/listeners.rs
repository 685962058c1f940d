//! `listen`, `public_url`, `admin_listen` and the `server:` section: where the webhooks and
//! the admin routes (`/metrics`, `/readyz`) listen, the URL carriers call, and the limits of
//! the public webhook port ([`resetline_server::Limits`]). Defaults come from
//! `Limits::default()`, so the file and the code cannot disagree; problems are added to the
//! caller's list, like every other section's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use resetline_server::{Limits, TlsFiles};

/// `tls:` as written: PEM files, relative to the config file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

/// The webhook port's TLS files, each of which must exist. Whether they hold a usable,
/// currently valid certificate and its key is checked when `serve` loads them
/// ([`resetline_server::Tls::load`]), with the clock of that moment.
pub(super) fn tls(
    raw: Option<RawTls>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    problems: &mut Vec<String>,
) -> Option<TlsFiles> {
    let raw = raw?;
    let files = TlsFiles {
        cert: resolve(&raw.cert),
        key: resolve(&raw.key),
    };
    for (field, path) in [("tls.cert", &files.cert), ("tls.key", &files.key)] {
        if !path.is_file() {
            problems.push(format!("`{field}`: {} is not a file", path.display()));
        }
    }
    Some(files)
}

/// The `server:` section as written (milliseconds and counts).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: usize,
    max_requests_in_flight: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        let d = Limits::default();
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        RawServer {
            header_read_timeout_ms: ms(d.header_read_timeout),
            body_read_timeout_ms: ms(d.body_read_timeout),
            idle_timeout_ms: ms(d.idle_timeout),
            max_connections: d.max_connections,
            max_requests_in_flight: d.max_in_flight,
        }
    }
}

pub(super) fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}

/// The webhook port's limits; each value out of its range is a problem.
pub(super) fn limits(raw: RawServer, problems: &mut Vec<String>) -> Limits {
    let mut within = |field: &str, value: u64, range: std::ops::RangeInclusive<u64>, why: &str| {
        if !range.contains(&value) {
            problems.push(format!(
                "`server.{field}`: {value} must be between {} and {}{why}",
                range.start(),
                range.end()
            ));
        }
    };
    within(
        "header_read_timeout_ms",
        raw.header_read_timeout_ms,
        100..=60_000,
        "",
    );
    within(
        "body_read_timeout_ms",
        raw.body_read_timeout_ms,
        100..=8_000,
        " (the body read counts toward the 10 s a webhook has until the end of its step)",
    );
    within("idle_timeout_ms", raw.idle_timeout_ms, 100..=600_000, "");
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    within(
        "max_connections",
        count(raw.max_connections),
        1..=65_536,
        "",
    );
    within(
        "max_requests_in_flight",
        count(raw.max_requests_in_flight),
        1..=65_536,
        "",
    );
    Limits {
        header_read_timeout: Duration::from_millis(raw.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(raw.body_read_timeout_ms),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        max_connections: raw.max_connections,
        max_in_flight: raw.max_requests_in_flight,
    }
}

/// `listen`: the webhook port's address.
pub(super) fn listen(raw: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    raw.parse::<SocketAddr>()
        .map_err(|_| {
            problems.push(format!(
                "`listen`: `{raw}` is not an address such as 127.0.0.1:8080"
            ))
        })
        .ok()
}

/// `public_url`: the base URL carriers call (signatures are checked against it), without
/// its trailing slash.
pub(super) fn public_url(raw: &str, problems: &mut Vec<String>) -> String {
    let public_url = raw.trim_end_matches('/').to_string();
    if !(public_url.starts_with("https://") || public_url.starts_with("http://"))
        || public_url.contains('?')
        || public_url.contains('#')
    {
        problems.push(format!("`public_url`: `{raw}` must be the http(s) base URL carriers call, without query or fragment"));
    }
    public_url
}

/// `admin_listen`: an address, not the webhook port's.
pub(super) fn admin_listen(
    raw: &str,
    listen: Option<SocketAddr>,
    problems: &mut Vec<String>,
) -> Option<SocketAddr> {
    let Ok(addr) = raw.parse::<SocketAddr>() else {
        problems.push(format!(
            "`admin_listen`: `{raw}` is not an address such as 127.0.0.1:9090"
        ));
        return None;
    };
    if listen.is_some_and(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
    }) {
        problems.push(format!(
            "`admin_listen`: {addr} is the webhook port (`listen`); the admin routes need a port of their own"
        ));
        return None;
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use crate::load;
    use crate::testing::{GOOD, env, write};

    #[test]
    fn the_admin_listener_and_the_webhook_ports_limits_have_defaults_and_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.server_limits, resetline_server::Limits::default());
        let tuned = format!(
            "{GOOD}admin_listen: 10.0.0.5:9100\nserver: {{ header_read_timeout_ms: 2000, body_read_timeout_ms: 3000, idle_timeout_ms: 60000, max_connections: 4096, max_requests_in_flight: 512 }}\n"
        );
        let c = load(&write(dir.path(), &tuned), &env).expect("config");
        assert_eq!(c.admin_listen.to_string(), "10.0.0.5:9100");
        assert_eq!(
            c.server_limits,
            resetline_server::Limits {
                header_read_timeout: std::time::Duration::from_secs(2),
                body_read_timeout: std::time::Duration::from_secs(3),
                idle_timeout: std::time::Duration::from_secs(60),
                max_connections: 4096,
                max_in_flight: 512,
            }
        );
        let bad = format!(
            "{GOOD}listen: 0.0.0.0:9090\nserver: {{ header_read_timeout_ms: 0, body_read_timeout_ms: 9000, idle_timeout_ms: 50, max_connections: 0, max_requests_in_flight: 100000 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "`admin_listen`: 127.0.0.1:9090 is the webhook port",
            "`server.header_read_timeout_ms`: 0",
            "`server.body_read_timeout_ms`: 9000",
            "`server.idle_timeout_ms`: 50",
            "`server.max_connections`: 0",
            "`server.max_requests_in_flight`: 100000",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
