//! Twilio request validation (`X-Twilio-Signature`), as protocol.md §2 and
//! Twilio's python/java helpers define it.
//!
//! * Message: the full URL Twilio requested, then for each form parameter,
//!   keys sorted by byte order (case-sensitive), `key + value` with no
//!   separator. A key that occurs several times contributes each of its
//!   *distinct* values once, values sorted by byte order (python/node
//!   behaviour; java allows one value per key).
//! * Signature: standard base64 (with padding) of HMAC-SHA1 keyed with the
//!   auth token.
//! * [`validate`] accepts the signature if it matches the URL as given, the
//!   URL with the scheme's default port added (`:443` for https, `:80` for
//!   http; an explicit port is kept), or the URL with any port removed.
//!   Every candidate is always computed and compared in constant time.
//! * GET requests: the parameters are in the URL, so pass an empty `params`.
//! * Non-form bodies ([`validate_with_body`]): the URL carries
//!   `bodySHA256=<hex sha256 of the body>`; the signature covers the URL with
//!   no parameters and the body hash must match too.
//!
//! The URL is signed verbatim: percent-encoding, raw UTF-8, userinfo and a
//! doubled slash are not normalised. Node's extra retry through the legacy
//! `querystring` re-encoding (so `'` and `%27` both pass) is deliberately not
//! implemented; the engine must pass the URL exactly as Twilio requested it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the HTTP header carrying the signature.
pub const HEADER_NAME: &str = "X-Twilio-Signature";

/// Query parameter that carries the hex SHA-256 of a non-form body.
pub const BODY_HASH_PARAM: &str = "bodySHA256";

/// Why a request failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Twilio-Signature` header, or an empty one (node answers 400).
    MissingHeader,
    /// The header matched none of the URL candidates (node answers 403).
    Mismatch,
    /// [`validate_with_body`] was given a URL without a `bodySHA256` parameter.
    MissingBodyHash,
    /// The signature was valid but `bodySHA256` is not the hash of the body.
    BodyHashMismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::MissingHeader => "missing or empty X-Twilio-Signature header",
            SignatureError::Mismatch => "X-Twilio-Signature does not match the request",
            SignatureError::MissingBodyHash => "request URL has no bodySHA256 parameter",
            SignatureError::BodyHashMismatch => "bodySHA256 does not match the request body",
        })
    }
}

impl std::error::Error for SignatureError {}

