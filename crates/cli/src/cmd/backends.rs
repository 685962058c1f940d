//! Builds the identity-provider directories, the ticket system and the HTTP data actions
//! the configuration names, and puts backends behind their circuit breakers (glue only: the connectors live in
//! `resetline-connectors`).

use std::sync::Arc;
use std::time::Duration;

use resetline_config::{
    BreakerConfig, HttpBackendConfig, IdpConfig, TicketAuth, TicketSystem, TicketsConfig,
};
use resetline_connectors::{
    Breaker, BreakerPolicy, Guarded, HttpDataActions, HttpTickets, OktaDirectory, ScimDirectory,
    ServiceNowAuth, ServiceNowTickets,
};
use resetline_engine::{Clock, Directory, Messenger, Recording, Tickets};

/// The breaker policy of the configuration.
pub(crate) fn policy(cfg: &BreakerConfig) -> BreakerPolicy {
    BreakerPolicy {
        failures: cfg.failures,
        cool_down: Duration::from_millis(cfg.cool_down_ms),
    }
}

/// The ticket system: ServiceNow or the generic HTTP backend, each request within `timeout`.
pub(crate) fn tickets(t: &TicketsConfig, timeout: Duration) -> anyhow::Result<Arc<dyn Tickets>> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("tickets: {e}");
    let auth = match &t.auth {
        TicketAuth::Basic(user, password) => ServiceNowAuth::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        TicketAuth::Bearer(token) => ServiceNowAuth::Bearer(token.clone()),
    };
    Ok(match &t.system {
        TicketSystem::ServiceNow {
            base_url,
            assignment_group,
        } => {
            let mut sn = ServiceNowTickets::new(base_url, auth).map_err(|e| fail(&e))?;
            if let Some(group) = assignment_group {
                sn = sn.with_assignment_group(group).map_err(|e| fail(&e))?;
            }
            Arc::new(sn.with_timeout(timeout))
        }
        TicketSystem::Http(spec) => Arc::new(
            HttpTickets::new(spec.clone(), auth)
                .map_err(|e| fail(&e))?
                .with_timeout(timeout),
        ),
    })
}

/// A SCIM 2.0 directory.
pub(crate) fn scim(c: &IdpConfig) -> anyhow::Result<Arc<dyn Directory>> {
    let fail = |e| anyhow::anyhow!("directory (scim): {e}");
    let mut d = ScimDirectory::new(&c.base_url, c.token.clone())
        .map_err(fail)?
        .with_timeout(Duration::from_millis(c.timeout_ms));
    if let Some(a) = &c.employee_id_attribute {
        d = d.with_employee_id_attribute(a).map_err(fail)?;
    }
    if let Some(a) = &c.pin_hash_attribute {
        d = d.with_pin_hash_attribute(a).map_err(fail)?;
    }
    Ok(Arc::new(d))
}

/// An Okta directory.
pub(crate) fn okta(c: &IdpConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn Directory>> {
    let fail = |e| anyhow::anyhow!("directory (okta): {e}");
    let mut d = OktaDirectory::new(&c.base_url, c.token.clone())
        .map_err(fail)?
        .with_timeout(Duration::from_millis(c.timeout_ms))
        .with_unlock(c.unlock)
        .with_clock(clock);
    if let Some(a) = &c.employee_id_attribute {
        d = d.with_employee_id_attribute(a).map_err(fail)?;
    }
    if let Some(a) = &c.pin_hash_attribute {
        d = d.with_pin_hash_attribute(a).map_err(fail)?;
    }
    Ok(Arc::new(d))
}

/// The HTTP data actions for the configured backends (none: every `http` node is refused
/// and takes its error path).
pub(crate) fn http(
    backends: &[HttpBackendConfig],
    policy: BreakerPolicy,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<HttpDataActions> {
    let mut actions =
        HttpDataActions::new(clock, policy).map_err(|e| anyhow::anyhow!("http: {e}"))?;
    for b in backends {
        actions = actions
            .with_backend(&b.name, &b.base_url, b.token.clone(), b.signing.clone())
            .map_err(|e| anyhow::anyhow!("http: {e}"))?;
    }
    Ok(actions)
}

/// Builds breakers of one policy on one clock, and remembers them for the metrics.
pub(crate) struct Breakers {
    pub(crate) policy: BreakerPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    made: std::sync::Mutex<Vec<(String, Arc<Breaker>)>>,
}

impl Breakers {
    pub(crate) fn new(policy: BreakerPolicy, clock: Arc<dyn Clock>) -> Self {
        Breakers {
            policy,
            clock,
            made: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn breaker(&self, name: &'static str) -> Arc<Breaker> {
        let b = Arc::new(Breaker::new(name, self.policy, self.clock.clone()));
        if let Ok(mut made) = self.made.lock() {
            let n = made.iter().filter(|(m, _)| m.starts_with(name)).count();
            let label = if n == 0 {
                name.to_owned()
            } else {
                format!("{name}{}", n + 1)
            };
            made.push((label, b.clone()));
        }
        b
    }

    /// Every breaker made, with its metric label; `http` backends as `http/<name>`.
    pub(crate) fn all(&self, http: &HttpDataActions) -> Vec<(String, Arc<Breaker>)> {
        let mut all = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        all.extend(
            http.breakers()
                .into_iter()
                .map(|(name, b)| (format!("http/{name}"), b)),
        );
        all
    }

    /// `inner` behind a breaker of its own.
    pub(crate) fn directory(&self, inner: Arc<dyn Directory>) -> Arc<dyn Directory> {
        Arc::new(Guarded::new(inner, self.breaker("directory")))
    }

    /// `inner` behind a breaker of its own.
    pub(crate) fn messenger(&self, inner: Arc<dyn Messenger>) -> Arc<dyn Messenger> {
        Arc::new(Guarded::new(inner, self.breaker("messages")))
    }

    /// `inner` behind a breaker of its own.
    pub(crate) fn recording(&self, inner: Arc<dyn Recording>) -> Arc<dyn Recording> {
        Arc::new(Guarded::new(inner, self.breaker("recording")))
    }

    /// `inner` behind a breaker of its own.
    pub(crate) fn tickets(&self, inner: Arc<dyn Tickets>) -> Arc<dyn Tickets> {
        Arc::new(Guarded::new(inner, self.breaker("tickets")))
    }
}
