//! A Twilio-faithful carrier simulator for Resetline.
//!
//! [`carrier`] places calls against a server URL and follows the TwiML it gets back verb by
//! verb, as Twilio does (signed requests, Gather semantics, limits, status callbacks);
//! [`rest`] fakes Twilio's REST API (Messages with delivery reports, Recordings) and the
//! caller's handset; [`lab`] runs the real server in-process on a loopback port with those
//! fakes and one shared fake clock; [`flowtest`] runs `*.test.yaml` flow tests in a lab.
//!
//! **Architecture invariant:** the simulator reaches the server only over HTTP, exactly as a
//! carrier would (it never calls the engine); it signs with resetline-twiml's signature code,
//! and time on a simulated call passes only through the shared [`resetline_engine::FakeClock`],
//! so the server, the REST fake and the caller always agree on the time.

pub mod carrier;
pub mod flowtest;
pub mod lab;
pub mod rest;
pub mod twiml;

pub use carrier::{Call, CallSpec, Carrier, End, Entry, Line, Spent, Timing};
pub use lab::{Lab, LabConfig};
pub use rest::{Delivery, FakeTwilio, Received, SmsBehaviour};
