//! Golden tests: exact documents, byte for byte.
//!
//! The first group are the strings asserted by twilio-python's own
//! `test_voice_response.py` (protocol.md §3.1; the `<Record>` one is left
//! out because this crate does not model `<Record>`). The rest were produced
//! by building the same tree with Python's `xml.etree.ElementTree` and
//! `ET.tostring`, which is what the helper does.

use std::time::Duration;

use resetline_twiml::{
    Dial, DialNoun, Enqueue, FinishOnKey, Gather, GatherInput, Hangup, Method, Number, Pause, Play,
    Queue, Redirect, Response, Say,
};

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

fn render(response: &Response) -> String {
    response
        .render()
        .unwrap_or_else(|e| panic!("render failed: {e}"))
}

#[test]
fn python_helper_gather_with_nested_say() {
    let doc = Response::new().verb(Gather::new().child(Say::from_text("Hello").voice("man")));
    assert_eq!(
        render(&doc),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather><Say voice="man">Hello</Say></Gather></Response>"#
    );
}

#[test]
fn python_helper_redirect_escapes_ampersand() {
    let doc =
        Response::new().verb(Redirect::new("example.com?id=34&action=hey").method(Method::Post));
    assert_eq!(
        render(&doc),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Redirect method="POST">example.com?id=34&amp;action=hey</Redirect></Response>"#
    );
}

#[test]
fn python_helper_play_digits_self_closes_with_space() {
    let doc = Response::new().verb(Play::tones("w123"));
    assert_eq!(
        render(&doc),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Play digits="w123" /></Response>"#
    );
}

#[test]
fn empty_response() {
    assert_eq!(render(&Response::new()), format!("{DECL}<Response />"));
}

#[test]
fn every_verb_and_attribute() {
    let gather = Gather {
        children: vec![
            Say::from_text("Enter code").into(),
            Play::new("https://example.com/b.wav").into(),
            Pause::default().into(),
        ],
        input: Some(GatherInput::Dtmf),
        action: Some("/g?x=1&y=2".into()),
        method: Some(Method::Post),
        num_digits: Some(6),
        finish_on_key: Some(FinishOnKey::Disabled),
        timeout: Some(10),
        action_on_empty_result: Some(true),
    };
    let doc = Response::new()
        .verb(
            Say::from_text("Your code is ")
                .digits("123456")
                .break_for(Duration::from_millis(500))
                .text(" again ")
                .digits("12")
                .break_for(Duration::from_secs(1))
                .voice("Polly.Joanna")
                .language("en-US")
                .loop_count(2),
        )
        .verb(Play::new("https://example.com/a.mp3").loop_count(0))
        .verb(Play::tones("ww1#"))
        .verb(Pause::seconds(2))
        .verb(gather)
        .verb(Gather::new().finish_on_key(FinishOnKey::Key('*')))
        .verb(Enqueue {
            action: Some("/q".into()),
            method: Some(Method::Post),
            wait_url: Some("/wait".into()),
            wait_url_method: Some(Method::Get),
            ..Enqueue::new("support")
        })
        .verb(Dial {
            nouns: vec![
                DialNoun::Number(Number {
                    number: "+15550002222".into(),
                    send_digits: Some("ww12".into()),
                }),
                DialNoun::Queue(Queue {
                    name: "support".into(),
                    url: Some("/q".into()),
                }),
            ],
            action: Some("/d".into()),
            method: Some(Method::Post),
            timeout: Some(20),
            caller_id: Some("+15550001111".into()),
        })
        .verb(Redirect::new("/next").method(Method::Get))
        .verb(Hangup);
    let expected = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
        r#"<Say language="en-US" loop="2" voice="Polly.Joanna">Your code is <say-as interpret-as="digits">123456</say-as><break time="500ms" /> again <say-as interpret-as="digits">12</say-as><break time="1s" /></Say>"#,
        r#"<Play loop="0">https://example.com/a.mp3</Play><Play digits="ww1#" /><Pause length="2" />"#,
        r#"<Gather action="/g?x=1&amp;y=2" actionOnEmptyResult="true" finishOnKey="" input="dtmf" method="POST" numDigits="6" timeout="10"><Say>Enter code</Say><Play>https://example.com/b.wav</Play><Pause /></Gather>"#,
        r#"<Gather finishOnKey="*" />"#,
        r#"<Enqueue action="/q" method="POST" waitUrl="/wait" waitUrlMethod="GET">support</Enqueue>"#,
        r#"<Dial action="/d" callerId="+15550001111" method="POST" timeout="20"><Number sendDigits="ww12">+15550002222</Number><Queue url="/q">support</Queue></Dial>"#,
        r#"<Redirect method="GET">/next</Redirect><Hangup /></Response>"#,
    );
    assert_eq!(render(&doc), expected);
}

#[test]
fn escaping_matches_python_elementtree() {
    // Python: text escapes & < >; attributes also " and tab/LF/CR as char
    // refs; non-ASCII becomes decimal char refs (us-ascii tostring).
    let doc =
        Response::new().verb(Say::from_text("x\"y'z<&>\tq\nr ñ😀").voice("a\"b'c<d>&e\tf\ng\rh ñ"));
    assert_eq!(
        render(&doc),
        format!(
            "{DECL}<Response><Say voice=\"a&quot;b'c&lt;d&gt;&amp;e&#09;f&#10;g&#13;h &#241;\">x\"y'z&lt;&amp;&gt;\tq\nr &#241;&#128512;</Say></Response>"
        )
    );
}
