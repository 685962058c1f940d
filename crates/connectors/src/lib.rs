//! Resetline backends that implement the engine's traits against real systems.
//!
//! - [`embedded`]: [`EmbeddedDirectory`], a YAML file of users for one-box deployments and the
//!   demo, with Argon2id PIN hashes and atomic, never-lossy writes.
//! - [`pin`]: Argon2id PIN hashes, the one verifier every directory uses, and [`PinHashing`],
//!   the process-wide bound on concurrent Argon2 work.
//! - [`ldap`]: [`LdapDirectory`], users in OpenLDAP (ppolicy) or Active Directory: lookups by
//!   configurable attributes, lock and disable state, password changes with the server's
//!   policy refusals spoken as reasons.
//! - [`testing`] (feature `testing`): a throwaway `slapd` for integration tests.
//! - [`twilio_recording`]: [`TwilioRecording`], call-recording pause and resume over Twilio's
//!   REST API (reqwest + rustls).
//! - [`twilio_messages`]: [`TwilioMessages`], SMS through Twilio's Messages API with delivery
//!   reports.
//! - [`smtp`]: [`SmtpMailer`], email over SMTP (lettre + rustls; STARTTLS or implicit TLS).
//! - [`channel`]: [`ByChannel`], one messenger for the engine routing SMS and email.
//! - [`scim`]: [`ScimDirectory`], users of a SCIM 2.0 service provider (filter lookups,
//!   PatchOp password change).
//! - [`okta`]: [`OktaDirectory`], users of an Okta org through its Users API (search,
//!   status, admin set-password, unlock).
//! - [`breaker`]: [`Breaker`] and [`Guarded`], a circuit breaker per backend in front of a
//!   directory, messenger or ticket system.
//! - [`http_action`]: [`HttpDataActions`], the `http` node's requests to configured backends
//!   (bearer token, HMAC request signing, a breaker per backend); [`signing`] holds the
//!   signature and the receiver's check.
//! - [`servicenow`]: [`ServiceNowTickets`], incidents through the ServiceNow Table API.
//! - [`dev`]: demo stand-ins: [`dev::LogRecording`], [`dev::Outbox`].
//!
//! Invariant: nothing in this crate prints, logs or puts into an error a PIN, a PIN hash, a
//! message body (it may carry a one-time code), a password or an auth token; secrets stay in
//! [`resetline_engine::Secret`] until the one call that needs them, provider text is masked
//! before it reaches an error, and every failure reaches the engine as a
//! [`resetline_engine::BackendError`] (or a [`resetline_engine::SetSecretError`] /
//! [`resetline_engine::SendError`]), never as a panic.

/// `Directory` for a backend whose own async methods `find_now`, `verify_now` and `set_now`
/// do the work (embedded, LDAP, SCIM, Okta): the boxing the object-safe trait needs, written
/// once.
macro_rules! own_methods_directory {
    ($backend:ty) => {
        impl resetline_engine::Directory for $backend {
            fn find<'a>(
                &'a self,
                by: resetline_flow::model::LookupBy,
                value: &'a str,
            ) -> resetline_engine::BoxFuture<
                'a,
                Result<Option<resetline_engine::Account>, resetline_engine::BackendError>,
            > {
                Box::pin(self.find_now(by, value))
            }

            fn verify_pin<'a>(
                &'a self,
                account: &'a str,
                pin: &'a resetline_engine::Secret,
            ) -> resetline_engine::BoxFuture<'a, Result<bool, resetline_engine::BackendError>> {
                Box::pin(self.verify_now(account, pin))
            }

            fn set_secret<'a>(
                &'a self,
                account: &'a str,
                secret: &'a resetline_engine::Secret,
            ) -> resetline_engine::BoxFuture<'a, Result<(), resetline_engine::SetSecretError>> {
                Box::pin(self.set_now(account, secret))
            }
        }
    };
}
pub(crate) use own_methods_directory;

pub mod breaker;
pub mod channel;
pub mod dev;
pub mod embedded;
#[cfg(test)]
mod fake_http;
pub mod http_action;
mod idp;
pub mod ldap;
pub mod okta;
pub mod pin;
mod rest;
pub mod scim;
pub mod servicenow;
pub mod signing;
pub mod smtp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod twilio_messages;
pub mod twilio_recording;

pub use breaker::{Breaker, BreakerPolicy, BreakerState, Guarded};
pub use channel::ByChannel;
pub use dev::{Outbox, OutboxMessage};
pub use embedded::{EmbeddedDirectory, LoadError, Problem};
pub use http_action::{HttpConfigError, HttpDataActions};
pub use idp::IdpConfigError;
pub use ldap::{BindGuard, Flavor, LdapConfig, LdapConfigError, LdapDirectory, PinCheck};
pub use okta::OktaDirectory;
pub use pin::{HashError, PinHashing, hash_pin};
pub use scim::ScimDirectory;
pub use servicenow::{ServiceNowAuth, ServiceNowConfigError, ServiceNowTickets};
pub use smtp::{SmtpConfigError, SmtpMailer, SmtpTls};
pub use twilio_messages::{SmsSender, TwilioMessages};
pub use twilio_recording::{ConfigError, TwilioRecording};

/// The ticket system when none is configured: every call fails, so `ticket` nodes take their
/// error path (an agent, in the shipped flow) instead of inventing a number.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTickets;

impl resetline_engine::Tickets for NoTickets {
    fn open(
        &self,
        _ticket: resetline_engine::NewTicket,
    ) -> resetline_engine::BoxFuture<
        '_,
        Result<resetline_engine::TicketRef, resetline_engine::BackendError>,
    > {
        Box::pin(async {
            Err(resetline_engine::BackendError::new(
                "tickets",
                "no ticket system is configured",
            ))
        })
    }

    fn close<'a>(
        &'a self,
        _ticket: &'a resetline_engine::TicketRef,
        _note: &'a str,
    ) -> resetline_engine::BoxFuture<'a, Result<(), resetline_engine::BackendError>> {
        Box::pin(async {
            Err(resetline_engine::BackendError::new(
                "tickets",
                "no ticket system is configured",
            ))
        })
    }
}
