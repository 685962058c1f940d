//! Carrier-neutral actions to TwiML: each action becomes a verb of the twiml crate's document
//! model, which renders it. URLs the engine emits are relative; here they become absolute
//! under the configured public URL. Invariant: the answer is always a valid TwiML document;
//! a document that cannot be rendered is [`RenderFailed`], which the webhook answers with a
//! fixed apology ([`FALLBACK`]) instead of an error page.

use std::borrow::Cow;

use resetline_engine::{Action, Spoken};
use resetline_twiml::{
    Dial, Enqueue, FinishOnKey, Gather, GatherChild, Method, Pause, Play, Redirect, RenderError,
    Response, Say, Verb,
};

/// Sent when a document cannot be rendered: a short apology and a hang-up.
pub const FALLBACK: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Sorry, something went wrong. Please call again later.</Say><Hangup /></Response>";

/// A document the twiml crate refused to render (the error names the element and field,
/// never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailed(pub RenderError);

impl std::fmt::Display for RenderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RenderFailed {}

/// `url` under `public_url` when the engine gave it relative.
fn absolute<'a>(public_url: &str, url: &'a str) -> Cow<'a, str> {
    if url.starts_with('/') {
        Cow::Owned([public_url, url].concat())
    } else {
        Cow::Borrowed(url)
    }
}

/// The document borrows the actions' text; only URLs made absolute and spelled-out ticket
/// numbers are new strings.
fn say<'a>(text: &'a [Spoken], locale: &'a str, voice: Option<&'a str>) -> Say<'a> {
    let mut say = Say::new().language(locale);
    if let Some(v) = voice {
        say = say.voice(v);
    }
    for part in text {
        say = match part {
            Spoken::Text(t) => say.text(t.as_str()),
            Spoken::Digits(d) if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) => {
                say.digits(d.as_str())
            }
            // Ticket numbers such as INC0012345: spelled character by character ("I, N, C, ...").
            Spoken::Digits(d) => {
                say.text(d.chars().map(String::from).collect::<Vec<_>>().join(", "))
            }
        };
    }
    say
}

/// A prompt inside a Gather (Say / Play / Pause; anything else is skipped).
fn prompt<'a>(public_url: &str, a: &'a Action) -> Option<GatherChild<'a>> {
    match a {
        Action::Say {
            text,
            locale,
            voice,
        } => Some(say(text, locale, voice.as_deref()).into()),
        Action::Play { url, .. } => Some(Play::new(absolute(public_url, url)).into()),
        Action::Pause { seconds } => Some(Pause::seconds(*seconds).into()),
        _ => None,
    }
}

fn verb<'a>(public_url: &str, a: &'a Action) -> Verb<'a> {
    match a {
        Action::Say {
            text,
            locale,
            voice,
        } => say(text, locale, voice.as_deref()).into(),
        Action::Play { url, .. } => Play::new(absolute(public_url, url)).into(),
        Action::Pause { seconds } => Pause::seconds(*seconds).into(),
        Action::Gather {
            num_digits,
            finish_on,
            timeout_s,
            action,
            prompts,
        } => Gather {
            children: prompts
                .iter()
                .filter_map(|p| prompt(public_url, p))
                .collect(),
            action: Some(absolute(public_url, action)),
            method: Some(Method::Post),
            timeout: Some(*timeout_s),
            num_digits: *num_digits,
            finish_on_key: Some(finish_on.map_or(FinishOnKey::Disabled, FinishOnKey::Key)),
            ..Gather::default()
        }
        .into(),
        Action::Redirect { url } => Redirect::new(absolute(public_url, url))
            .method(Method::Post)
            .into(),
        Action::Enqueue {
            queue,
            wait_url,
            action,
        } => Enqueue {
            action: Some(absolute(public_url, action)),
            method: Some(Method::Post),
            wait_url: wait_url.as_deref().map(|u| absolute(public_url, u)),
            ..Enqueue::new(queue.as_str())
        }
        .into(),
        Action::Dial { number, action } => Dial {
            action: Some(absolute(public_url, action)),
            method: Some(Method::Post),
            ..Dial::number(number.as_str())
        }
        .into(),
        Action::Hangup => Verb::Hangup,
    }
}

/// Renders `actions` as a TwiML document.
///
/// # Errors
/// [`RenderFailed`] when a value cannot go into TwiML (the caller answers with [`FALLBACK`]).
pub fn twiml(public_url: &str, actions: &[Action]) -> Result<String, RenderFailed> {
    let response = Response {
        verbs: actions.iter().map(|a| verb(public_url, a)).collect(),
    };
    response.render().map_err(RenderFailed)
}

