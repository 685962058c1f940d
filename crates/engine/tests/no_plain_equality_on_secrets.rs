//! security.md check 10: codes, PINs, PIN hashes, MACs and webhook signatures are compared
//! only in constant time. Two guards: the types that hold them have no `PartialEq` (so `==`
//! on a `Secret` does not compile), and a search of every crate's non-test source refuses
//! `==` / `!=` on a value whose name says it is a signature, MAC, hash, digest, PIN or code.

use std::path::{Path, PathBuf};

/// Types that hold a secret, a key or a MAC: none may implement or derive `PartialEq`.
const NO_PARTIAL_EQ: &[&str] = &["Secret", "SigningKey", "AuditKey"];

/// Names (whole identifiers, or the end of one after `_`) of values that must never meet
/// `==` or `!=`: compare them with `subtle::ConstantTimeEq`, `Mac::verify_slice`,
/// `Secret::ct_eq` or `otp::matches`.
const SECRET_NAMES: &[&str] = &[
    "signature",
    "signatures",
    "sig",
    "claimed",
    "mac",
    "tag",
    "hmac",
    "digest",
    "hash",
    "hashed",
    "pin",
    "otp",
    "secret",
    "password",
    "code_hash",
];

use resetline_testkit::root;

/// Every `.rs` file under `crates/*/src`, without test modules' own files.
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .map(|e| e.expect("entry").path().join("src"))
        .collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The file's lines up to its `#[cfg(test)]` module, without `//` comments and string
/// literals (so a message that mentions `==` is not code).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let mut code = String::new();
        let mut in_str = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_str => {
                    chars.next();
                }
                '"' => in_str = !in_str,
                '/' if !in_str && chars.peek() == Some(&'/') => break,
                _ if in_str => {}
                _ => code.push(c),
            }
        }
        out.push((i + 1, code));
    }
    out
}

/// The operand next to position `at` in `chars`, going left (`step = -1`) or right: names,
/// paths, field and method access, references, and balanced brackets.
fn operand(chars: &[char], at: usize, left: bool) -> String {
    let ident = |c: char| c.is_alphanumeric() || "_.:&*".contains(c);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut i = at as isize;
    let step: isize = if left { -1 } else { 1 };
    // Skip the spaces beside the operator.
    while (0..chars.len() as isize).contains(&i) && chars[i as usize] == ' ' {
        i += step;
    }
    while (0..chars.len() as isize).contains(&i) {
        let c = chars[i as usize];
        let (open, close) = if left { (')', '(') } else { ('(', ')') };
        let (open_sq, close_sq) = if left { (']', '[') } else { ('[', ']') };
        if c == open || c == open_sq {
            depth += 1;
        } else if c == close || c == close_sq {
            if depth == 0 {
                break;
            }
            depth -= 1;
        } else if depth == 0 && !ident(c) {
            break;
        }
        out.push(c);
        i += step;
    }
    if left {
        out.reverse();
    }
    out.into_iter().collect()
}

/// The secret-like name a value operand carries, if any. Path segments (`SecretKind::Pin`,
/// `VarTy::Secret`: types and variants, not values) are not names of values.
fn names_a_secret(operand: &str) -> Option<String> {
    let mut names = Vec::new();
    let mut rest = operand;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_alphanumeric() || c == '_')
            .unwrap_or(rest.len());
        let len = rest[start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start);
        let in_path = rest[..start].ends_with("::") || rest[start + len..].starts_with("::");
        if len > 0 && !in_path {
            names.push(rest[start..start + len].to_ascii_lowercase());
        }
        rest = &rest[start + len..];
    }
    names.into_iter().find(|id| {
        SECRET_NAMES
            .iter()
            .any(|n| id == n || id.ends_with(&format!("_{n}")))
    })
}

/// A number written in the source (`0x30`, `3`): a secret is never compared with one.
fn is_literal(operand: &str) -> bool {
    operand
        .trim()
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
}

