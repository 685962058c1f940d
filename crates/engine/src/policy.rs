//! Checks a new secret against a flow policy; each refusal names the prompt that speaks its
//! reason. Invariant: the check never logs or returns the secret, only the rule it broke.

use resetline_flow::model::{Policy, Rule, SecretKind};

use crate::secret::Secret;

/// The most common PINs (4 to 12 digits) from public breach analyses; a hit is refused.
const COMMON: &[&str] = &[
    "1234",
    "1111",
    "0000",
    "1212",
    "7777",
    "1004",
    "2000",
    "4444",
    "2222",
    "6969",
    "9999",
    "3333",
    "5555",
    "6666",
    "1122",
    "1313",
    "8888",
    "4321",
    "2001",
    "1010",
    "12345678",
    "11111111",
    "00000000",
    "12341234",
    "87654321",
    "11223344",
    "12121212",
    "12344321",
    "88888888",
    "99999999",
    "123456789",
    "1234567890",
    "0987654321",
    "147258369",
    "159753",
    "123123",
    "112233",
    "121212",
    "123321",
    "654321",
    "696969",
    "20002000",
    "19901990",
    "password",
];

/// Keypad shapes on a 3x4 phone keypad (columns, diagonals, corners, the cross), refused as
/// whole secrets or when the secret is one repeated.
const KEYPAD: &[&str] = &[
    "2580",
    "0852",
    "1470",
    "0741",
    "3690",
    "0963",
    "1397",
    "7931",
    "1379",
    "3179",
    "1590",
    "3570",
    "2468",
    "8642",
    "1357",
    "7531",
    "147258369",
    "258025802580",
    "14789632",
    "1236987",
    "25802580",
    "14701470",
    "36903690",
    "13791379",
];

/// What a caller's new secret broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than the policy minimum.
    TooShort,
    /// Longer than the policy maximum.
    TooLong,
    /// Not all digits (PIN policy).
    NotDigits,
    /// One digit repeated.
    Repeated,
    /// Ascending or descending run.
    Sequential,
    /// A keypad pattern.
    Keypad,
    /// Contains the caller's ID, phone number or birth date.
    Personal,
    /// In the common list.
    Common,
}

impl Refusal {
    /// The catalog prompt that speaks this reason.
    pub fn prompt(self) -> &'static str {
        match self {
            Refusal::TooShort => "policy_too_short",
            Refusal::TooLong => "policy_too_long",
            Refusal::NotDigits | Refusal::Common => "policy_common",
            Refusal::Repeated => "policy_repeated",
            Refusal::Sequential => "policy_sequential",
            Refusal::Keypad => "policy_keypad",
            Refusal::Personal => "policy_personal",
        }
    }

    /// A stable name for logs and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::TooShort => "too_short",
            Refusal::TooLong => "too_long",
            Refusal::NotDigits => "not_digits",
            Refusal::Repeated => "repeated",
            Refusal::Sequential => "sequential",
            Refusal::Keypad => "keypad",
            Refusal::Personal => "personal",
            Refusal::Common => "common",
        }
    }
}

/// Personal values a new secret must not contain.
#[derive(Clone, Debug, Default)]
pub struct Personal<'a> {
    /// Account id, phone numbers, birth date (any format; digits are compared).
    pub values: Vec<&'a str>,
}

/// The ways a birth date `YYYY-MM-DD` is typed on a keypad: YYYYMMDD, DDMMYYYY, MMDDYYYY,
/// YYMMDD, DDMMYY, MMDDYY. Anything else yields nothing.
pub fn date_forms(date: &str) -> Vec<String> {
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Vec::new();
    };
    if y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !date.chars().all(|c| c.is_ascii_digit() || c == '-')
    {
        return Vec::new();
    }
    let yy = &y[2..];
    vec![
        format!("{y}{m}{d}"),
        format!("{d}{m}{y}"),
        format!("{m}{d}{y}"),
        format!("{yy}{m}{d}"),
        format!("{d}{m}{yy}"),
        format!("{m}{d}{yy}"),
    ]
}

