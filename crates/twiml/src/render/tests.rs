use super::*;
use crate::twiml::{Dial, Enqueue, Gather, Hangup, Number, Pause, Play, Queue, Redirect};
use proptest::prelude::*;
use quick_xml::Reader;
use quick_xml::events::Event;

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// `s` without the characters XML 1.0 forbids (what the tests expect rendered).
fn strip_forbidden(s: &str) -> String {
    s.chars().filter(|&c| is_xml_char(c)).collect()
}

fn doc<'a>(verb: impl Into<Verb<'a>>) -> Result<String, RenderError> {
    Response::new().verb(verb).render()
}

fn err<'a>(verb: impl Into<Verb<'a>>) -> (&'static str, &'static str) {
    match doc(verb) {
        Err(RenderError::InvalidValue { element, field, .. }) => (element, field),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

/// Parses `xml` with quick-xml; returns the text and attributes of the
/// first element called `name`, and fails on any well-formedness error.
fn read_back(xml: &str, name: &str) -> (String, Vec<(String, String)>) {
    let mut reader = Reader::from_str(xml);
    let mut depth_in_target = 0usize;
    let mut text = String::new();
    let mut attrs = Vec::new();
    let mut found = false;
    loop {
        match reader.read_event() {
            Err(e) => panic!("not well-formed: {e}\n{xml}"),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                if depth_in_target > 0 {
                    depth_in_target += 1;
                } else if !found && e.name().as_ref() == name.as_bytes() {
                    found = true;
                    depth_in_target = 1;
                    for a in e.attributes() {
                        let a = a.unwrap_or_else(|e| panic!("bad attribute: {e}"));
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let value = a
                            .unescape_value()
                            .unwrap_or_else(|e| panic!("bad attribute value: {e}"));
                        attrs.push((key, value.into_owned()));
                    }
                }
            }
            Ok(Event::End(_)) => depth_in_target = depth_in_target.saturating_sub(1),
            Ok(Event::Text(t)) if depth_in_target > 0 => {
                text.push_str(&t.xml10_content().unwrap_or_else(|e| panic!("{e}")));
            }
            Ok(Event::GeneralRef(r)) if depth_in_target > 0 => {
                match r.resolve_char_ref().unwrap_or_else(|e| panic!("{e}")) {
                    Some(c) => text.push(c),
                    None => text.push(match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        other => panic!("unknown entity {other:?}"),
                    }),
                }
            }
            Ok(_) => {}
        }
    }
    assert!(found, "no <{name}> in {xml}");
    (text, attrs)
}

#[test]
fn forbidden_control_characters_are_stripped() {
    let xml = doc(Say::from_text(
        "a\u{0}b\u{1}c\u{8}d\u{b}e\u{c}f\u{1f}g\u{fffe}h\u{ffff}i\u{7f}j",
    )
    .voice("m\u{0}an"))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        xml,
        format!("{DECL}<Response><Say voice=\"man\">abcdefghi\u{7f}j</Say></Response>")
    );
    // Tab, LF and CR survive (CR as a char ref so parsers keep it).
    let xml = doc(Say::from_text("a\tb\nc\rd")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        xml,
        format!("{DECL}<Response><Say>a\tb\nc&#13;d</Say></Response>")
    );
    assert_eq!(read_back(&xml, "Say").0, "a\tb\nc\rd");
}

