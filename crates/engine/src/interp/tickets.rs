//! Effects for the record and follow-up: `ticket` (open, or open and close) and `notify` (a
//! message that is never a secret).
//!
//! Invariants: a notification's intent is journaled before it is sent and its failure never
//! stops the call unless the flow gives an `error` edge; provider errors are scrubbed of digit
//! runs before they are logged; a ticket that could not be opened takes the error path, one
//! that could not be closed is only logged.

use std::collections::BTreeMap;

use resetline_audit::{EventType as Ev, Outcome as Out};
use resetline_flow::Flow;
use resetline_flow::model::Node;

use super::codes::masked_destination;
use super::drive::onward;
use super::{Engine, Flowing, journal, path_of};
use crate::action::Action;
use crate::backend::{NewTicket, OutgoingMessage};
use crate::secret::{Secret, scrub_digits};
use crate::session::{Session, Var};

impl Engine {
    /// `notify`: renders the message in the call's locale and sends it to a record's phone or
    /// email; without an `error` edge a failed send goes on to `next`.
    pub(super) async fn notify<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        n: &resetline_flow::model::Notify,
    ) -> Flowing<'f> {
        let mut said = Vec::new();
        self.say(flow, s, &n.message, &mut said);
        let body = crate::action::transcript(&said).join(" ");
        let to = s.lookup(&path_of(&n.to.value)).unwrap_or_default();
        let subject = self.engine_text(flow, s, "notify_email_subject", &[]);
        let mut planned = self
            .record(s, Ev::NotificationSent, Out::Intent)
            .with_reason("sent");
        planned.destination = masked_destination(n.channel, &to);
        let message = OutgoingMessage {
            channel: n.channel,
            to,
            subject,
            body: Secret::new(body),
            status_callback: None,
        };
        let (intent, sent) = self.send_recorded(s, planned.clone(), message).await;
        s.pending_audit
            .push(journal::sent_outcome(&intent, planned, &sent));
        match sent {
            Ok(_) => onward(node),
            Err(e) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %scrub_digits(&format!("{e:?}")), "notification not sent");
                match node.on("error") {
                    Some(t) => Flowing::Goto(&t.value),
                    None => onward(node),
                }
            }
        }
    }

    /// `ticket`: opens one (and closes it when the flow asks for a record only) and binds its
    /// number (`into`).
    pub(super) async fn ticket<'f>(
        &self,
        flow: &'f Flow,
        s: &mut Session,
        node: &'f Node,
        t: &resetline_flow::model::Ticket,
        out: &mut Vec<Action>,
    ) -> Flowing<'f> {
        let summary = self.render_text(s, &t.summary.value).unwrap_or_default();
        let details = t
            .details
            .as_ref()
            .and_then(|d| self.render_text(s, &d.value).ok());
        let new = NewTicket {
            summary,
            details,
            category: t.category.clone(),
            call_sid: s.call_sid.clone(),
        };
        match self.within("tickets", self.tickets.open(new)).await {
            Ok(r) => {
                tracing::info!(call = %s.call_sid, node = %node.id.value, ticket = %r.number, "ticket opened");
                let rec = self
                    .record(s, Ev::TicketOpened, Out::Success)
                    .with_reason(if t.close { "recorded" } else { "follow_up" })
                    .with_detail("ticket", &r.number);
                s.pending_audit.push(rec);
                if t.close
                    && let Err(e) = self
                        .within(
                            "tickets",
                            self.tickets
                                .close(&r, "Recorded by Resetline; no follow-up needed."),
                        )
                        .await
                {
                    tracing::warn!(call = %s.call_sid, ticket = %r.number, error = %e, "ticket not closed");
                }
                let mut rec = BTreeMap::new();
                rec.insert("number".to_string(), r.number.clone());
                s.vars.insert(t.into.value.clone(), Var::Record(rec));
                if let Some(p) = &t.say {
                    self.say(flow, s, p, out);
                }
                onward(node)
            }
            Err(e) => {
                tracing::warn!(call = %s.call_sid, node = %node.id.value, error = %e, "ticket not opened");
                self.audit(
                    s,
                    Ev::TicketOpened,
                    Out::Error,
                    if e.timeout { "timeout" } else { "backend" },
                );
                Flowing::Outcome("error")
            }
        }
    }
}