/// Checks `secret` against `policy`. Length is counted in characters; nothing is truncated.
pub fn check(policy: &Policy, secret: &Secret, personal: &Personal<'_>) -> Result<(), Refusal> {
    let s = secret.expose();
    let len = u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
    if len < policy.min_length.value {
        return Err(Refusal::TooShort);
    }
    if len > policy.max_length {
        return Err(Refusal::TooLong);
    }
    if policy.kind == SecretKind::Pin && !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(Refusal::NotDigits);
    }
    let digits: Vec<u8> = s.bytes().collect();
    for rule in &policy.reject {
        let broken = match rule {
            Rule::Repeated => digits.windows(2).all(|w| w[0] == w[1]),
            Rule::Sequential => is_run(&digits),
            Rule::Keypad => KEYPAD.iter().any(|k| repeats_of(s, k)),
            Rule::Personal => personal.values.iter().any(|v| {
                let d: String = v.chars().filter(char::is_ascii_digit).collect();
                d.len() >= 4
                    && (s.contains(&d)
                        || d.contains(s)
                        || (d.len() >= 8 && s.contains(&d[d.len() - 8..])))
            }),
            Rule::Common => {
                COMMON.contains(&s) || COMMON.iter().any(|c| c.len() >= 4 && repeats_of(s, c))
            }
        };
        if broken {
            return Err(match rule {
                Rule::Repeated => Refusal::Repeated,
                Rule::Sequential => Refusal::Sequential,
                Rule::Keypad => Refusal::Keypad,
                Rule::Personal => Refusal::Personal,
                Rule::Common => Refusal::Common,
            });
        }
    }
    Ok(())
}

/// Ascending or descending by one at every step (wrapping 9->0 counts as a run too).
fn is_run(d: &[u8]) -> bool {
    if d.len() < 3 {
        return false;
    }
    let up = d
        .windows(2)
        .all(|w| (w[0] + 1 == w[1]) || (w[0] == b'9' && w[1] == b'0'));
    let down = d
        .windows(2)
        .all(|w| (w[1] + 1 == w[0]) || (w[0] == b'0' && w[1] == b'9'));
    up || down
}

/// `s` is `pattern` repeated (possibly cut short at the end), e.g. `25802580`.
fn repeats_of(s: &str, pattern: &str) -> bool {
    !s.is_empty()
        && s.len() >= pattern.len()
        && s.bytes().zip(pattern.bytes().cycle()).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use resetline_flow::Spanned;

    fn policy() -> Policy {
        Policy {
            name: Spanned::new("pin".into(), Default::default()),
            kind: SecretKind::Pin,
            min_length: Spanned::new(8, Default::default()),
            max_length: 12,
            reject: vec![
                Rule::Repeated,
                Rule::Sequential,
                Rule::Keypad,
                Rule::Personal,
                Rule::Common,
            ],
        }
    }

    fn check_str(s: &str) -> Result<(), Refusal> {
        check(
            &policy(),
            &Secret::new(s),
            &Personal {
                values: vec!["1004217", "+15551230199", "1984-07-21"],
            },
        )
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        assert_eq!(check_str("4831"), Err(Refusal::TooShort));
        assert_eq!(check_str("4831927364510"), Err(Refusal::TooLong));
        assert_eq!(check_str("11111111"), Err(Refusal::Repeated));
        assert_eq!(check_str("34567890"), Err(Refusal::Sequential));
        assert_eq!(check_str("98765432"), Err(Refusal::Sequential));
        assert_eq!(check_str("25802580"), Err(Refusal::Keypad));
        assert_eq!(check_str("91004217"), Err(Refusal::Personal));
        assert_eq!(
            check_str("55512301"),
            Err(Refusal::Personal),
            "8 digits taken from the phone number"
        );
        assert_eq!(check_str("19840721"), Err(Refusal::Personal));
        let forms = date_forms("1984-07-21");
        for pin in ["21071984", "07211984", "48407211"] {
            assert_eq!(
                check(
                    &policy(),
                    &Secret::new(pin),
                    &Personal {
                        values: forms.iter().map(String::as_str).collect()
                    }
                ),
                Err(Refusal::Personal),
                "{pin}"
            );
        }
        assert_eq!(check_str("12341234"), Err(Refusal::Common));
        assert_eq!(check_str("4831a927"), Err(Refusal::NotDigits));
        assert_eq!(check_str("48319273"), Ok(()));
    }

    #[test]
    fn refusals_name_catalog_prompts() {
        for r in [
            Refusal::TooShort,
            Refusal::TooLong,
            Refusal::Repeated,
            Refusal::Sequential,
            Refusal::Keypad,
            Refusal::Personal,
            Refusal::Common,
        ] {
            let kinds = resetline_flow::spec::KIND_PROMPTS
                .iter()
                .find(|(k, _)| *k == "set_secret")
                .map(|(_, p)| *p)
                .unwrap_or(&[]);
            assert!(kinds.contains(&r.prompt()), "{}", r.prompt());
        }
    }
}