/// A spoken message and a hang-up (unknown calls, refused requests).
pub fn say_and_hang_up(text: &[Spoken], locale: &str, voice: Option<&str>) -> String {
    Response::new()
        .verb(say(text, locale, voice))
        .verb(Verb::Hangup)
        .render()
        .unwrap_or_else(|_| FALLBACK.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &[Spoken], voice: Option<&str>) -> Action {
        Action::Say {
            text: text.to_vec(),
            locale: "en-US".into(),
            voice: voice.map(String::from),
        }
    }

    fn text(t: &str) -> Spoken {
        Spoken::Text(t.into())
    }

    fn digits(d: &str) -> Spoken {
        Spoken::Digits(d.into())
    }

    #[test]
    fn same_documents_as_the_owned_model() {
        let gather = |prompts: Vec<Action>, finish_on: Option<char>, num_digits: Option<u32>| {
            Action::Gather {
                num_digits,
                finish_on,
                timeout_s: 5,
                action: "/voice/pin-reset/step/2".into(),
                prompts,
            }
        };
        let cases: Vec<Vec<Action>> = vec![
            vec![],
            vec![Action::Hangup],
            vec![
                gather(
                    vec![
                        say(
                            &[text("Please enter your current PIN, then press pound.")],
                            None,
                        ),
                        Action::Pause { seconds: 1 },
                        Action::Play {
                            url: "/prompts/en-US/x.mp3".into(),
                            text: "x".into(),
                        },
                        Action::Redirect {
                            url: "/skipped".into(),
                        },
                    ],
                    Some('#'),
                    None,
                ),
                Action::Redirect {
                    url: "/voice/pin-reset/step/3?a=1&b=\"2\"".into(),
                },
            ],
            vec![gather(vec![], None, Some(6))],
            vec![
                say(
                    &[
                        text("Ticket "),
                        digits("INC0012345"),
                        text(", code "),
                        digits("0042"),
                        digits(""),
                        digits("é&<>"),
                        text(" Grüße 👋 \t\n\r \u{0}"),
                    ],
                    Some("Polly.Joanna"),
                ),
                Action::Play {
                    url: "https://cdn.example.com/a.mp3?x=1&y=2".into(),
                    text: String::new(),
                },
                Action::Enqueue {
                    queue: "service-desk".into(),
                    wait_url: Some("/hold".into()),
                    action: "/voice/x/queued".into(),
                },
                Action::Enqueue {
                    queue: "q".into(),
                    wait_url: None,
                    action: "https://elsewhere.example/q".into(),
                },
                Action::Dial {
                    number: "+15550001111".into(),
                    action: "/voice/x/dialled".into(),
                },
                Action::Hangup,
            ],
            // Invalid: each one is the fallback.
            vec![say(&[], None)],
            vec![say(&[digits("")], None)],
            vec![say(&[text("\u{1}")], None)],
            vec![say(&[text("hi")], Some(""))],
            vec![gather(vec![], Some('a'), None)],
            vec![gather(vec![], None, Some(0))],
            vec![gather(vec![say(&[], None)], None, None)],
            vec![Action::Play {
                url: String::new(),
                text: String::new(),
            }],
            vec![Action::Redirect { url: "".into() }],
            vec![Action::Enqueue {
                queue: "q".repeat(65),
                wait_url: None,
                action: "/a".into(),
            }],
            vec![Action::Dial {
                number: "".into(),
                action: "/a".into(),
            }],
            vec![say(&[text(&"a".repeat(70_000))], None)],
        ];
        let rendered = |actions: &[Action]| twiml("https://h.example/a&b\"c", actions);
        // The two richest documents, byte for byte as the renderers before quick-xml (the
        // model-building one of commit 4e54156, then the streaming `Writer`) wrote them.
        assert_eq!(
            rendered(&cases[2]).as_deref(),
            Ok(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"https://h.example/a&amp;b&quot;c/voice/pin-reset/step/2\" finishOnKey=\"#\" method=\"POST\" timeout=\"5\"><Say language=\"en-US\">Please enter your current PIN, then press pound.</Say><Pause length=\"1\" /><Play>https://h.example/a&amp;b\"c/prompts/en-US/x.mp3</Play></Gather><Redirect method=\"POST\">https://h.example/a&amp;b\"c/voice/pin-reset/step/3?a=1&amp;b=\"2\"</Redirect></Response>"
            )
        );
        assert_eq!(
            rendered(&cases[4]).as_deref(),
            Ok(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say language=\"en-US\" voice=\"Polly.Joanna\">Ticket I, N, C, 0, 0, 1, 2, 3, 4, 5, code <say-as interpret-as=\"digits\">0042</say-as>&#233;, &amp;, &lt;, &gt; Gr&#252;&#223;e &#128075; \t\n&#13; </Say><Play>https://cdn.example.com/a.mp3?x=1&amp;y=2</Play><Enqueue action=\"https://h.example/a&amp;b&quot;c/voice/x/queued\" method=\"POST\" waitUrl=\"https://h.example/a&amp;b&quot;c/hold\">service-desk</Enqueue><Enqueue action=\"https://elsewhere.example/q\" method=\"POST\">q</Enqueue><Dial action=\"https://h.example/a&amp;b&quot;c/voice/x/dialled\" method=\"POST\"><Number>+15550001111</Number></Dial><Hangup /></Response>"
            )
        );
        assert_eq!(
            rendered(&cases[0]).as_deref(),
            Ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response />")
        );
        assert_eq!(
            twiml("", &cases[3]).as_deref(),
            Ok(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"/voice/pin-reset/step/2\" finishOnKey=\"\" method=\"POST\" numDigits=\"6\" timeout=\"5\" /></Response>"
            )
        );
        let refused = cases
            .iter()
            .filter(|a| twiml("https://x", a).is_err())
            .count();
        assert_eq!(
            refused, 12,
            "each invalid document is refused, never half written"
        );
        assert_eq!(
            say_and_hang_up(&[text("Goodbye.")], "en-US", None),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say language=\"en-US\">Goodbye.</Say><Hangup /></Response>"
        );
        assert_eq!(
            say_and_hang_up(&[digits("12"), text("&")], "en-US", Some("alice")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say language=\"en-US\" voice=\"alice\"><say-as interpret-as=\"digits\">12</say-as>&amp;</Say><Hangup /></Response>"
        );
        assert_eq!(say_and_hang_up(&[], "en-US", None), FALLBACK);
    }
}
