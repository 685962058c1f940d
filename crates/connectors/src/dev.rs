//! Stand-ins for `resetline demo`, where no carrier account exists: recording control that
//! logs and acknowledges. Invariant: only the demo wires these; `serve` never does.

use resetline_engine::{BackendError, BoxFuture, Recording, RecordingAck, RecordingChange};

/// Acknowledges every recording change and logs it, as if the carrier had.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogRecording;

impl Recording for LogRecording {
    fn change<'a>(
        &'a self,
        call_sid: &'a str,
        change: RecordingChange,
    ) -> BoxFuture<'a, Result<RecordingAck, BackendError>> {
        Box::pin(async move {
            match change {
                RecordingChange::Pause { .. } => {
                    tracing::info!(call = %call_sid, "demo: recording paused")
                }
                RecordingChange::Resume => {
                    tracing::info!(call = %call_sid, "demo: recording resumed")
                }
            }
            Ok(RecordingAck::Done)
        })
    }
}
