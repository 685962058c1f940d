//! Resetline's boundary with Twilio's voice webhooks.
//!
//! This crate turns typed call instructions into TwiML ([`twiml`], the
//! document model; [`render`], its writer on quick-xml), checks that an
//! incoming webhook really came from Twilio ([`signature`]), and decodes the
//! webhook's form parameters ([`params`]). It does no I/O.
//!
//! **Architecture invariant:** this is the only code in Resetline that writes
//! XML; every document it returns is well-formed, escaped, ASCII and under
//! Twilio's 64 kB limit ([`MAX_DOCUMENT_BYTES`]). Callers build a [`Response`]
//! from typed verbs and call [`Response::render`]; there is no way to put raw
//! XML into a document.
//!
//! ```
//! use resetline_twiml::{Gather, Method, Response, Say};
//!
//! let doc = Response::new()
//!     .verb(
//!         Gather::new()
//!             .num_digits(6)
//!             .action("/step/code", Method::Post)
//!             .child(Say::from_text("Enter the code we sent you.")),
//!     )
//!     .render()?;
//! assert_eq!(
//!     doc,
//!     "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
//!      <Gather action=\"/step/code\" method=\"POST\" numDigits=\"6\">\
//!      <Say>Enter the code we sent you.</Say></Gather></Response>"
//! );
//! # Ok::<(), resetline_twiml::RenderError>(())
//! ```

pub mod params;
pub mod render;
pub mod signature;
pub mod twiml;

pub use params::TooManyPairs;
pub use render::{MAX_DOCUMENT_BYTES, MAX_QUEUE_NAME_CHARS, RenderError};
pub use signature::SignatureError;
pub use twiml::{
    Dial, DialNoun, Enqueue, FinishOnKey, Gather, GatherChild, GatherInput, Hangup, Method, Number,
    Pause, Play, Queue, Redirect, Response, Say, SaySegment, Verb,
};
