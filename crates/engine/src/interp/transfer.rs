//! `transfer`: to an agent queue or a number, and what the carrier reports afterwards.
//!
//! Invariant: recording is resumed before the caller leaves the engine, the transfer is
//! audited with its target, and a transfer that did not connect takes the node's `failed`
//! edge (or the apology and the end of the call).

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;

use super::{Engine, Flowing};
use crate::session::{Session, Waiting};

impl Engine {
    pub(super) fn transfer_result<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        result: &str,
    ) -> Flowing<'f> {
        if s.waiting != Waiting::Transfer {
            return Flowing::Wait;
        }
        let ok = matches!(
            result,
            "bridged" | "completed" | "answered" | "hangup" | "leave" | "redirected"
        );
        if ok {
            s.ended = Some("transferred".into());
            self.audit(s, Ev::CallEnded, Out::Info, "transferred");
            return Flowing::End;
        }
        tracing::warn!(call = %s.call_sid, node = %s.node, result, "transfer did not connect");
        match flow.node(&s.node).and_then(|n| n.on("failed")) {
            Some(t) => Flowing::Goto(&t.value),
            None => Flowing::Outcome("failed"),
        }
    }
}
