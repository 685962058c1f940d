//! `transfer`: to an agent queue or a number, and what the carrier reports afterwards.
//!
//! Invariant: recording is resumed before the caller leaves the engine, the transfer is
//! audited with its target, and a transfer that did not connect takes the node's `failed`
//! edge (or the apology and the end of the call).

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;

use super::{Engine, Flowing};
use crate::action::Action;
use crate::session::{Session, Waiting};
use crate::step_url::{StepEvent, step_url};

impl Engine {
    /// `transfer`: says its prompt, hands the call to the queue or number, and waits for the
    /// carrier's result on the step's `/transfer` URL.
    pub(super) async fn transfer<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        t: &resetline_flow::model::Transfer,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        if let Some(p) = &t.say {
            self.say(flow, s, p, out);
        }
        let action = step_url(flow, s.token, StepEvent::Transfer);
        let target = match &t.to {
            resetline_flow::model::TransferTo::Queue(q) => format!("queue:{q}"),
            resetline_flow::model::TransferTo::Number(n) => format!("number:{n}"),
        };
        let r = self
            .record(s, Ev::CallTransferred, Out::Info)
            .with_reason("transfer")
            .with_detail("target", target);
        s.pending_audit.push(r);
        match &t.to {
            resetline_flow::model::TransferTo::Queue(q) => out.push(Action::Enqueue {
                queue: q.clone(),
                wait_url: t.wait.clone(),
                action,
            }),
            resetline_flow::model::TransferTo::Number(n) => out.push(Action::Dial {
                number: n.clone(),
                action,
            }),
        }
        if s.recording_paused_ms.is_some() {
            self.resume(s).await;
        }
        s.waiting = Waiting::Transfer;
        Flowing::Wait
    }

    /// The carrier's result of a transfer: the call ends as transferred when it connected,
    /// else the node's `failed` edge.
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