#[test]
fn all_five_special_characters_escape_and_round_trip() {
    let s = r#"Tom & Jerry's <"quoted"> text"#;
    let xml = doc(Say::from_text(s).voice(s)).unwrap_or_else(|e| panic!("{e}"));
    assert!(xml.contains(r#"voice="Tom &amp; Jerry's &lt;&quot;quoted&quot;&gt; text""#));
    assert!(xml.contains(r#">Tom &amp; Jerry's &lt;"quoted"&gt; text</Say>"#));
    let (text, attrs) = read_back(&xml, "Say");
    assert_eq!(text, s);
    assert_eq!(attrs, vec![("voice".to_owned(), s.to_owned())]);
}

#[test]
fn emphasis_and_prosody_wrap_escaped_segments() {
    let hostile = r#"</emphasis><break time="99s"/><prosody rate="x-fast">&"#;
    let xml = doc(Say::from_text("Please ")
        .emphasis("strong", vec![SaySegment::Text(hostile.into())])
        .prosody(
            "80%",
            vec![
                SaySegment::Text("code ".into()),
                SaySegment::Digits("0042".into()),
                SaySegment::Break(Duration::from_millis(300)),
            ],
        )
        .emphasis("reduced", vec![SaySegment::Break(Duration::from_secs(1))]))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        xml,
        format!(
            "{DECL}<Response><Say>Please <emphasis level=\"strong\">&lt;/emphasis&gt;&lt;break time=\"99s\"/&gt;&lt;prosody rate=\"x-fast\"&gt;&amp;</emphasis><prosody rate=\"80%\">code <say-as interpret-as=\"digits\">0042</say-as><break time=\"300ms\" /></prosody><emphasis level=\"reduced\"><break time=\"1s\" /></emphasis></Say></Response>"
        )
    );
    // The hostile text is text again once parsed: no element came from it.
    assert_eq!(
        read_back(&xml, "emphasis").0,
        hostile,
        "the markup inside is only what the model wrote"
    );
}

#[test]
fn emphasis_and_prosody_values() {
    let text = || vec![SaySegment::Text("hi".into())];
    for bad in ["", "Strong", "strong\"", "a b", "x>y", &"s".repeat(17)] {
        assert_eq!(
            err(Say::new().emphasis(bad, text())),
            ("emphasis", "level"),
            "{bad:?}"
        );
    }
    for bad in ["", "80 %", "\"fast\"", "fast/>", "X-FAST"] {
        assert_eq!(
            err(Say::new().prosody(bad, text())),
            ("prosody", "rate"),
            "{bad:?}"
        );
    }
    assert!(doc(Say::new().prosody("x-slow", text())).is_ok());
    // Empty inside, or nested: refused.
    assert_eq!(err(Say::new().emphasis("strong", vec![])), ("Say", "body"));
    assert_eq!(
        err(Say::from_text("x").emphasis("strong", vec![])),
        ("emphasis", "body")
    );
    assert_eq!(
        err(Say::new().prosody("slow", vec![SaySegment::Text("\u{1}".into())])),
        ("Say", "body")
    );
    assert_eq!(
        err(Say::from_text("x").prosody("slow", vec![SaySegment::Text("".into())])),
        ("prosody", "body")
    );
    let nested = SaySegment::Emphasis {
        level: "strong".into(),
        segments: text(),
    };
    assert_eq!(
        err(Say::new().prosody("slow", vec![nested])),
        ("Say", "body")
    );
    // Inner segments are checked like top-level ones.
    assert_eq!(
        err(Say::new().emphasis("strong", vec![SaySegment::Digits("1a".into())])),
        ("say-as", "digits")
    );
    assert_eq!(
        err(Say::new().prosody("slow", vec![SaySegment::Break(MAX_BREAK * 2)])),
        ("break", "time")
    );
}

#[test]
fn breaks_and_digits() {
    let xml = doc(Say::new()
        .break_for(Duration::ZERO)
        .break_for(Duration::from_micros(1500))
        .break_for(MAX_BREAK)
        .digits("0042"))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(xml.contains(
        r#"<Say><break time="0s" /><break time="1ms" /><break time="10s" /><say-as interpret-as="digits">0042</say-as></Say>"#
    ));
    assert_eq!(
        err(Say::new().break_for(MAX_BREAK + Duration::from_millis(1))),
        ("break", "time")
    );
    assert_eq!(err(Say::new().digits("12a")), ("say-as", "digits"));
    assert_eq!(err(Say::new().digits("")), ("say-as", "digits"));
    assert_eq!(err(Say::new().digits("١٢")), ("say-as", "digits"));
}

#[test]
fn say_needs_content() {
    assert_eq!(err(Say::new()), ("Say", "body"));
    assert_eq!(err(Say::from_text("")), ("Say", "body"));
    assert_eq!(err(Say::from_text("\u{0}\u{1}")), ("Say", "body"));
    assert_eq!(err(Say::from_text("hi").voice("")), ("Say", "voice"));
    assert_eq!(err(Say::from_text("hi").language("")), ("Say", "language"));
    assert!(doc(Say::from_text(" ")).is_ok());
}

#[test]
fn gather_values() {
    assert_eq!(err(Gather::new().num_digits(0)), ("Gather", "numDigits"));
    assert!(doc(Gather::new().num_digits(1)).is_ok());
    for bad in ['a', 'w', ' ', '\0', '&', '１'] {
        assert_eq!(
            err(Gather::new().finish_on_key(FinishOnKey::Key(bad))),
            ("Gather", "finishOnKey"),
            "{bad:?}"
        );
    }
    for good in ['0', '9', '*', '#'] {
        assert!(doc(Gather::new().finish_on_key(FinishOnKey::Key(good))).is_ok());
    }
    assert_eq!(
        err(Gather::new().action("", Method::Post)),
        ("Gather", "action")
    );
    // Children are checked too.
    assert_eq!(err(Gather::new().child(Say::new())), ("Say", "body"));
    assert_eq!(
        doc(Gather::new()
            .input(GatherInput::DtmfSpeech)
            .action_on_empty_result(false)),
        Ok(format!(
            "{DECL}<Response><Gather actionOnEmptyResult=\"false\" input=\"dtmf speech\" /></Response>"
        ))
    );
}

#[test]
fn play_values() {
    assert_eq!(err(Play::default()), ("Play", "url"));
    assert_eq!(err(Play::new("")), ("Play", "url"));
    assert_eq!(err(Play::tones("")), ("Play", "digits"));
    assert_eq!(err(Play::tones("12x")), ("Play", "digits"));
    assert!(doc(Play::tones("0123456789*#w")).is_ok());
    assert_eq!(
        doc(Play {
            digits: Some("1".into()),
            ..Play::new("/a.mp3")
        }),
        Ok(format!(
            "{DECL}<Response><Play digits=\"1\">/a.mp3</Play></Response>"
        ))
    );
}

#[test]
fn queue_names() {
    let max = "q".repeat(MAX_QUEUE_NAME_CHARS);
    assert!(doc(Enqueue::new(max.clone())).is_ok());
    // 64 multi-byte characters are fine; 65 are not.
    assert!(doc(Enqueue::new("é".repeat(64))).is_ok());
    assert_eq!(
        err(Enqueue::new(format!("{max}q"))),
        ("Enqueue", "queue name")
    );
    assert_eq!(err(Enqueue::new("")), ("Enqueue", "queue name"));
    assert_eq!(err(Dial::queue(format!("{max}q"))), ("Queue", "queue name"));
    assert_eq!(err(Dial::queue("")), ("Queue", "queue name"));
    let too_long = RenderError::InvalidValue {
        element: "Enqueue",
        field: "queue name",
        reason: "must be at most 64 characters",
    };
    assert_eq!(doc(Enqueue::new(format!("{max}q"))), Err(too_long.clone()));
    assert_eq!(
        too_long.to_string(),
        "invalid TwiML value for <Enqueue> queue name: must be at most 64 characters"
    );
    assert_eq!(
        err(Enqueue {
            wait_url: Some("".into()),
            ..Enqueue::new("q")
        }),
        ("Enqueue", "waitUrl")
    );
}

#[test]
fn dial_values() {
    assert_eq!(err(Dial::default()), ("Dial", "nouns"));
    assert_eq!(err(Dial::number("")), ("Number", "number"));
    assert_eq!(
        err(Dial {
            caller_id: Some("".into()),
            ..Dial::number("+1555")
        }),
        ("Dial", "callerId")
    );
    assert_eq!(
        err(Dial {
            nouns: vec![
                Number {
                    number: "+1555".into(),
                    send_digits: Some("1-2".into()),
                }
                .into()
            ],
            ..Dial::default()
        }),
        ("Number", "sendDigits")
    );
    assert_eq!(
        err(Dial {
            nouns: vec![
                Queue {
                    name: "q".into(),
                    url: Some("".into()),
                }
                .into()
            ],
            ..Dial::default()
        }),
        ("Queue", "url")
    );
}

#[test]
fn redirect_needs_url() {
    assert_eq!(err(Redirect::new("")), ("Redirect", "url"));
    assert_eq!(err(Redirect::new("\u{0}")), ("Redirect", "url"));
}

#[test]
fn size_limit_is_65536_bytes_inclusive() {
    let base = doc(Say::from_text("a")).map(|s| s.len()).unwrap_or(0);
    let fits = MAX_DOCUMENT_BYTES - (base - 1);
    let exact = doc(Say::from_text("a".repeat(fits))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exact.len(), MAX_DOCUMENT_BYTES);
    assert_eq!(
        doc(Say::from_text("a".repeat(fits + 1))),
        Err(RenderError::TooLarge {
            bytes: MAX_DOCUMENT_BYTES + 1,
            limit: MAX_DOCUMENT_BYTES
        })
    );
    // Escaping counts: 20,000 ampersands become 100,000 bytes.
    assert!(matches!(
        doc(Say::from_text("&".repeat(20_000))),
        Err(RenderError::TooLarge { .. })
    ));
    assert_eq!(
        RenderError::TooLarge {
            bytes: 70_000,
            limit: MAX_DOCUMENT_BYTES
        }
        .to_string(),
        "TwiML document is 70000 bytes, over Twilio's limit of 65536 bytes"
    );
}

/// `every_verb()` as the renderers before quick-xml wrote it (the model-building renderer
/// of commit 4e54156, then the streaming `Writer`).
const EVERY_VERB: &str = r##"<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US" loop="2" voice="Polly.Joanna">Code <say-as interpret-as="digits">12</say-as><break time="1500ms" />&amp;&lt;&gt;"&#233;</Say><Play loop="0">https://x/a.mp3?a=1&amp;b=2</Play><Play digits="ww1#" /><Pause length="12" /><Pause /><Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0"><Say>hi</Say><Play>/b.wav</Play><Pause length="1" /></Gather><Gather finishOnKey="" /><Redirect method="POST">/next</Redirect><Enqueue action="/q" method="POST" waitUrl="/wait" waitUrlMethod="GET">support</Enqueue><Dial action="/d" callerId="+15550001111" method="POST" timeout="20"><Number sendDigits="ww12">+15550002222</Number><Queue url="/q">support</Queue></Dial><Hangup /></Response>"##;

/// A document with every verb and attribute, as a model.
fn every_verb() -> Response<'static> {
    Response::new()
        .verb(
            Say::from_text("Code ")
                .digits("12")
                .break_for(Duration::from_millis(1500))
                .text("&<>\"é")
                .voice("Polly.Joanna")
                .language("en-US")
                .loop_count(2),
        )
        .verb(Play::new("https://x/a.mp3?a=1&b=2").loop_count(0))
        .verb(Play::tones("ww1#"))
        .verb(Pause::seconds(12))
        .verb(Pause::default())
        .verb(
            Gather::new()
                .input(GatherInput::DtmfSpeech)
                .action("/g?x=1&y=\"2\"", Method::Get)
                .num_digits(4_294_967_295)
                .finish_on_key(FinishOnKey::Key('#'))
                .timeout(0)
                .action_on_empty_result(true)
                .child(Say::from_text("hi"))
                .child(Play::new("/b.wav"))
                .child(Pause::seconds(1)),
        )
        .verb(Gather::new().finish_on_key(FinishOnKey::Disabled))
        .verb(Redirect::new("/next").method(Method::Post))
        .verb(Enqueue {
            action: Some("/q".into()),
            method: Some(Method::Post),
            wait_url: Some("/wait".into()),
            wait_url_method: Some(Method::Get),
            ..Enqueue::new("support")
        })
        .verb(Dial {
            nouns: vec![
                Number {
                    number: "+15550002222".into(),
                    send_digits: Some("ww12".into()),
                }
                .into(),
                Queue {
                    name: "support".into(),
                    url: Some("/q".into()),
                }
                .into(),
            ],
            action: Some("/d".into()),
            method: Some(Method::Post),
            timeout: Some(20),
            caller_id: Some("+15550001111".into()),
        })
        .verb(Hangup)
}

#[test]
fn every_verb_and_attribute_byte_for_byte() {
    let rendered = every_verb().render().unwrap_or_else(|e| panic!("{e}"));
    // What the renderer before quick-xml wrote for this model, byte for byte.
    assert_eq!(rendered, EVERY_VERB);
    assert!(rendered.contains(
        r##"<Gather action="/g?x=1&amp;y=&quot;2&quot;" actionOnEmptyResult="true" finishOnKey="#" input="dtmf speech" method="GET" numDigits="4294967295" timeout="0">"##
    ));
    assert!(rendered.contains(r#"<Pause length="12" /><Pause />"#));
    assert!(rendered.contains(r#"<break time="1500ms" />&amp;&lt;&gt;"&#233;</Say>"#));
    read_back(&rendered, "Dial");
    assert_eq!(Response::new().render(), Ok(format!("{DECL}<Response />")));
}

#[test]
fn the_first_problem_in_document_order_is_the_one_reported() {
    fn first_error(response: Response<'_>) -> RenderError {
        match response.render() {
            Err(e) => e,
            Ok(doc) => panic!("expected an error, got {doc}"),
        }
    }
    // Later valid verbs do not hide it; later problems do not replace it.
    assert_eq!(
        first_error(
            Response::new()
                .verb(Pause::seconds(1))
                .verb(Play::default())
                .verb(Say::new())
                .verb(Hangup)
        ),
        invalid("Play", "url", "needs a URL or digits")
    );
    // A Say without content is reported before its attributes and segments; but not
    // before an earlier element's problem.
    assert_eq!(
        first_error(Response::new().verb(Say::from_text("\u{1}").voice(""))),
        invalid("Say", "body", "must contain text, digits or a break")
    );
    assert_eq!(
        first_error(Response::new().verb(Say::new().digits("x").voice(""))),
        invalid("Say", "voice", "must not be empty")
    );
    assert_eq!(
        first_error(Response::new().verb(Gather::new().num_digits(0).child(Say::new()))),
        invalid("Gather", "numDigits", "must be at least 1")
    );
    // Likewise a Dial without nouns.
    assert_eq!(
        first_error(Response::new().verb(Dial {
            caller_id: Some("".into()),
            ..Dial::default()
        })),
        invalid("Dial", "nouns", "needs at least one Number or Queue")
    );
    assert_eq!(
        first_error(Response::new().verb(Dial {
            caller_id: Some("".into()),
            ..Dial::number("")
        })),
        invalid("Dial", "callerId", "must not be empty")
    );
    // The size limit applies to documents of many small values too.
    let mut say = Say::new();
    for _ in 0..MAX_DOCUMENT_BYTES / 10 {
        say = say.text("0123456789");
    }
    assert!(matches!(
        Response::new().verb(say).render(),
        Err(RenderError::TooLarge { .. })
    ));
}

#[test]
fn output_is_ascii() {
    let xml = doc(Say::from_text("Grüße 👋").voice("Polly.Léa")).unwrap_or_else(|e| panic!("{e}"));
    assert!(xml.is_ascii(), "{xml}");
    let (text, attrs) = read_back(&xml, "Say");
    assert_eq!(text, "Grüße 👋");
    assert_eq!(attrs[0].1, "Polly.Léa");
    assert_eq!(
        doc(Hangup),
        Ok(format!("{DECL}<Response><Hangup /></Response>"))
    );
}

/// Arbitrary text, biased towards characters that need care.
fn nasty_text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '&', '<', '>', '"', '\'', '\r', '\n', '\t', '\0', '\u{1}', '\u{b}', '\u{fffe}', '\u{ffff}',
        ']', ';', '#', ' ', 'é', '😀',
    ]);
    proptest::collection::vec(prop_oneof![any::<char>(), special], 0..64)
        .prop_map(String::from_iter)
}

proptest! {
    #[test]
    fn say_text_and_voice_survive_a_parse(text in nasty_text(), voice in nasty_text()) {
        let expected_text = strip_forbidden(&text);
        let expected_voice = strip_forbidden(&voice);
        let result = doc(Say::from_text(text.clone()).voice(voice.clone()));
        if expected_text.is_empty() || expected_voice.is_empty() {
            let is_invalid = matches!(result, Err(RenderError::InvalidValue { .. }));
            prop_assert!(is_invalid);
        } else {
            let xml = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(xml.is_ascii());
            let (got_text, attrs) = read_back(&xml, "Say");
            prop_assert_eq!(got_text, expected_text);
            prop_assert_eq!(attrs, vec![("voice".to_owned(), expected_voice)]);
        }
    }

    #[test]
    fn redirect_url_survives_a_parse(url in nasty_text()) {
        let expected = strip_forbidden(&url);
        let result = doc(Redirect::new(url.clone()).method(Method::Get));
        if expected.is_empty() {
            let is_invalid = matches!(result, Err(RenderError::InvalidValue { .. }));
            prop_assert!(is_invalid);
        } else {
            let xml = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(read_back(&xml, "Redirect").0, expected);
        }
    }

    #[test]
    fn gather_children_with_random_text_parse(texts in proptest::collection::vec(nasty_text(), 1..4)) {
        let mut gather = Gather::new().num_digits(4);
        for t in &texts {
            gather = gather.child(Say::from_text(format!("x{t}")).digits("1"));
        }
        let xml = doc(gather).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (text, _) = read_back(&xml, "Gather");
        let expected: String = texts
            .iter()
            .map(|t| format!("x{}1", strip_forbidden(t)))
            .collect();
        prop_assert_eq!(text, expected);
    }
}
