//! The store's config in these tests: one place for the `RedisConfig` literal.

use std::time::Duration;

use resetline_engine::Secret;
use resetline_store_redis::testing::RedisServer;
use resetline_store_redis::{RedisConfig, RedisEndpoint};

/// Keys under `t:`, no login, no TLS, ended calls kept a day, commands timed out after
/// `timeout`.
pub(crate) fn config(endpoint: RedisEndpoint, timeout: Duration) -> RedisConfig {
    RedisConfig {
        endpoint,
        password: None,
        username: None,
        tls: false,
        key_prefix: "t:".into(),
        timeout,
        ended_call_ttl: Duration::from_secs(86_400),
    }
}

/// The endpoint of `server`.
pub(crate) fn url(server: &RedisServer) -> RedisEndpoint {
    RedisEndpoint::Url(Secret::new(server.url()))
}
