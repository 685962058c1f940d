//! Carrier-neutral actions: what the caller should hear and what to collect next. The server
//! renders them as TwiML (or another dialect). Invariant: actions never hold a secret; URLs
//! are engine-relative paths (`/voice/{flow}/...`) and never carry digits.

use resetline_flow::template::Segment;
use serde::{Deserialize, Serialize};

/// One thing the carrier should do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Speak text (digits segments digit by digit).
    Say {
        /// What to say.
        text: Vec<Spoken>,
        /// Locale for the TTS language.
        locale: String,
        /// TTS voice.
        voice: Option<String>,
    },
    /// Play a recording.
    Play {
        /// Engine-relative URL (`/prompts/...`) or absolute URL.
        url: String,
        /// The words it contains (transcripts, simulator).
        text: String,
    },
    /// Silence.
    Pause {
        /// Seconds.
        seconds: u32,
    },
    /// Collect DTMF digits; prompts play inside so callers can type ahead.
    Gather {
        /// Exact count when fixed.
        num_digits: Option<u32>,
        /// Key that ends entry (`None`: none).
        finish_on: Option<char>,
        /// Seconds of silence that end entry.
        timeout_s: u32,
        /// Where the digits are posted.
        action: String,
        /// Prompts played while listening (Say / Play / Pause only).
        prompts: Vec<Action>,
    },
    /// Fetch the next instructions from `url`.
    Redirect {
        /// Engine-relative URL.
        url: String,
    },
    /// Put the caller in a queue.
    Enqueue {
        /// Queue name.
        queue: String,
        /// Hold music URL.
        wait_url: Option<String>,
        /// Where the queue result is posted.
        action: String,
    },
    /// Dial a number.
    Dial {
        /// E.164 number.
        number: String,
        /// Where the dial result is posted.
        action: String,
    },
    /// End the call.
    Hangup,
}

/// A piece of spoken text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spoken {
    /// Read as text.
    Text(String),
    /// Read digit by digit.
    Digits(String),
    /// Silence, in milliseconds (SSML `<break time>`).
    Break(u32),
    /// Said with SSML `<emphasis level>` (a level the catalog loader accepted).
    Emphasis {
        /// `strong`, `moderate` or `reduced`.
        level: String,
        /// What is said (text and digits).
        text: Vec<Spoken>,
    },
    /// Said at SSML `<prosody rate>` (a rate the catalog loader accepted).
    Rate {
        /// `x-slow`..`x-fast` or a percentage.
        rate: String,
        /// What is said (text and digits).
        text: Vec<Spoken>,
    },
}

impl From<Segment> for Spoken {
    fn from(s: Segment) -> Self {
        match s {
            Segment::Text(t) => Spoken::Text(t),
            Segment::Digits(d) => Spoken::Digits(d),
        }
    }
}

/// The words of `spoken` as template segments (a break is a space between words; emphasis
/// and rate keep their words).
fn segments(spoken: &[Spoken], out: &mut Vec<Segment>) {
    for s in spoken {
        match s {
            Spoken::Text(t) => out.push(Segment::Text(t.clone())),
            Spoken::Digits(d) => out.push(Segment::Digits(d.clone())),
            Spoken::Break(_) => {
                let spaced = match out.last() {
                    Some(Segment::Text(t)) => t.ends_with(char::is_whitespace),
                    _ => out.is_empty(),
                };
                if !spaced {
                    out.push(Segment::Text(" ".into()));
                }
            }
            Spoken::Emphasis { text, .. } | Spoken::Rate { text, .. } => segments(text, out),
        }
    }
}

/// Plain text of what `actions` say, as a caller would hear it ("0, 1, 9, 9" for digits).
pub fn transcript(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Say { text, .. } => {
                let mut segs = Vec::new();
                segments(text, &mut segs);
                out.push(resetline_flow::template::plain_text(&segs));
            }
            Action::Play { text, .. } => out.push(text.clone()),
            Action::Gather { prompts, .. } => out.extend(transcript(prompts)),
            _ => {}
        }
    }
    out
}
