//! The demo outbox logs the masked destination and never the body. Its own test binary: the
//! log capture installs a global subscriber, which parallel unit tests would race with.

use resetline_testkit::logs::Logs;

use resetline_connectors::Outbox;
use resetline_engine::{Messenger, OutgoingMessage, Secret};
use resetline_flow::model::Channel;

fn message(channel: Channel, to: &str) -> OutgoingMessage {
    OutgoingMessage {
        channel,
        to: to.into(),
        subject: "Code".into(),
        body: Secret::new("Your Resetline code is 73914682"),
        status_callback: None,
    }
}

#[tokio::test]
async fn the_outbox_logs_the_masked_destination_and_no_body() {
    let captured = Logs::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let outbox = Outbox::new();
    outbox
        .send(message(Channel::Sms, "+15551230199"))
        .await
        .unwrap();
    outbox
        .send(message(Channel::Email, "jane.doe@example.com"))
        .await
        .unwrap();
    let logs = captured.text();
    assert!(logs.contains("demo outbox: message to ***0199"), "{logs}");
    assert!(
        logs.contains("demo outbox: message to j***@example.com"),
        "{logs}"
    );
    assert!(logs.contains("OB0001") && logs.contains("OB0002"), "{logs}");
    assert!(
        !logs.contains("73914682") && !logs.contains("5551230199"),
        "{logs}"
    );
    assert!(!logs.contains("jane.doe"), "{logs}");
    // The demo prints bodies from `messages()`.
    assert_eq!(
        outbox.messages()[0].body.expose(),
        "Your Resetline code is 73914682"
    );
}
