//! `store:`: where sessions, send counters, lockouts and call leases live (memory or Redis),
//! and how long the ids of ended calls are remembered. Problems are added to the caller's
//! list, like every other section's.

use serde::Deserialize;

use resetline_engine::Secret;

use crate::secret_env;

/// Which Redis: one server, a Cluster, or the master a Sentinel names (the store's own type).
pub use resetline_store_redis::RedisEndpoint;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    #[serde(default = "default_store_kind")]
    kind: String,
    url: Option<String>,
    url_env: Option<String>,
    cluster: Option<Vec<String>>,
    sentinel: Option<RawSentinel>,
    username: Option<String>,
    password_env: Option<String>,
    #[serde(default = "default_key_prefix")]
    key_prefix: String,
    #[serde(default = "default_store_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    tls: bool,
    #[serde(default = "default_ended_call_ttl")]
    ended_call_ttl_s: u64,
    ended_calls_max: Option<usize>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: default_store_kind(),
            url: None,
            url_env: None,
            cluster: None,
            sentinel: None,
            username: None,
            password_env: None,
            key_prefix: default_key_prefix(),
            timeout_ms: default_store_timeout(),
            tls: false,
            ended_call_ttl_s: default_ended_call_ttl(),
            ended_calls_max: None,
        }
    }
}

/// `store.sentinel`: the Sentinels and the name of the master they watch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSentinel {
    nodes: Vec<String>,
    service: String,
}

fn default_store_kind() -> String {
    "memory".into()
}
fn default_key_prefix() -> String {
    "resetline:".into()
}
fn default_store_timeout() -> u64 {
    500
}
fn default_ended_call_ttl() -> u64 {
    resetline_store::ENDED_CALL_TTL_MS / 1000
}

/// Where sessions, send counters, lockouts and call leases live.
#[derive(Clone, Debug, Default)]
pub enum StoreConfig {
    /// In this process (one box; the default).
    #[default]
    Memory,
    /// Redis, shared by every replica.
    Redis(RedisStoreConfig),
}

/// How long (and, in memory, how many) ended calls the store remembers, so a replayed first
/// webhook of a call that already ended is refused (`store.ended_call_ttl_s`,
/// `store.ended_calls_max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndedCalls {
    /// How long an ended call is remembered, ms.
    pub ttl_ms: u64,
    /// Most ended calls the memory store holds (the oldest go first); Redis holds them all.
    pub max: usize,
}

impl Default for EndedCalls {
    fn default() -> Self {
        EndedCalls {
            ttl_ms: resetline_store::ENDED_CALL_TTL_MS,
            max: resetline_store::ENDED_CALLS_MAX,
        }
    }
}

/// A Redis store.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    /// Where Redis is.
    pub endpoint: RedisEndpoint,
    /// ACL username (with `password`).
    pub username: Option<String>,
    /// Password from `password_env`.
    pub password: Option<Secret>,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Longest wait for one Redis command.
    pub timeout_ms: u64,
    /// TLS (also implied by a `rediss://` URL, or a Cluster node's).
    pub tls: bool,
}

/// `store.ended_call_ttl_s` (one minute to 30 days) and `store.ended_calls_max` (memory only).
pub(crate) fn validate_ended_calls(raw: &RawStore, problems: &mut Vec<String>) -> EndedCalls {
    if !(60..=2_592_000).contains(&raw.ended_call_ttl_s) {
        problems.push(format!(
            "`store.ended_call_ttl_s`: {} must be between 60 and 2592000 (30 days)",
            raw.ended_call_ttl_s
        ));
    }
    if raw.kind != "memory" && raw.ended_calls_max.is_some() {
        problems.push(
            "`store.ended_calls_max` is for `kind: memory` (Redis expires each ended call by itself)"
                .into(),
        );
    }
    let max = raw
        .ended_calls_max
        .unwrap_or(resetline_store::ENDED_CALLS_MAX);
    if !(1..=10_000_000).contains(&max) {
        problems.push(format!(
            "`store.ended_calls_max`: {max} must be between 1 and 10000000"
        ));
    }
    EndedCalls {
        ttl_ms: raw.ended_call_ttl_s.saturating_mul(1000),
        max,
    }
}

