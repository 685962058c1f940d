//! `ByChannel`: one [`Messenger`] for the engine that hands SMS to one sender (e.g.
//! [`crate::TwilioMessages`]) and email to another (e.g. [`crate::SmtpMailer`]).
//!
//! Invariant: it routes on [`OutgoingMessage::channel`] only and passes the message through
//! untouched (it never reads the body); a channel with no sender configured is a
//! [`SendError::Backend`] (a deployment gap, not a property of the destination), and no
//! message is ever sent over the other channel instead.

use std::sync::Arc;

use resetline_engine::{
    BackendError, BoxFuture, Messenger, OutgoingMessage, SendError, SentMessage,
};
use resetline_flow::model::Channel;

/// Routes each message to the sender for its channel.
#[derive(Debug, Clone, Default)]
pub struct ByChannel {
    sms: Option<Arc<dyn Messenger>>,
    email: Option<Arc<dyn Messenger>>,
}

impl ByChannel {
    /// A router with no senders: every message fails until [`Self::sms`] / [`Self::email`]
    /// set one.
    pub fn new() -> Self {
        ByChannel::default()
    }

    /// Sends SMS through `sender`.
    pub fn sms(mut self, sender: Arc<dyn Messenger>) -> Self {
        self.sms = Some(sender);
        self
    }

    /// Sends email through `sender`.
    pub fn email(mut self, sender: Arc<dyn Messenger>) -> Self {
        self.email = Some(sender);
        self
    }
}

impl Messenger for ByChannel {
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
        let (route, name) = match message.channel {
            Channel::Sms => (&self.sms, "SMS"),
            Channel::Email => (&self.email, "email"),
        };
        match route {
            Some(sender) => sender.send(message),
            None => Box::pin(async move {
                Err(SendError::Backend(BackendError::new(
                    "messages",
                    format!("no {name} sender is configured"),
                )))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use resetline_engine::Secret;

    use super::*;

    /// Records the destinations it is given and answers with its name.
    #[derive(Debug)]
    struct Named(&'static str, Mutex<Vec<String>>);

    impl Messenger for Named {
        fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<SentMessage, SendError>> {
            self.1.lock().unwrap().push(message.to);
            Box::pin(async move { Ok(SentMessage { id: self.0.into() }) })
        }
    }

    fn message(channel: Channel, to: &str) -> OutgoingMessage {
        OutgoingMessage {
            channel,
            to: to.into(),
            subject: "s".into(),
            body: Secret::new("b"),
            status_callback: None,
        }
    }

    #[tokio::test]
    async fn routes_by_channel() {
        let sms = Arc::new(Named("sms", Mutex::default()));
        let email = Arc::new(Named("email", Mutex::default()));
        let router = ByChannel::new().sms(sms.clone()).email(email.clone());
        let sent = router.send(message(Channel::Sms, "+15551230199")).await;
        assert_eq!(sent, Ok(SentMessage { id: "sms".into() }));
        let sent = router.send(message(Channel::Email, "j@example.com")).await;
        assert_eq!(sent, Ok(SentMessage { id: "email".into() }));
        assert_eq!(*sms.1.lock().unwrap(), ["+15551230199"]);
        assert_eq!(*email.1.lock().unwrap(), ["j@example.com"]);
    }

    #[tokio::test]
    async fn a_missing_route_is_a_backend_error_not_a_fallback() {
        let sms = Arc::new(Named("sms", Mutex::default()));
        let router = ByChannel::new().sms(sms.clone());
        let e = router
            .send(message(Channel::Email, "j@example.com"))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::Backend(BackendError::new(
                "messages",
                "no email sender is configured"
            ))
        );
        assert!(sms.1.lock().unwrap().is_empty());
        let e = ByChannel::new()
            .send(message(Channel::Sms, "+1"))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Backend(b) if b.message == "no SMS sender is configured"));
    }
}
