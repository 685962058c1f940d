//! Recording around `secure` sections: paused before the first node of a section, resumed on
//! every way out (an edge out of the section, a transfer, the end of the call, a hang-up).
//!
//! Invariant: no secret is collected while recording runs: a pause the carrier does not
//! acknowledge takes the section's `pause_failed` edge (or, with `when_absent: fallback`, a
//! call without a recording does), and every pause and resume is audited with how it went.

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::WhenAbsent;

use super::{Engine, Flowing};
use crate::backend::{RecordingAck, RecordingChange};
use crate::session::Session;

impl Engine {
    /// Pauses recording on entering secure section `section`. `Err`: the section's
    /// `pause_failed` outcome (the carrier did not acknowledge, or there is no recording and
    /// the flow says `when_absent: fallback`).
    pub(super) async fn pause<'f>(
        &self,
        flow: &Flow,
        s: &mut Session,
        section: &str,
    ) -> Result<(), Flowing<'f>> {
        let skip =
            flow.settings.recording.pause_behavior == resetline_flow::model::PauseBehavior::Skip;
        let ack = self
            .within(
                "recording",
                self.recording
                    .change(&s.call_sid, RecordingChange::Pause { skip }),
            )
            .await;
        match ack {
            Ok(RecordingAck::Done) => {
                s.recording_paused_ms = Some(self.clock.now_ms());
                tracing::info!(call = %s.call_sid, section = %section, "recording paused");
                self.audit(s, Ev::RecordingPaused, Out::Success, "paused");
            }
            Ok(RecordingAck::NoRecording)
                if flow.settings.recording.when_absent == WhenAbsent::Proceed =>
            {
                tracing::info!(call = %s.call_sid, section = %section, "no recording to pause");
                self.audit(s, Ev::RecordingPaused, Out::Info, "no_recording");
            }
            Ok(RecordingAck::NoRecording) => {
                self.audit(s, Ev::RecordingPaused, Out::Failure, "no_recording");
                return Err(Flowing::Outcome("pause_failed"));
            }
            Err(e) => {
                tracing::warn!(call = %s.call_sid, section = %section, error = %e, "recording pause failed");
                self.audit(
                    s,
                    Ev::RecordingPaused,
                    Out::Error,
                    if e.timeout {
                        "timeout"
                    } else {
                        "carrier_error"
                    },
                );
                return Err(Flowing::Outcome("pause_failed"));
            }
        }
        Ok(())
    }

    /// Resumes recording on leaving a secure section (however the call leaves it), audited
    /// with how long it was paused.
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