/// A `redis://` or `rediss://` URL written in the config under `key`: never with credentials
/// (they go through `password_env`, or the whole URL through `url_env`), never repeated in a
/// problem (a mistyped URL may still carry a password).
fn config_redis_url(url: &str, key: &str, problems: &mut Vec<String>) -> bool {
    if url.contains('@') {
        problems.push(format!("`{key}`: must not carry credentials; give the password through `password_env` (or the whole URL through `url_env`)"));
        false
    } else if !is_redis_url(url) {
        problems.push(format!("`{key}`: not a redis:// or rediss:// URL"));
        false
    } else {
        true
    }
}

fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

/// `store.cluster` or `store.sentinel.nodes`: 1 to 64 node URLs.
fn config_redis_nodes(nodes: Vec<String>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    if !(1..=64).contains(&nodes.len()) {
        problems.push(format!("`{key}`: give 1 to 64 node URLs"));
    }
    let mut good = true;
    for node in &nodes {
        good &= config_redis_url(node, key, problems);
    }
    if good { nodes } else { Vec::new() }
}

/// Which Redis `store:` names: exactly one of `url`, `url_env`, `cluster`, `sentinel`.
fn validate_redis_endpoint(
    raw: &mut RawStore,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<RedisEndpoint> {
    match (
        raw.url.take(),
        raw.url_env.take(),
        raw.cluster.take(),
        raw.sentinel.take(),
    ) {
        (Some(url), None, None, None) => config_redis_url(&url, "store.url", problems)
            .then(|| RedisEndpoint::Url(Secret::new(url))),
        (None, Some(name), None, None) => match env(&name) {
            Some(v) if is_redis_url(&v) => Some(RedisEndpoint::Url(Secret::new(v))),
            Some(_) => {
                problems.push(format!("`store.url_env`: environment variable `{name}` does not hold a redis:// or rediss:// URL"));
                None
            }
            None => {
                problems.push(format!(
                    "`store.url_env`: environment variable `{name}` is not set"
                ));
                None
            }
        },
        (None, None, Some(nodes), None) => {
            let nodes = config_redis_nodes(nodes, "store.cluster", problems);
            (!nodes.is_empty()).then_some(RedisEndpoint::Cluster(nodes))
        }
        (None, None, None, Some(sentinel)) => {
            let nodes = config_redis_nodes(sentinel.nodes, "store.sentinel.nodes", problems);
            let service = sentinel.service;
            if service.is_empty()
                || service.len() > 128
                || service.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems
                    .push("`store.sentinel.service`: 1 to 128 characters without spaces".into());
                return None;
            }
            (!nodes.is_empty()).then_some(RedisEndpoint::Sentinel { nodes, service })
        }
        _ => {
            problems.push(
                "`store`: `kind: redis` needs exactly one of `url` or `url_env` (or `cluster`, or `sentinel`)".into(),
            );
            None
        }
    }
}

