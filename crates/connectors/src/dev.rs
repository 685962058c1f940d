//! Stand-ins for `resetline demo`, where no carrier, mail server or ticket system exists:
//! recording control that logs and acknowledges, an in-memory [`Outbox`] the demo prints to
//! the console. (In-memory tickets for the demo are the engine's
//! `resetline_engine::testing::MemoryTickets`.)
//!
//! Invariant: only the demo (and tests) wire these; `serve` never does. The outbox keeps the
//! body (the demo user needs the code) but only as a [`Secret`]: its logs and `Debug` output
//! show the channel and the masked destination, never the body or the full destination.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use resetline_engine::{
    BackendError, BoxFuture, Messenger, OutgoingMessage, Recording, RecordingAck, RecordingChange,
    Secret, SendError, SentMessage,
};
use resetline_flow::model::Channel;
use resetline_flow::template::{last4, mask};

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

/// A poisoned lock still holds consistent data here (every critical section is one push).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A destination as the engine masks it: `***0199` for a phone number, `j***@example.com`
/// for an email address.
pub fn mask_destination(channel: Channel, to: &str) -> String {
    match channel {
        Channel::Sms => format!("***{}", last4(to)),
        Channel::Email => mask(to),
    }
}

/// A message the [`Outbox`] accepted.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// The id returned to the engine (`OB0001`, ...).
    pub id: String,
    /// SMS or email.
    pub channel: Channel,
    /// The destination, masked (`***0199`, `j***@example.com`).
    pub to: String,
    /// The email subject (empty for SMS).
    pub subject: String,
    /// The text: `resetline demo` prints it with `expose()`; `Debug` shows `Secret(***)`.
    pub body: Secret,
}

#[derive(Debug, Default)]
struct OutboxState {
    sent: u64,
    messages: VecDeque<OutboxMessage>,
}

/// A [`Messenger`] for demo mode: accepts every message, keeps the last
/// [`Outbox::CAPACITY`] in memory and logs `demo outbox: message to ***0199` (never the body).
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
}

impl Outbox {
    /// How many messages are kept; older ones are dropped (ids keep counting).
    pub const CAPACITY: usize = 1000;

    /// An empty outbox.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// The messages kept, oldest first.
    pub fn messages(&self) -> Vec<OutboxMessage> {
        lock(&self.state).messages.iter().cloned().collect()
    }
}

impl Messenger for Outbox {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        Box::pin(async move {
            let to = mask_destination(message.channel, &message.to);
            let id = {
                let mut state = lock(&self.state);
                state.sent += 1;
                let id = format!("OB{:04}", state.sent);
                if state.messages.len() >= Self::CAPACITY {
                    state.messages.pop_front();
                }
                state.messages.push_back(OutboxMessage {
                    id: id.clone(),
                    channel: message.channel,
                    to: to.clone(),
                    subject: message.subject,
                    body: message.body,
                });
                id
            };
            tracing::info!(id = %id, channel = ?message.channel, "demo outbox: message to {to}");
            Ok(SentMessage { id })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "Your Resetline code is 73914682";

    fn message(channel: Channel, to: &str) -> OutgoingMessage {
        OutgoingMessage {
            channel,
            to: to.into(),
            subject: "Code".into(),
            body: Secret::new(MARKER),
            status_callback: Some("/sms/status".into()),
        }
    }

    #[tokio::test]
    async fn the_outbox_keeps_masked_messages_and_numbers_them() {
        let outbox = Outbox::new();
        let a = outbox
            .send(message(Channel::Sms, "+15551230199"))
            .await
            .unwrap();
        let b = outbox
            .send(message(Channel::Email, "jane.doe@example.com"))
            .await
            .unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("OB0001", "OB0002"));
        let kept = outbox.messages();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].channel, kept[0].to.as_str()),
            (Channel::Sms, "***0199")
        );
        assert_eq!(
            (
                kept[1].channel,
                kept[1].to.as_str(),
                kept[1].subject.as_str()
            ),
            (Channel::Email, "j***@example.com", "Code")
        );
        assert_eq!(kept[0].body.expose(), MARKER);
        let shown = format!("{outbox:?} {kept:?}");
        assert!(
            !shown.contains(MARKER) && !shown.contains("73914682"),
            "{shown}"
        );
        assert!(
            !shown.contains("5551230199") && !shown.contains("jane.doe"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn the_outbox_is_bounded() {
        let outbox = Outbox::new();
        for _ in 0..Outbox::CAPACITY + 2 {
            outbox
                .send(message(Channel::Sms, "+15551230199"))
                .await
                .unwrap();
        }
        let kept = outbox.messages();
        assert_eq!(kept.len(), Outbox::CAPACITY);
        assert_eq!(kept[0].id, "OB0003");
        assert_eq!(kept[kept.len() - 1].id, "OB1002");
    }

    #[test]
    fn destinations_are_masked_like_the_engine_does() {
        assert_eq!(
            mask_destination(Channel::Sms, "+1 (555) 123-0199"),
            "***0199"
        );
        assert_eq!(
            mask_destination(Channel::Email, "jane@example.com"),
            "j***@example.com"
        );
    }
}
