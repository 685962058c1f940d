//! Carrier-neutral actions to TwiML. URLs the engine emits are relative; here they become
//! absolute under the configured public URL. Invariant: the answer is always a valid TwiML
//! document; if rendering fails, a fixed apology document is sent instead of an error page.
//!
//! The actions are written straight through the twiml crate's [`Writer`] (which checks every
//! value as the owned model's `render` does): no document model is built, no text is copied,
//! and an absolute URL is written as the public URL followed by the path ([`Url::joined`]).

use resetline_engine::{Action, Spoken};
use resetline_twiml::render::{
    DialAttrs, EnqueueAttrs, GatherAttrs, GatherChildren, PlayAttrs, SayAttrs, SayContent,
};
use resetline_twiml::{FinishOnKey, Method, Url, Writer};

/// Sent when a document cannot be rendered: a short apology and a hang-up.
pub const FALLBACK: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Sorry, something went wrong. Please call again later.</Say><Hangup /></Response>";

fn absolute<'a>(public_url: &'a str, url: &'a str) -> Url<'a> {
    if url.starts_with('/') {
        Url::joined(public_url, url)
    } else {
        Url::new(url)
    }
}

fn say_attrs<'a>(locale: &'a str, voice: Option<&'a str>) -> SayAttrs<'a> {
    SayAttrs {
        language: Some(locale),
        voice,
        loop_count: None,
    }
}

fn spoken(say: &mut SayContent<'_>, text: &[Spoken]) {
    for part in text {
        match part {
            Spoken::Text(t) => say.text(t),
            Spoken::Digits(d) if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) => {
                say.digits(d)
            }
            // Ticket numbers such as INC0012345: spell character by character ("I, N, C, ...").
            Spoken::Digits(d) => {
                let mut buf = [0; 4];
                for (i, c) in d.chars().enumerate() {
                    if i > 0 {
                        say.text(", ");
                    }
                    say.text(c.encode_utf8(&mut buf));
                }
            }
        }
    }
}

/// A prompt inside a Gather (Say / Play / Pause; anything else is skipped).
fn child(g: &mut GatherChildren<'_>, public_url: &str, a: &Action) {
    match a {
        Action::Say {
            text,
            locale,
            voice,
        } => g.say(say_attrs(locale, voice.as_deref()), |s| spoken(s, text)),
        Action::Play { url, .. } => g.play(Some(absolute(public_url, url)), PlayAttrs::default()),
        Action::Pause { seconds } => g.pause(Some(*seconds)),
        _ => {}
    }
}

/// Renders `actions` as a TwiML document.
pub fn twiml(public_url: &str, actions: &[Action]) -> String {
    let mut w = Writer::new();
    for a in actions {
        match a {
            Action::Say {
                text,
                locale,
                voice,
            } => w.say(say_attrs(locale, voice.as_deref()), |s| spoken(s, text)),
            Action::Play { url, .. } => {
                w.play(Some(absolute(public_url, url)), PlayAttrs::default())
            }
            Action::Pause { seconds } => w.pause(Some(*seconds)),
            Action::Gather {
                num_digits,
                finish_on,
                timeout_s,
                action,
                prompts,
            } => w.gather(
                GatherAttrs {
                    action: Some(absolute(public_url, action)),
                    method: Some(Method::Post),
                    timeout: Some(*timeout_s),
                    num_digits: *num_digits,
                    finish_on_key: Some(match finish_on {
                        Some(k) => FinishOnKey::Key(*k),
                        None => FinishOnKey::Disabled,
                    }),
                    ..GatherAttrs::default()
                },
                |g| {
                    for p in prompts {
                        child(g, public_url, p);
                    }
                },
            ),
            Action::Redirect { url } => {
                w.redirect(absolute(public_url, url), Some(Method::Post));
            }
            Action::Enqueue {
                queue,
                wait_url,
                action,
            } => w.enqueue(
                queue,
                EnqueueAttrs {
                    action: Some(absolute(public_url, action)),
                    method: Some(Method::Post),
                    wait_url: wait_url.as_deref().map(|u| absolute(public_url, u)),
                    wait_url_method: None,
                },
            ),
            Action::Dial { number, action } => w.dial(
                DialAttrs {
                    action: Some(absolute(public_url, action)),
                    method: Some(Method::Post),
                    ..DialAttrs::default()
                },
                |d| d.number(number, None),
            ),
            Action::Hangup => w.hangup(),
        }
    }
    match w.finish() {
        Ok(xml) => xml,
        Err(e) => {
            tracing::error!(error = %e, "TwiML could not be rendered; sending the fallback");
            FALLBACK.to_string()
        }
    }
}