pub(crate) fn validate_store(
    mut raw: RawStore,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> StoreConfig {
    match raw.kind.as_str() {
        "memory" => {
            if raw.url.is_some()
                || raw.url_env.is_some()
                || raw.cluster.is_some()
                || raw.sentinel.is_some()
                || raw.username.is_some()
                || raw.password_env.is_some()
                || raw.tls
            {
                problems.push(
                    "`store`: `url`, `url_env`, `cluster`, `sentinel`, `username`, `password_env` and `tls` are for `kind: redis`"
                        .into(),
                );
            }
            StoreConfig::Memory
        }
        "redis" => {
            let endpoint = validate_redis_endpoint(&mut raw, env, problems);
            validate_redis(raw, endpoint, env, problems)
        }
        other => {
            problems.push(format!(
                "`store.kind`: `{other}` is not supported (supported: memory, redis)"
            ));
            StoreConfig::Memory
        }
    }
}

/// The rest of a `kind: redis` store: password, key prefix, timeout, TLS.
fn validate_redis(
    raw: RawStore,
    endpoint: Option<RedisEndpoint>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> StoreConfig {
    let password = raw
        .password_env
        .as_deref()
        .and_then(|name| secret_env(env, name, "`store.password_env`", 1, problems));
    if raw.username.is_some() && raw.password_env.is_none() {
        problems.push("`store.username` needs `password_env`".into());
    }
    if raw.key_prefix.is_empty()
        || raw.key_prefix.len() > 64
        || raw
            .key_prefix
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        problems.push(format!(
            "`store.key_prefix`: `{}` must be 1 to 64 characters without spaces, `{{` or `}}`",
            raw.key_prefix
        ));
    }
    if !(10..=5_000).contains(&raw.timeout_ms) {
        problems.push(format!(
            "`store.timeout_ms`: {} must be between 10 and 5000",
            raw.timeout_ms
        ));
    }
    let Some(endpoint) = endpoint else {
        return StoreConfig::Memory;
    };
    let tls_url = match &endpoint {
        RedisEndpoint::Url(url) => url.expose().starts_with("rediss://"),
        RedisEndpoint::Cluster(nodes) => nodes.iter().any(|n| n.starts_with("rediss://")),
        RedisEndpoint::Sentinel { .. } => false,
    };
    StoreConfig::Redis(RedisStoreConfig {
        tls: raw.tls || tls_url,
        endpoint,
        username: raw.username,
        password,
        key_prefix: raw.key_prefix,
        timeout_ms: raw.timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load;
    use crate::testing::{GOOD, env, write};

    #[test]
    fn the_store_is_memory_by_default_and_redis_is_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert!(matches!(c.store, StoreConfig::Memory));
        let good = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://10.0.0.5:6379/2\", password_env: TOKEN, key_prefix: \"rl:\", timeout_ms: 300 }}\n"
        );
        let c = load(&write(dir.path(), &good), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(
            matches!(&r.endpoint, RedisEndpoint::Url(u) if u.expose() == "redis://10.0.0.5:6379/2")
        );
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(
            (r.key_prefix.as_str(), r.timeout_ms, r.tls),
            ("rl:", 300, false)
        );
        let from_env = format!("{GOOD}store: {{ kind: redis, url_env: REDIS_URL }}\n");
        let c = load(&write(dir.path(), &from_env), &|n| {
            if n == "REDIS_URL" {
                Some("rediss://:hunter2@cache:6380".into())
            } else {
                env(n)
            }
        })
        .expect("config");
        assert!(
            matches!(c.store, StoreConfig::Redis(ref r) if r.tls),
            "rediss implies TLS"
        );

        let bad = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://:hunter2@cache:6379\", key_prefix: \"a{{b\", timeout_ms: 0 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in [
            "must not carry credentials",
            "`store.key_prefix`",
            "`store.timeout_ms`",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        assert!(!text.contains("hunter2"), "no password echoed: {text}");
        for (bad, want) in [
            ("{ kind: postgres }", "`store.kind`"),
            ("{ kind: redis }", "exactly one of `url` or `url_env`"),
            ("{ kind: redis, url_env: NOPE }", "`NOPE` is not set"),
            ("{ kind: redis, url: \"http://cache\" }", "not a redis://"),
            (
                "{ kind: memory, url: \"redis://cache\" }",
                "are for `kind: redis`",
            ),
        ] {
            let text = load(&write(dir.path(), &format!("{GOOD}store: {bad}\n")), &env)
                .expect_err(bad)
                .to_string();
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }

    #[test]
    fn ended_calls_are_remembered_a_day_by_default_and_the_keys_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&write(dir.path(), GOOD), &env).expect("config");
        assert_eq!(
            c.ended_calls,
            EndedCalls {
                ttl_ms: 86_400_000,
                max: 100_000
            }
        );
        let set = format!("{GOOD}store: {{ ended_call_ttl_s: 3600, ended_calls_max: 500 }}\n");
        let c = load(&write(dir.path(), &set), &env).expect("config");
        assert_eq!(
            c.ended_calls,
            EndedCalls {
                ttl_ms: 3_600_000,
                max: 500
            }
        );
        let bad = format!(
            "{GOOD}store: {{ kind: redis, url: \"redis://cache\", ended_call_ttl_s: 5, ended_calls_max: 10 }}\n"
        );
        let text = load(&write(dir.path(), &bad), &env)
            .expect_err("invalid")
            .to_string();
        for want in ["`store.ended_call_ttl_s`", "`store.ended_calls_max` is for"] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let text = load(
            &write(
                dir.path(),
                &format!("{GOOD}store: {{ ended_calls_max: 0 }}\n"),
            ),
            &env,
        )
        .expect_err("invalid")
        .to_string();
        assert!(text.contains("`store.ended_calls_max`: 0"), "{text}");
    }

    #[test]
    fn the_example_configuration_loads_with_either_store() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let example =
            std::fs::read_to_string(deploy.join("resetline.example.yaml")).expect("example");
        let env = |_: &str| Some("x".repeat(32));
        let c = load(&deploy.join("resetline.example.yaml"), &env).expect("the example loads");
        assert!(matches!(c.store, StoreConfig::Memory));
        let redis = example.replacen(
            "  kind: memory ",
            "  kind: redis\n  url: redis://redis.internal:6379/0\n  tls: true\n ",
            1,
        );
        assert_ne!(redis, example);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("redis.yaml");
        let rebased = redis.replace("../", &format!("{}/../", deploy.display()));
        std::fs::write(&p, rebased).expect("write");
        let c = load(&p, &env).expect("the example with Redis loads");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert_eq!(
            (r.key_prefix.as_str(), r.timeout_ms, r.tls),
            ("resetline:", 500, true)
        );
    }

    #[test]
    fn a_redis_cluster_or_sentinel_is_validated_with_the_other_problems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = format!(
            "{GOOD}store: {{ kind: redis, cluster: [\"redis://10.0.0.5:6379\", \"rediss://10.0.0.6:6379\"] }}\n"
        );
        let c = load(&write(dir.path(), &cluster), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(matches!(&r.endpoint, RedisEndpoint::Cluster(n) if n.len() == 2));
        assert!(r.tls, "a rediss:// node implies TLS");
        let sentinel = format!(
            "{GOOD}store: {{ kind: redis, sentinel: {{ nodes: [\"redis://10.0.0.7:26379\"], service: mymaster }}, password_env: TOKEN }}\n"
        );
        let c = load(&write(dir.path(), &sentinel), &env).expect("config");
        let StoreConfig::Redis(r) = c.store else {
            panic!("redis expected")
        };
        assert!(
            matches!(&r.endpoint, RedisEndpoint::Sentinel { nodes, service } if nodes.len() == 1 && service == "mymaster")
        );
        assert!(r.password.is_some() && !r.tls);
        for (bad, want) in [
            (
                "{ kind: redis, url: \"redis://cache\", cluster: [\"redis://a:1\"] }",
                "exactly one of `url` or `url_env` (or `cluster`, or `sentinel`)",
            ),
            (
                "{ kind: redis, cluster: [] }",
                "`store.cluster`: give 1 to 64",
            ),
            (
                "{ kind: redis, cluster: [\"redis://:hunter2@a:1\"] }",
                "`store.cluster`: must not carry credentials",
            ),
            (
                "{ kind: redis, sentinel: { nodes: [\"http://s:26379\"], service: m } }",
                "`store.sentinel.nodes`: not a redis://",
            ),
            (
                "{ kind: redis, sentinel: { nodes: [\"redis://s:26379\"], service: \"\" } }",
                "`store.sentinel.service`",
            ),
            (
                "{ kind: memory, sentinel: { nodes: [\"redis://s:26379\"], service: m } }",
                "are for `kind: redis`",
            ),
        ] {
            let text = load(&write(dir.path(), &format!("{GOOD}store: {bad}\n")), &env)
                .expect_err(bad)
                .to_string();
            assert!(text.contains(want), "{want} missing from:\n{text}");
            assert!(!text.contains("hunter2"), "no password echoed: {text}");
        }
    }
}
