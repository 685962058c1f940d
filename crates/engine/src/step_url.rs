//! The action URL of a step, defined once for the engine, which writes it into the TwiML, and
//! the server, which routes the carrier's request for it back to the step.
//!
//! `/voice/{flow}/step/{token}` (the caller's digits), `.../timeout` (the gather ended without
//! input) and `.../transfer` (a queue or dial ended). The token is a fresh random value per
//! step, written in decimal as replicas of every release read it. Invariant:
//! `StepUrl::parse(&url.format()) == Some(url)` for every flow id without `/`, and `parse`
//! takes the path as it came (nothing is percent-decoded: an encoded token is refused, never
//! guessed at).

use std::fmt::Write as _;

/// Which webhook of a step the carrier sends: the last segment of the step's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEvent {
    /// `/voice/{flow}/step/{token}`: the digits a gather collected (possibly none).
    Digits,
    /// `.../timeout`: the gather ended without input.
    Timeout,
    /// `.../transfer`: a queue or dial ended.
    Transfer,
}

impl StepEvent {
    /// Every event, for routing.
    pub const ALL: [StepEvent; 3] = [StepEvent::Digits, StepEvent::Timeout, StepEvent::Transfer];

    /// What follows the token in the URL.
    pub const fn suffix(self) -> &'static str {
        match self {
            StepEvent::Digits => "",
            StepEvent::Timeout => "/timeout",
            StepEvent::Transfer => "/transfer",
        }
    }

    /// The event's name in logs and metrics (`digits`, `timeout`, `transfer`).
    pub const fn as_str(self) -> &'static str {
        match self {
            StepEvent::Digits => "digits",
            StepEvent::Timeout => "timeout",
            StepEvent::Transfer => "transfer",
        }
    }
}

/// A step's action URL, relative to the public URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepUrl<'a> {
    /// The flow id.
    pub flow: &'a str,
    /// The step token.
    pub token: u64,
    /// Which webhook of the step.
    pub event: StepEvent,
}

impl<'a> StepUrl<'a> {
    /// `/voice/{flow}/step/{token}{suffix}`.
    pub fn format(&self) -> String {
        let suffix = self.event.suffix();
        let mut url = String::with_capacity(12 + self.flow.len() + 20 + suffix.len());
        url.push_str("/voice/");
        url.push_str(self.flow);
        url.push_str("/step/");
        let _ = write!(url, "{}", self.token);
        url.push_str(suffix);
        url
    }

    /// The step URL `path` is, or `None` (another path, an empty flow id, a token that is not
    /// a decimal `u64`).
    pub fn parse(path: &'a str) -> Option<Self> {
        let (flow, rest) = path.strip_prefix("/voice/")?.split_once("/step/")?;
        if flow.is_empty() || flow.contains('/') {
            return None;
        }
        let (token, suffix) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        let event = StepEvent::ALL.into_iter().find(|e| e.suffix() == suffix)?;
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let token = token.parse().ok()?;
        Some(StepUrl { flow, token, event })
    }
}

/// The action URL of step `token` of `flow` (for the interpreter).
pub(crate) fn step_url(flow: &resetline_flow::Flow, token: u64, event: StepEvent) -> String {
    StepUrl {
        flow: &flow.id.value,
        token,
        event,
    }
    .format()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_urls_parse_back_to_what_was_formatted() {
        for event in StepEvent::ALL {
            for token in [0, 12, u64::MAX] {
                let url = StepUrl {
                    flow: "pin-reset",
                    token,
                    event,
                };
                assert_eq!(StepUrl::parse(&url.format()), Some(url));
            }
        }
        assert_eq!(
            StepUrl {
                flow: "f",
                token: 12,
                event: StepEvent::Timeout
            }
            .format(),
            "/voice/f/step/12/timeout"
        );
    }

    #[test]
    fn other_paths_are_not_step_urls() {
        for other in [
            "/voice/f",
            "/voice/f/status",
            "/voice//step/12",
            "/voice/f/step",
            "/voice/f/step/",
            "/voice/f/step/x1",
            "/voice/f/step/+1",
            "/voice/f/step/%31",
            "/voice/f/step/18446744073709551616",
            "/voice/f/step/12/other",
            "/voice/f/step/12/timeout/x",
            "/voice/f/step/12/",
            "/voice/a/b/step/12",
            "/sms/status",
            "/",
        ] {
            assert_eq!(StepUrl::parse(other), None, "{other}");
        }
    }
}