/// A spoken message and a hang-up (unknown calls, refused requests).
pub fn say_and_hang_up(text: &[Spoken], locale: &str, voice: Option<&str>) -> String {
    let mut w = Writer::new();
    w.say(say_attrs(locale, voice), |s| spoken(s, text));
    w.hangup();
    w.finish().unwrap_or_else(|_| FALLBACK.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use resetline_twiml::{Dial, Enqueue, Gather, GatherChild, Hangup, Pause, Play, Redirect};
    use resetline_twiml::{Response, Say};

    /// The documents as the server built them before it wrote through a `Writer`: an owned
    /// model with every text cloned and every URL joined, then `Response::render`.
    fn reference(public_url: &str, actions: &[Action]) -> String {
        fn absolute(public_url: &str, url: &str) -> String {
            if url.starts_with('/') {
                format!("{public_url}{url}")
            } else {
                url.to_string()
            }
        }
        fn say(text: &[Spoken], locale: &str, voice: Option<&str>) -> Say {
            let mut s = Say::new().language(locale);
            if let Some(v) = voice {
                s = s.voice(v);
            }
            for part in text {
                s = match part {
                    Spoken::Text(t) => s.text(t.clone()),
                    Spoken::Digits(d) if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) => {
                        s.digits(d.clone())
                    }
                    Spoken::Digits(d) => {
                        s.text(d.chars().map(String::from).collect::<Vec<_>>().join(", "))
                    }
                };
            }
            s
        }
        let mut r = Response::new();
        for a in actions {
            match a {
                Action::Say {
                    text,
                    locale,
                    voice,
                } => r.push(say(text, locale, voice.as_deref())),
                Action::Play { url, .. } => r.push(Play::new(absolute(public_url, url))),
                Action::Pause { seconds } => r.push(Pause::seconds(*seconds)),
                Action::Gather {
                    num_digits,
                    finish_on,
                    timeout_s,
                    action,
                    prompts,
                } => {
                    let mut g = Gather::new()
                        .action(absolute(public_url, action), Method::Post)
                        .timeout(*timeout_s);
                    g.num_digits = *num_digits;
                    g = g.finish_on_key(match finish_on {
                        Some(k) => FinishOnKey::Key(*k),
                        None => FinishOnKey::Disabled,
                    });
                    for p in prompts {
                        let c: Option<GatherChild> = match p {
                            Action::Say {
                                text,
                                locale,
                                voice,
                            } => Some(say(text, locale, voice.as_deref()).into()),
                            Action::Play { url, .. } => {
                                Some(Play::new(absolute(public_url, url)).into())
                            }
                            Action::Pause { seconds } => Some(Pause::seconds(*seconds).into()),
                            _ => None,
                        };
                        if let Some(c) = c {
                            g = g.child(c);
                        }
                    }
                    r.push(g);
                }
                Action::Redirect { url } => {
                    r.push(Redirect::new(absolute(public_url, url)).method(Method::Post))
                }
                Action::Enqueue {
                    queue,
                    wait_url,
                    action,
                } => {
                    let mut e = Enqueue::new(queue.clone());
                    e.action = Some(absolute(public_url, action));
                    e.method = Some(Method::Post);
                    e.wait_url = wait_url.as_ref().map(|w| absolute(public_url, w));
                    r.push(e);
                }
                Action::Dial { number, action } => {
                    let mut d = Dial::number(number.clone());
                    d.action = Some(absolute(public_url, action));
                    d.method = Some(Method::Post);
                    r.push(d);
                }
                Action::Hangup => r.push(Hangup),
            }
        }
        r.render().unwrap_or_else(|_| FALLBACK.to_string())
    }

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
        for public_url in ["https://ivr.example.com", "https://h.example/a&b\"c", ""] {
            for actions in &cases {
                let written = twiml(public_url, actions);
                assert_eq!(written, reference(public_url, actions), "{actions:?}");
            }
        }
        // The two richest documents, byte for byte as the model-building renderer (commit
        // 4e54156) wrote them: the comparison above checks the mapping, these the bytes.
        let base = "https://h.example/a&b\"c";
        assert_eq!(
            twiml(base, &cases[2]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather action=\"https://h.example/a&amp;b&quot;c/voice/pin-reset/step/2\" finishOnKey=\"#\" method=\"POST\" timeout=\"5\"><Say language=\"en-US\">Please enter your current PIN, then press pound.</Say><Pause length=\"1\" /><Play>https://h.example/a&amp;b\"c/prompts/en-US/x.mp3</Play></Gather><Redirect method=\"POST\">https://h.example/a&amp;b\"c/voice/pin-reset/step/3?a=1&amp;b=\"2\"</Redirect></Response>"
        );
        assert_eq!(
            twiml(base, &cases[4]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say language=\"en-US\" voice=\"Polly.Joanna\">Ticket I, N, C, 0, 0, 1, 2, 3, 4, 5, code <say-as interpret-as=\"digits\">0042</say-as>&#233;, &amp;, &lt;, &gt; Gr&#252;&#223;e &#128075; \t\n&#13; </Say><Play>https://cdn.example.com/a.mp3?x=1&amp;y=2</Play><Enqueue action=\"https://h.example/a&amp;b&quot;c/voice/x/queued\" method=\"POST\" waitUrl=\"https://h.example/a&amp;b&quot;c/hold\">service-desk</Enqueue><Enqueue action=\"https://elsewhere.example/q\" method=\"POST\">q</Enqueue><Dial action=\"https://h.example/a&amp;b&quot;c/voice/x/dialled\" method=\"POST\"><Number>+15550001111</Number></Dial><Hangup /></Response>"
        );
        let fallbacks = cases
            .iter()
            .filter(|a| twiml("https://x", a) == FALLBACK)
            .count();
        assert_eq!(fallbacks, 12);
        for (text, voice) in [
            (vec![text("Goodbye.")], None),
            (vec![digits("12"), text("&")], Some("alice")),
            (vec![], None),
        ] {
            let expected = reference("", &[say(&text, voice), Action::Hangup]);
            assert_eq!(say_and_hang_up(&text, "en-US", voice), expected);
        }
    }
}