/// `file:line: code` for every `==` / `!=` on a secret-named value.
fn plain_comparisons(path: &Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (line, code) in code_lines(text) {
        let chars: Vec<char> = code.chars().collect();
        for i in 1..chars.len() {
            let op = (chars[i - 1], chars[i]);
            let before = if i >= 2 { chars[i - 2] } else { ' ' };
            let after = chars.get(i + 1).copied().unwrap_or(' ');
            if !(op == ('=', '=') || op == ('!', '=')) || "=<>!".contains(before) || after == '=' {
                continue;
            }
            let left = operand(&chars, i - 2, true);
            let right = operand(&chars, i + 1, false);
            if is_literal(&left) || is_literal(&right) {
                continue;
            }
            if let Some(name) = names_a_secret(&left).or_else(|| names_a_secret(&right)) {
                found.push(format!(
                    "{}:{line}: `{}` compares `{name}` with `{}{}`",
                    path.strip_prefix(root()).unwrap_or(path).display(),
                    code.trim(),
                    op.0,
                    op.1
                ));
            }
        }
    }
    found
}

/// `file:line` for every `PartialEq` implemented or derived for one of `NO_PARTIAL_EQ`.
fn partial_eq_on_secret_types(path: &Path, text: &str) -> Vec<String> {
    let lines = code_lines(text);
    let mut found = Vec::new();
    for (k, (line, code)) in lines.iter().enumerate() {
        for ty in NO_PARTIAL_EQ {
            let implemented = code.contains("impl PartialEq")
                && (code.contains(&format!("for {ty} ")) || code.contains(&format!("for {ty}<")));
            let declared = [
                format!("struct {ty}("),
                format!("struct {ty} "),
                format!("struct {ty}<"),
                format!("enum {ty} "),
            ]
            .iter()
            .any(|d| code.contains(d.as_str()));
            // Derives sit on the lines above the declaration (doc comments are stripped).
            let derived = declared
                && lines[k.saturating_sub(4)..k]
                    .iter()
                    .any(|(_, l)| l.contains("derive(") && l.contains("PartialEq"));
            if implemented || derived {
                found.push(format!(
                    "{}:{line}: `{ty}` has `PartialEq`",
                    path.strip_prefix(root()).unwrap_or(path).display()
                ));
            }
        }
    }
    found
}

#[test]
fn codes_pin_hashes_and_signatures_are_never_compared_with_equals() {
    let mut found = Vec::new();
    let files = sources();
    assert!(
        files.len() > 50,
        "the search found only {} files",
        files.len()
    );
    for path in &files {
        let text = std::fs::read_to_string(path).expect("source");
        found.extend(plain_comparisons(path, &text));
        found.extend(partial_eq_on_secret_types(path, &text));
    }
    assert!(
        found.is_empty(),
        "compare these in constant time (subtle::ConstantTimeEq, Mac::verify_slice, Secret::ct_eq):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_search_sees_the_comparisons_it_forbids() {
    let p = Path::new("x.rs");
    for bad in [
        "if signature == expected_sig {",
        "    let ok = computed.as_bytes() != claimed.as_bytes();",
        "return stored_hash == hash(pin);",
        "if u.pin == *pin {",
        "matches(a, b) && tag == header",
    ] {
        assert_eq!(plain_comparisons(p, bad).len(), 1, "{bad}");
    }
    for fine in [
        "if a.len() == b.len() && bool::from(a.ct_eq(b)) {",
        "if code >= 500 || n != 3 {",
        "let msg = \"signature == expected\";",
        "x == y // signature == expected",
        "if signature_count <= 2 {",
        "if policy.kind == SecretKind::Pin {",
        "if tag != 0x30 {",
    ] {
        assert_eq!(plain_comparisons(p, fine), Vec::<String>::new(), "{fine}");
    }
    assert_eq!(
        partial_eq_on_secret_types(
            p,
            "#[derive(Clone, PartialEq)]\npub struct Secret(Zeroizing<String>);"
        )
        .len(),
        1
    );
    assert_eq!(
        partial_eq_on_secret_types(p, "impl PartialEq for Secret {").len(),
        1
    );
    assert!(
        partial_eq_on_secret_types(p, "#[derive(Clone)]\npub struct Secret(String);").is_empty()
    );
}