/// The auth token as a prepared HMAC-SHA1 key: hashing the key into its inner and outer
/// blocks happens once (at start-up), not once per webhook and URL candidate. Cloning is a
/// copy of two hash states. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha1>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Prepares `token` (the auth token's UTF-8 bytes).
    pub fn new(token: &[u8]) -> Self {
        // HMAC takes keys of any length: the error arm is unreachable, and an empty key
        // (which HMAC also accepts) still only validates what it signed.
        SigningKey(
            <Hmac<Sha1> as KeyInit>::new_from_slice(token)
                .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&Default::default())),
        )
    }

    /// The `X-Twilio-Signature` value for `url` and form `params` ([`compute`]).
    pub fn compute<K: AsRef<str>, V: AsRef<str>>(&self, url: &str, params: &[(K, V)]) -> String {
        let mut mac = self.0.clone();
        mac.update(url.as_bytes());
        for_each_signed_param(params, |part| mac.update(part));
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Validates a form-encoded (or GET) request ([`validate`]).
    ///
    /// # Errors
    /// As [`validate`].
    pub fn validate<K: AsRef<str>, V: AsRef<str>>(
        &self,
        url: &str,
        params: &[(K, V)],
        header: Option<&str>,
    ) -> Result<(), SignatureError> {
        let header = match header {
            Some(h) if !h.is_empty() => h,
            _ => return Err(SignatureError::MissingHeader),
        };
        // The sorted parameters are signed after whichever URL form Twilio used: built once.
        // Zeroed when dropped: it holds every value, the digits a caller typed among them.
        let mut signed = zeroize::Zeroizing::new(Vec::with_capacity(
            params
                .iter()
                .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
                .sum(),
        ));
        for_each_signed_param(params, |part| signed.extend_from_slice(part));
        let matches = |candidate: &str| -> bool {
            let mut mac = self.0.clone();
            mac.update(candidate.as_bytes());
            mac.update(&signed);
            let mut expected = [0u8; 28];
            let Ok(n) = STANDARD.encode_slice(mac.finalize().into_bytes(), &mut expected) else {
                return false;
            };
            bool::from(expected[..n].ct_eq(header.as_bytes()))
        };
        // Each comparison is constant-time; stopping at the first match only tells which URL
        // form matched, which the caller learns anyway. The other forms are built only when
        // the URL as given does not match.
        if matches(url) || url_candidates(url).iter().skip(1).any(|c| matches(c)) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Computes the `X-Twilio-Signature` value for `url` and form `params`.
///
/// `token` is the auth token's UTF-8 bytes; `params` are decoded form values
/// (as returned by [`crate::params::parse_owned`]); pass an empty slice for GET
/// requests and JSON bodies. A server signing or checking many requests keeps a
/// [`SigningKey`] instead.
pub fn compute(token: &[u8], url: &str, params: &[(String, String)]) -> String {
    SigningKey::new(token).compute(url, params)
}

/// Feeds the parameters in signing order: sorted by name, each name's distinct values sorted,
/// name then value for each (duplicate name/value pairs count once, as Twilio's libraries do).
fn for_each_signed_param<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    mut feed: impl FnMut(&[u8]),
) {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Twilio sends its parameters in this order already: then there is nothing to sort.
    if !sorted.is_sorted() {
        sorted.sort_unstable();
    }
    sorted.dedup();
    for (key, value) in sorted {
        feed(key.as_bytes());
        feed(value.as_bytes());
    }
}

/// Validates a form-encoded (or GET) request.
///
/// `url` is the full public URL Twilio requested (scheme, userinfo, host,
/// port, path and query exactly as sent); `params` the decoded body
/// parameters (empty for GET); `header` the `X-Twilio-Signature` value.
///
/// # Errors
/// [`SignatureError::MissingHeader`] for `None` or `""`,
/// [`SignatureError::Mismatch`] when no URL candidate matches.
pub fn validate(
    token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    SigningKey::new(token).validate(url, params, header)
}

/// Validates a request whose body is not form-encoded (e.g. JSON).
///
/// The signature must cover `url` (with no parameters, port candidates as in
/// [`validate`]) and the URL's `bodySHA256` query value must equal
/// [`body_sha256_hex`] of `body`.
///
/// # Errors
/// [`SignatureError::MissingHeader`], [`SignatureError::MissingBodyHash`],
/// [`SignatureError::Mismatch`] or [`SignatureError::BodyHashMismatch`], checked
/// in that order.
pub fn validate_with_body(
    token: &[u8],
    url: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if header.is_none_or(str::is_empty) {
        return Err(SignatureError::MissingHeader);
    }
    let claimed = query_param(url, BODY_HASH_PARAM).ok_or(SignatureError::MissingBodyHash)?;
    validate(token, url, &[], header)?;
    let actual = body_sha256_hex(body);
    if bool::from(actual.as_bytes().ct_eq(claimed.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// Lower-case hex SHA-256 of `body`, the value Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// First value of query parameter `name` in `url` (form-decoded).
fn query_param(url: &str, name: &str) -> Option<String> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (_, query) = without_fragment.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The URL as given, with the default port added, and with the port removed;
/// duplicates dropped. A URL that cannot be split into scheme and authority,
/// or whose scheme is not http/https, yields only itself.
pub(crate) fn url_candidates(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Some(parts) = UrlParts::split(url) {
        for candidate in [parts.with_default_port(), parts.without_port()] {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// `scheme://userinfo@host:port` + rest, borrowed from the original URL.
struct UrlParts<'a> {
    /// Everything up to and including `@` (or `://` without userinfo).
    prefix: &'a str,
    /// Host, IPv6 literals with their brackets.
    host: &'a str,
    /// Port digits; `Some("")` for a bare trailing colon.
    port: Option<&'a str>,
    /// Path, query and fragment.
    rest: &'a str,
    default_port: u16,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")?;
        let scheme = &url[..scheme_end];
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else if scheme.eq_ignore_ascii_case("http") {
            80
        } else {
            return None;
        };
        let authority_start = scheme_end + 3;
        let authority_len = url[authority_start..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - authority_start);
        let authority_end = authority_start + authority_len;
        let authority = &url[authority_start..authority_end];
        let host_start = authority_start + authority.rfind('@').map_or(0, |i| i + 1);
        let host_port = &url[host_start..authority_end];
        let (host, port) = if host_port.starts_with('[') {
            let close = host_port.find(']')?;
            let after = &host_port[close + 1..];
            match after.strip_prefix(':') {
                Some(port) => (&host_port[..=close], Some(port)),
                None if after.is_empty() => (host_port, None),
                None => return None,
            }
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() || !port.unwrap_or("").bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            prefix: &url[..host_start],
            host,
            port,
            rest: &url[authority_end..],
            default_port,
        })
    }

    fn with_default_port(&self) -> String {
        match self.port {
            Some(port) if !port.is_empty() => {
                format!("{}{}:{}{}", self.prefix, self.host, port, self.rest)
            }
            _ => format!(
                "{}{}:{}{}",
                self.prefix, self.host, self.default_port, self.rest
            ),
        }
    }

    fn without_port(&self) -> String {
        format!("{}{}{}", self.prefix, self.host, self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"12345";
    const U: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const EMPTY_JSON_HASH: &str =
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// `P` from protocol.md §2.6, deliberately not in sorted order.
    fn p() -> Vec<(String, String)> {
        kv(&[
            ("To", "+18005551212"),
            ("From", "+14158675309"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("Caller", "+14158675309"),
        ])
    }

    struct Row {
        n: u32,
        url: String,
        params: Vec<(String, String)>,
        expected: &'static str,
    }

    /// Every row of protocol.md §2.6, as (URL that was signed, params,
    /// expected). All 24 rows apply to `compute`; rows whose point is a
    /// *validation* behaviour get extra assertions in the tests below.
    fn rows() -> Vec<Row> {
        let none = Vec::new;
        let row = |n, url: &str, params, expected| Row {
            n,
            url: url.to_owned(),
            params,
            expected,
        };
        vec![
            row(1, U, p(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            row(
                2,
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                p(),
                "kvajT1Ptam85bY51eRf/AJRuM3w=",
            ),
            row(
                3,
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                p(),
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            ),
            row(
                4,
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                p(),
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            ),
            row(5, U, none(), "zYQTYrRWXE7LtzbG4PfP7/bkkGo="),
            row(
                6,
                "https://mycompany.com/myapp.php",
                p(),
                "1xaxFBvyzXYvWplzNOSs28HWO94=",
            ),
            // Repeated key: distinct values, sorted (1234 twice counts once).
            row(
                7,
                U,
                kv(&[
                    ("Sid", "CA123"),
                    ("SidAccount", "AC123"),
                    ("Digits", "5678"),
                    ("Digits", "1234"),
                    ("Digits", "1234"),
                ]),
                "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
            ),
            row(
                8,
                U,
                kv(&[
                    ("MessagingBinding.Address", "+1325xxxxxxx"),
                    ("MessagingBinding.Address", "+1415xxxxxxx"),
                ]),
                "83O6e2vORAoJHUNzJjDWN1jz+BA=",
            ),
            row(
                9,
                &format!("{U}&bodySHA256={BODY_HASH}"),
                none(),
                "a9nBmqA0ju/hNViExpshrM61xv4=",
            ),
            row(
                10,
                &format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}"),
                none(),
                "y77kIzt2vzLz71DgmJGsen2scGs=",
            ),
            row(
                11,
                &format!(
                    "https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={EMPTY_JSON_HASH}"
                ),
                none(),
                "Ldidvp12m26NI7eqEvxnEpkd9Hc=",
            ),
            row(
                12,
                "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
                p(),
                "CukzLTc1tT5dXEDIHm/tKBanW10=",
            ),
            row(
                13,
                "https://user@mycompany.com/myapp.php?foo=1&bar=2",
                p(),
                "2YRLlVAflCqxaNicjMpJcSTgzSs=",
            ),
            row(
                14,
                "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
                p(),
                "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
            ),
            // The %27 spelling is the one that was signed (see row15 test).
            row(
                15,
                &format!("{U}&Body=It%27s+amazing"),
                p(),
                "TfZzewPq8wqrGlMfyAud8+/IvJ0=",
            ),
            row(
                16,
                &format!("{U}&type=thiswontbeusedinthesignaturegeneratorandsoshouldbeignored"),
                p(),
                "hYkNsTBttoNGkyCS0p+wWmQoRTg=",
            ),
            row(
                17,
                "https://mycompany.com/myapp.php?foo=hello%20world&bar=test%2Bvalue",
                p(),
                "er2tvAP1Wx+iuTTE2BPgvEaN1cs=",
            ),
            row(
                18,
                U,
                kv(&[
                    ("Message", "Hello & goodbye! @#$%^*()"),
                    ("From", "+1 (415) 867-5309"),
                    ("Special", "unicode: ñáéíóú"),
                ]),
                "dCPiR4WtQ6QFN6pJh81CtlCcWLQ=",
            ),
            row(
                19,
                U,
                kv(&[
                    ("Digits", ""),
                    ("CallSid", "CA1234567890ABCDE"),
                    ("EmptyParam", ""),
                ]),
                "9HHp/OqQMEwdrVebHDdA/+tqjX8=",
            ),
            // Java's null values become "": Rust has no null string, so the
            // row is expressed with empty values (a different key set from 19).
            row(
                20,
                U,
                kv(&[
                    ("Digits", ""),
                    ("CallSid", "CA1234567890ABCDE"),
                    ("NullParam", ""),
                ]),
                "L9lTTwIlxM1xGAtLRwhOSZggRhM=",
            ),
            row(
                21,
                U,
                kv(&[
                    ("Zebra", "last"),
                    ("Alpha", "first"),
                    ("Beta", "second"),
                    ("Gamma", "third"),
                ]),
                "enveUe73ZTVLAekHxez3Qx6JuuQ=",
            ),
            row(
                22,
                "https://mycompany.com/webhook/España?año=2023",
                p(),
                "G/Hx6mqqnjUNlPAoi2Sp9bGst0g=",
            ),
            row(
                23,
                U,
                kv(&[
                    ("callSid", "lowercase"),
                    ("CallSid", "uppercase"),
                    ("CALLSID", "allcaps"),
                ]),
                "jDK7WKT8wiNrwggd4ceTv4e1MJ4=",
            ),
            row(
                24,
                "https://mycompany.com:443//myapp.php?foo=1&bar=2",
                p(),
                "A9lH3u16NjyiiM/+wylw5rirFUs=",
            ),
        ]
    }

    #[test]
    fn every_vector_row_computes_and_validates() {
        let rows = rows();
        assert_eq!(rows.len(), 24);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.n as usize, i + 1, "rows out of order");
            assert_eq!(
                compute(TOKEN, &r.url, &r.params),
                r.expected,
                "vector row {} compute",
                r.n
            );
            assert_eq!(
                validate(TOKEN, &r.url, &r.params, Some(r.expected)),
                Ok(()),
                "vector row {} validate as signed",
                r.n
            );
        }
    }

    #[test]
    fn row1_validates_when_presented_with_default_or_other_port() {
        // py test_validation_removes_port_on_https (and :443 variant).
        for url in [
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        ] {
            assert_eq!(
                validate(TOKEN, url, &p(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
                Ok(()),
                "{url}"
            );
        }
    }

    #[test]
    fn row2_and_row3_validate_on_port_less_urls() {
        assert_eq!(
            validate(TOKEN, U, &p(), Some("kvajT1Ptam85bY51eRf/AJRuM3w=")),
            Ok(())
        );
        assert_eq!(
            validate(
                TOKEN,
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                &p(),
                Some("0ZXoZLH/DfblKGATFgpif+LLRf4=")
            ),
            Ok(())
        );
    }

    #[test]
    fn row4_non_default_port_is_not_swapped_for_the_default() {
        // A signature made for :1234 must not validate on the port-less URL
        // (the port-less URL's candidates are itself and :80 only).
        assert_eq!(
            validate(
                TOKEN,
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                &p(),
                Some("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn row7_and_row8_repeated_keys_in_any_order() {
        let reordered = kv(&[
            ("Digits", "1234"),
            ("Sid", "CA123"),
            ("Digits", "1234"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
        ]);
        assert_eq!(
            compute(TOKEN, U, &reordered),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
        let swapped = kv(&[
            ("MessagingBinding.Address", "+1415xxxxxxx"),
            ("MessagingBinding.Address", "+1325xxxxxxx"),
        ]);
        assert_eq!(compute(TOKEN, U, &swapped), "83O6e2vORAoJHUNzJjDWN1jz+BA=");
    }

    #[test]
    fn rows_9_to_11_body_hash_variant() {
        assert_eq!(body_sha256_hex(BODY), BODY_HASH);
        assert_eq!(body_sha256_hex(b"{}"), EMPTY_JSON_HASH);
        let row9 = format!("{U}&bodySHA256={BODY_HASH}");
        assert_eq!(
            validate_with_body(TOKEN, &row9, BODY, Some("a9nBmqA0ju/hNViExpshrM61xv4=")),
            Ok(())
        );
        let row10 = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");
        assert_eq!(
            validate_with_body(TOKEN, &row10, BODY, Some("y77kIzt2vzLz71DgmJGsen2scGs=")),
            Ok(())
        );
        // Row 11: signed with :443, the test passes the port-less URL.
        let row11 = format!("{U}&bodySHA256={EMPTY_JSON_HASH}");
        assert_eq!(
            validate_with_body(TOKEN, &row11, b"{}", Some("Ldidvp12m26NI7eqEvxnEpkd9Hc=")),
            Ok(())
        );
    }

    #[test]
    fn body_hash_negative_cases() {
        let row9 = format!("{U}&bodySHA256={BODY_HASH}");
        let sig = Some("a9nBmqA0ju/hNViExpshrM61xv4=");
        assert_eq!(
            validate_with_body(TOKEN, &row9, b"{\"tampered\": true}", sig),
            Err(SignatureError::BodyHashMismatch)
        );
        assert_eq!(
            validate_with_body(TOKEN, U, BODY, Some("zYQTYrRWXE7LtzbG4PfP7/bkkGo=")),
            Err(SignatureError::MissingBodyHash)
        );
        assert_eq!(
            validate_with_body(TOKEN, &row9, BODY, Some("WRONG_SIGNATURE")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate_with_body(TOKEN, &row9, BODY, None),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn rows_12_to_14_userinfo_stays_signed() {
        // Row 14's signature (with :443) validates on row 12's URL.
        assert_eq!(
            validate(
                TOKEN,
                "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
                &p(),
                Some("ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=")
            ),
            Ok(())
        );
        // Dropping the userinfo breaks it.
        assert_eq!(
            validate(TOKEN, U, &p(), Some("CukzLTc1tT5dXEDIHm/tKBanW10=")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn row15_url_is_signed_verbatim() {
        // Node also accepts the `It's` spelling by re-encoding through its
        // legacy querystring module. We sign the URL exactly as requested,
        // so only the spelling Twilio actually sent (%27) validates.
        let raw = format!("{U}&Body=It's+amazing");
        assert_eq!(
            validate(TOKEN, &raw, &p(), Some("TfZzewPq8wqrGlMfyAud8+/IvJ0=")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn row24_double_slash_validates_without_port() {
        assert_eq!(
            validate(
                TOKEN,
                "https://mycompany.com//myapp.php?foo=1&bar=2",
                &p(),
                Some("A9lH3u16NjyiiM/+wylw5rirFUs=")
            ),
            Ok(())
        );
    }

    #[test]
    fn negative_cases_from_protocol() {
        for bad in ["WRONG_SIGNATURE", "NOTRSOYDt4T1cUTdK1PDd93/VVr8B8="] {
            assert_eq!(
                validate(TOKEN, U, &p(), Some(bad)),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
        assert_eq!(
            validate(TOKEN, U, &p(), Some("")),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(
            validate(TOKEN, U, &p(), None),
            Err(SignatureError::MissingHeader)
        );
        // node webhooks.spec.js: signed for test=param, presented test=param2.
        let token = b"s3cr3t";
        let sig = compute(token, "https://example.com/path?test=param", &[]);
        assert_eq!(
            validate(
                token,
                "https://example.com/path?test=param",
                &[],
                Some(&sig)
            ),
            Ok(())
        );
        assert_eq!(
            validate(
                token,
                "https://example.com/path?test=param2",
                &[],
                Some(&sig)
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_token_params_or_case_fail() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(
            validate(b"54321", U, &p(), Some(good)),
            Err(SignatureError::Mismatch)
        );
        let mut extra = p();
        extra.push(("Extra".into(), "1".into()));
        assert_eq!(
            validate(TOKEN, U, &extra, Some(good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate(TOKEN, U, &p(), Some(&good.to_lowercase())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn url_candidates_cover_port_forms() {
        assert_eq!(
            url_candidates("https://h/p"),
            vec!["https://h/p", "https://h:443/p"]
        );
        assert_eq!(
            url_candidates("http://h:8080?q#f"),
            vec!["http://h:8080?q#f", "http://h?q#f"]
        );
        assert_eq!(
            url_candidates("https://u:p@[::1]:443/x"),
            vec!["https://u:p@[::1]:443/x", "https://u:p@[::1]/x"]
        );
        assert_eq!(
            url_candidates("https://h:/x"),
            vec!["https://h:/x", "https://h:443/x", "https://h/x"]
        );
        for odd in [
            "h/p",
            "ftp://h/p",
            "https://h:12a/p",
            "https:///p",
            "https://[::1",
        ] {
            assert_eq!(url_candidates(odd), vec![odd], "{odd}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_url_splits_without_panicking(
            scheme in proptest::sample::select(vec!["http", "https", "HTTPS", "ftp", ""]),
            rest in "[a-z@:\\[\\]/?#%ñ0-9]{0,24}",
        ) {
            let url = format!("{scheme}://{rest}");
            let candidates = url_candidates(&url);
            proptest::prop_assert_eq!(&candidates[0], &url);
            for candidate in &candidates {
                let sig = compute(TOKEN, candidate, &p());
                proptest::prop_assert_eq!(validate(TOKEN, &url, &p(), Some(&sig)), Ok(()));
            }
        }
    }

    #[test]
    fn a_prepared_key_checks_borrowed_params_and_can_be_reused() {
        let key = SigningKey::new(TOKEN);
        assert_eq!(
            format!("{key:?}"),
            "SigningKey(..)",
            "the token is never printed"
        );
        let body = b"To=%2B18005551212&From=%2B14158675309&CallSid=CA1234567890ABCDE&Digits=1234&Caller=%2B14158675309";
        let borrowed = crate::params::parse(body, usize::MAX).expect("form");
        assert_eq!(
            key.compute(U, &borrowed),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            "row 1"
        );
        for _ in 0..2 {
            assert_eq!(
                key.validate(U, &borrowed, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
                Ok(())
            );
            assert_eq!(
                key.validate(U, &borrowed, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8x")),
                Err(SignatureError::Mismatch)
            );
        }
        assert_eq!(
            SigningKey::new(b"other").validate(U, &borrowed, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Err(SignatureError::Mismatch),
            "another token's key refuses it"
        );
    }

    #[test]
    fn error_display() {
        assert_eq!(
            SignatureError::Mismatch.to_string(),
            "X-Twilio-Signature does not match the request"
        );
    }
}
