//! Recording around `secure` sections: paused before the first node of a section, resumed on
//! every way out (an edge out of the section, a transfer, the end of the call, a hang-up).
//!
//! Invariant: no secret is collected while recording runs: a pause the carrier does not
//! acknowledge takes the section's `pause_failed` edge (or, with `when_absent: fallback`, a
//! call without a recording does), and every pause and resume is audited with how it went.

use resetline_audit::{EventType as Ev, Outcome as Out};

use super::Engine;
use crate::backend::RecordingChange;
use crate::session::Session;

impl Engine {
    pub(super) async fn resume(&self, s: &mut Session) {
        let paused_for = s
            .recording_paused_ms
            .map(|p| self.clock.now_ms().saturating_sub(p));
        match self
            .within(
                "recording",
                self.recording.change(&s.call_sid, RecordingChange::Resume),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(call = %s.call_sid, paused_ms = paused_for.unwrap_or(0), "recording resumed");
                let r = self
                    .record(s, Ev::RecordingResumed, Out::Info)
                    .with_reason("resumed")
                    .with_detail("paused_ms", paused_for.unwrap_or(0).to_string());
                s.pending_audit.push(r);
            }
            Err(e) => {
                tracing::warn!(call = %s.call_sid, error = %e, "recording resume failed");
                let r = self
                    .record(s, Ev::RecordingResumed, Out::Error)
                    .with_reason(if e.timeout {
                        "timeout"
                    } else {
                        "carrier_error"
                    })
                    .with_detail("paused_ms", paused_for.unwrap_or(0).to_string());
                s.pending_audit.push(r);
            }
        }
        s.recording_paused_ms = None;
    }
}
