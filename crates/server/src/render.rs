//! Carrier-neutral actions to TwiML. URLs the engine emits are relative; here they become
//! absolute under the configured public URL. Invariant: the answer is always a valid TwiML
//! document; if rendering fails, a fixed apology document is sent instead of an error page.

use resetline_engine::{Action, Spoken};
use resetline_twiml::{
    Dial, Enqueue, FinishOnKey, Gather, GatherChild, Hangup, Method, Pause, Play, Redirect,
    Response, Say,
};

/// Sent when a document cannot be rendered: a short apology and a hang-up.
pub const FALLBACK: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Sorry, something went wrong. Please call again later.</Say><Hangup /></Response>";

fn absolute(public_url: &str, url: &str) -> String {
    if url.starts_with('/') {
        let mut full = String::with_capacity(public_url.len() + url.len());
        full.push_str(public_url);
        full.push_str(url);
        full
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
            // Ticket numbers such as INC0012345: spell character by character.
            Spoken::Digits(d) => s.text(d.chars().map(String::from).collect::<Vec<_>>().join(", ")),
        };
    }
    s
}

fn child(public_url: &str, a: &Action) -> Option<GatherChild> {
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

/// Renders `actions` as a TwiML document.
pub fn twiml(public_url: &str, actions: &[Action]) -> String {
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
                if let Some(n) = num_digits {
                    g = g.num_digits(*n);
                }
                g = g.finish_on_key(match finish_on {
                    Some(k) => FinishOnKey::Key(*k),
                    None => FinishOnKey::Disabled,
                });
                for p in prompts {
                    if let Some(c) = child(public_url, p) {
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
    match r.render() {
        Ok(xml) => xml,
        Err(e) => {
            tracing::error!(error = %e, "TwiML could not be rendered; sending the fallback");
            FALLBACK.to_string()
        }
    }
}

/// A spoken message and a hang-up (unknown calls, refused requests).
pub fn say_and_hang_up(text: &[Spoken], locale: &str, voice: Option<&str>) -> String {
    let r = Response::new().verb(say(text, locale, voice)).verb(Hangup);
    r.render().unwrap_or_else(|_| FALLBACK.to_string())
}
