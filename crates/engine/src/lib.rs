//! The Resetline interpreter.
//!
//! One step = (checked flow, session, carrier event, clock, random source, backends) ->
//! carrier-neutral actions + a new session. Backends are traits ([`backend`]); time and
//! randomness are injected ([`clock`]). Architecture invariant: given the same inputs and the
//! same backend replies, a step produces the same actions and session; the engine knows
//! nothing of HTTP, XML or any carrier's wire format, and no secret ever leaves a [`Secret`]
//! except into the one backend call meant for it.

pub mod action;
pub mod backend;
pub mod clock;
pub mod desk;
pub mod interp;
pub mod otp;
pub mod policy;
pub mod secret;
pub mod session;
pub mod step_url;
pub mod testing;

pub use action::{Action, Spoken};
pub use backend::{
    Account, AccountState, AuditSink, AuditStats, BackendError, BoxFuture, CallLeases, Counters,
    Directory, HttpActions, HttpError, HttpRequest, HttpResponse, HttpSigning, LockPolicy,
    LockState, Lockouts, Messenger, NewTicket, OutgoingMessage, Recording, RecordingAck,
    RecordingChange, Reservation, SendError, SendLimits, SentMessage, SessionStore, SetSecretError,
    StoreError, TicketRef, Tickets, loaded_or_released,
};
pub use clock::{Clock, FakeClock, OsRandom, Random, SystemClock};
pub use interp::{Engine, Event, Step, finish_by, until};
pub use secret::{Secret, scrub_digits};
pub use session::{Session, Var};
pub use step_url::{StepEvent, StepUrl};
