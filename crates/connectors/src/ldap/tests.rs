use super::refusal::{self, unicode_pwd};
use super::*;

#[test]
fn unicode_pwd_is_the_quoted_password_in_utf16le() {
    assert_eq!(
        unicode_pwd(&Secret::new("ab1")),
        vec![0x22, 0, b'a', 0, b'b', 0, b'1', 0, 0x22, 0]
    );
    // Non-ASCII: é is U+00E9; U+1F600 is a surrogate pair (D83D DE00), little-endian.
    assert_eq!(
        unicode_pwd(&Secret::new("é\u{1F600}")),
        vec![0x22, 0, 0xE9, 0, 0x3D, 0xD8, 0x00, 0xDE, 0x22, 0]
    );
    assert_eq!(unicode_pwd(&Secret::new("")), vec![0x22, 0, 0x22, 0]);
}

#[test]
fn ppolicy_response_control_error_is_read() {
    // What slapd 2.5 sends (base64 `MAOBAQY=` / `MAOBAQg=`).
    assert_eq!(
        refusal::ppolicy_error(&[0x30, 0x03, 0x81, 0x01, 0x06]),
        Some(6)
    );
    assert_eq!(
        refusal::ppolicy_error(&[0x30, 0x03, 0x81, 0x01, 0x08]),
        Some(8)
    );
    // A warning (graceAuthNsRemaining 5) before the error.
    assert_eq!(
        refusal::ppolicy_error(&[0x30, 0x08, 0xA0, 0x03, 0x81, 0x01, 0x05, 0x81, 0x01, 0x07]),
        Some(7)
    );
    // Warning only, empty, truncated, not a sequence.
    assert_eq!(
        refusal::ppolicy_error(&[0x30, 0x05, 0xA0, 0x03, 0x80, 0x01, 0x05]),
        None
    );
    assert_eq!(refusal::ppolicy_error(&[0x30, 0x00]), None);
    assert_eq!(refusal::ppolicy_error(&[0x30, 0x03, 0x81, 0x01]), None);
    assert_eq!(
        refusal::ppolicy_error(&[0x04, 0x03, 0x81, 0x01, 0x06]),
        None
    );
    assert_eq!(refusal::ppolicy_error(&[]), None);
}

fn prompt(e: &SetSecretError) -> &str {
    match e {
        SetSecretError::Rejected { prompt, .. } => prompt,
        SetSecretError::Locked => "<locked>",
        SetSecretError::Backend(_) => "<backend>",
    }
}

#[test]
fn openldap_refusals_map_to_spoken_reasons_and_keep_the_server_text() {
    let cases = [
        (
            19,
            "Password fails quality checking policy",
            Some(6),
            "policy_too_short",
        ),
        (
            19,
            "Password is in history of old passwords",
            Some(8),
            "policy_reused",
        ),
        (
            19,
            "Password is too young to change",
            Some(7),
            "policy_too_recent",
        ),
        (
            19,
            "Password fails quality checking policy",
            Some(5),
            "policy_rejected",
        ),
        // No control: the diagnostic text decides.
        (
            19,
            "Password is too short for policy",
            None,
            "policy_too_short",
        ),
        (
            19,
            "Password is not being changed from existing value",
            None,
            "policy_reused",
        ),
        (
            19,
            "Password is too young to change",
            None,
            "policy_too_recent",
        ),
        (19, "something else", None, "policy_rejected"),
        (19, "", Some(1), "<locked>"),
        (53, "Must supply old password", Some(4), "<backend>"),
        (50, "no write access", None, "<backend>"),
        (80, "other", None, "<backend>"),
    ];
    for (rc, text, pp, want) in cases {
        let e = refusal::openldap(rc, text, pp);
        assert_eq!(prompt(&e), want, "{rc} {text} {pp:?}");
        assert!(
            refusal::PROMPTS.contains(&prompt(&e)) || want.starts_with('<'),
            "{want}"
        );
        if let SetSecretError::Rejected { reason, .. } = &e {
            assert!(
                reason.contains(text) && reason.contains(&rc.to_string()),
                "{reason}"
            );
        }
    }
}

#[test]
fn active_directory_refusals_are_spoken_by_their_code_and_rule_not_their_result_code() {
    let cases = [
        // Samba names the rule.
        (
            19,
            "0000052D: Constraint violation - check_password_restrictions: the password is too short. It should be equal or longer than 8 characters!",
            "policy_too_short",
        ),
        (
            19,
            "0000052D: Constraint violation - check_password_restrictions: the password does not meet the complexity criteria!",
            "policy_complexity",
        ),
        (
            19,
            "0000052D: Constraint violation - check_password_restrictions: the password was already used (in history)!",
            "policy_reused",
        ),
        (
            19,
            "0000052D: Constraint violation - check_password_restrictions: password is too young to change!",
            "policy_too_recent",
        ),
        // Windows Server 2008 and later: unwillingToPerform, and no rule named.
        (
            53,
            "0000052D: SvcErr: DSID-031A1248, problem 5003 (WILL_NOT_PERFORM), data 0",
            "policy_rejected",
        ),
        // Older Windows: constraintViolation on the attribute.
        (
            19,
            "0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)",
            "policy_rejected",
        ),
        (
            53,
            "0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0",
            "<backend>",
        ),
        (
            50,
            "00000005: SecErr: DSID-031A1256, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0",
            "<backend>",
        ),
        (
            32,
            "0000208D: NameErr: DSID-03100288, problem 2001 (NO_OBJECT)",
            "<backend>",
        ),
    ];
    for (rc, text, want) in cases {
        let e = refusal::active_directory(rc, text);
        assert_eq!(prompt(&e), want, "{rc} {text}");
        match &e {
            SetSecretError::Rejected { reason, .. } => {
                assert!(refusal::PROMPTS.contains(&want), "{want}");
                assert!(reason.contains(text) && reason.contains(&rc.to_string()));
            }
            SetSecretError::Backend(b) => assert!(b.message.contains(text), "{}", b.message),
            SetSecretError::Locked => panic!("{rc} {text}"),
        }
    }
    let message = |rc, text| match refusal::active_directory(rc, text) {
        SetSecretError::Backend(b) => b.message,
        other => panic!("{other:?}"),
    };
    assert!(
        message(
            53,
            "0000001F: SvcErr: DSID-031A12D2, problem 5003 (WILL_NOT_PERFORM), data 0"
        )
        .contains("encrypted")
    );
    assert!(
        message(
            50,
            "00000005: SecErr: DSID-031A1256, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0"
        )
        .contains("Reset Password right")
    );
}

#[test]
fn ad_bind_refusals_tell_a_wrong_password_from_an_account_that_cannot_log_in() {
    let text = |data: &str| {
        format!(
            "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1"
        )
    };
    assert_eq!(refusal::ad_bind(&text("52e")), Ok(false));
    assert_eq!(refusal::ad_bind(&text("525")), Ok(false), "no such user");
    assert_eq!(refusal::ad_bind(""), Ok(false));
    assert_eq!(
        refusal::ad_bind(&text("773")),
        Ok(true),
        "must change: right password"
    );
    assert_eq!(
        refusal::ad_bind(&text("532")),
        Ok(true),
        "expired: right password"
    );
    for (data, says) in [
        ("775", "locked"),
        ("533", "disabled"),
        ("701", "expired"),
        ("530", "logon restrictions"),
        ("531", "logon restrictions"),
    ] {
        let e = refusal::ad_bind(&text(data)).expect_err(data);
        assert!(e.message.contains(says), "{data}: {}", e.message);
    }
}

#[test]
fn ad_resets_ask_for_the_history_check_without_requiring_it() {
    let c = refusal::policy_hints();
    assert_eq!(c.ctype, "1.2.840.113556.1.4.2239");
    assert!(!c.crit, "a DC that does not know it must ignore it");
    assert_eq!(c.val.as_deref(), Some(&[0x30, 0x03, 0x02, 0x01, 0x01][..]));
}

#[test]
fn ad_password_flags_are_read_from_user_account_control_and_pwd_last_set() {
    let entry = |uac: &str, last_set: &str| SearchEntry {
        dn: "CN=x".into(),
        attrs: [
            ("userAccountControl".to_string(), vec![uac.to_string()]),
            ("pwdLastSet".to_string(), vec![last_set.to_string()]),
        ]
        .into_iter()
        .collect(),
        bin_attrs: Default::default(),
    };
    let flags = |uac, last_set| {
        let f = AdPassword::of(&entry(uac, last_set));
        (f.never_expires, f.must_change)
    };
    assert_eq!(flags("512", "134411605320073200"), (false, false));
    assert_eq!(flags("66048", "134411605320073200"), (true, false));
    assert_eq!(flags("512", "0"), (false, true));
    // A negative userAccountControl (bit 31 set) still reads its low bits.
    assert_eq!(flags("-2147417600", "0"), (true, true));
}

#[test]
fn must_change_at_next_logon_is_for_active_directory_only() {
    let mut c = good();
    c.must_change_at_next_logon = true;
    let text = c.problems().join("\n");
    assert!(
        text.contains("`directory.must_change_at_next_logon`") && text.contains("active_directory"),
        "{text}"
    );
    c.flavor = Flavor::ActiveDirectory;
    assert!(c.problems().is_empty(), "{:?}", c.problems());
}

#[test]
fn caller_input_stays_one_literal_value_in_the_filter() {
    let attrs = vec!["uid".to_string(), "mobile".to_string()];
    let f = filter("(objectClass=inetOrgPerson)", &attrs, "*)(uid=*");
    assert_eq!(
        f,
        r"(&(objectClass=inetOrgPerson)(|(uid=\2a\29\28uid=\2a)(mobile=\2a\29\28uid=\2a)))"
    );
    assert!(ldap3::parse_filter(&f).is_ok());
    let f = filter("(objectClass=person)", &attrs[..1], "a\\b\0c");
    assert_eq!(f, r"(&(objectClass=person)(|(uid=a\5cb\00c)))");
}

fn good() -> LdapConfig {
    let mut c = LdapConfig::new(
        "ldaps://ldap.example.com",
        "cn=resetline,ou=services,dc=example,dc=com",
        Secret::new("pw"),
        "dc=example,dc=com",
        Flavor::OpenLdap,
    );
    c.attributes.pin_hash = Some("resetlinePinHash".into());
    c
}

#[test]
fn pins_by_bind_need_an_explicit_mode_and_a_threshold() {
    let mut c = good();
    c.attributes.pin_hash = None;
    let text = c.problems().join("\n");
    assert!(
        text.contains("`directory.attributes.pin_hash`")
            && text.contains("pin_check: none")
            && text.contains("bind_counts_toward_directory_lockout"),
        "{text}"
    );
    c.pin_check = PinCheck::Off;
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    c.pin_check = PinCheck::BindCountsTowardDirectoryLockout(BindGuard::default());
    let text = c.problems().join("\n");
    assert!(
        text.contains("`directory.pin_bind`") && text.contains("max_failures"),
        "{text}"
    );
    c.pin_check = PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
        policy_dn: Some("default".into()),
        max_failures: Some(0),
    });
    let text = c.problems().join("\n");
    assert!(
        text.contains("`directory.pin_bind.policy_dn`")
            && text.contains("`directory.pin_bind.max_failures`"),
        "{text}"
    );
    c.pin_check = PinCheck::BindCountsTowardDirectoryLockout(BindGuard {
        policy_dn: None,
        max_failures: Some(5),
    });
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    c.attributes.pin_hash = Some("resetlinePinHash".into());
    assert!(
        c.problems()[0]
            .contains("is not read with `pin_check: bind_counts_toward_directory_lockout`"),
        "{:?}",
        c.problems()
    );
}

#[test]
fn a_good_config_has_no_problems_and_defaults_follow_the_flavor() {
    assert!(good().problems().is_empty(), "{:?}", good().problems());
    let mut ad = LdapConfig::new(
        "ldap://dc1.corp.example.com",
        "CN=svc,DC=corp",
        Secret::new("pw"),
        "DC=corp",
        Flavor::ActiveDirectory,
    );
    ad.pin_check = PinCheck::Off;
    assert_eq!(ad.attributes.id, "sAMAccountName");
    assert_eq!(ad.lookup.employee_id, vec!["employeeID".to_string()]);
    let problems = ad.problems();
    assert!(
        problems.iter().any(|p| p.contains("unencrypted")),
        "{problems:?}"
    );
    let mut ad = ad;
    ad.starttls = true;
    assert!(ad.problems().is_empty(), "{:?}", ad.problems());
    let mut local = good();
    local.url = "ldap://127.0.0.1:3890".into();
    assert!(local.problems().is_empty(), "{:?}", local.problems());
}

#[test]
fn every_config_problem_is_reported_at_once() {
    let mut c = good();
    c.url = "http://x".into();
    c.bind_dn = "resetline".into();
    c.ca_file = Some("/nonexistent/ca.pem".into());
    c.timeout = Duration::from_millis(5);
    c.user_filter = "(objectClass=".into();
    c.attributes.mobile = "mobile)(uid=*".into();
    c.lookup.phone.clear();
    let text = c.problems().join("\n");
    for want in [
        "`directory.url`",
        "`directory.bind_dn`",
        "`directory.ca_file`",
        "`directory.timeout_ms`",
        "`directory.user_filter`",
        "`directory.attributes.mobile`",
        "`directory.lookup.phone`",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let mut c = good();
    c.starttls = true;
    assert!(c.problems()[0].contains("`directory.starttls`"));
    assert!(matches!(
        LdapDirectory::new(c),
        Err(LdapConfigError::Invalid(_))
    ));
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").expect("write");
    let mut c = good();
    c.ca_file = Some(ca);
    let e = LdapDirectory::new(c).expect_err("no certificate");
    assert!(e.to_string().contains("no certificate"), "{e}");
}

#[test]
fn debug_shows_no_password() {
    let mut c = good();
    c.bind_password = Secret::new("hunter2-marker");
    let d = LdapDirectory::new(c).expect("directory");
    let text = format!("{d:?}");
    assert!(!text.contains("hunter2-marker"), "{text}");
    assert!(text.contains("ldap.example.com"));
}

fn entry(attrs: &[(&str, &str)]) -> SearchEntry {
    SearchEntry {
        dn: "CN=Alex Rivera,OU=Staff,DC=corp".into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
            .collect(),
        bin_attrs: Default::default(),
    }
}

#[test]
fn active_directory_state_and_attributes() {
    let mut c = good();
    c.flavor = Flavor::ActiveDirectory;
    c.attributes = Attributes::defaults(Flavor::ActiveDirectory);
    c.pin_check = PinCheck::Off;
    let d = LdapDirectory::new(c).expect("directory");
    // Servers return attribute names in their own case.
    let base = [
        ("samaccountname", "arivera"),
        ("displayName", "Alex Rivera"),
        ("MOBILE", "+15555550199"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        entry(&v)
    };
    let a = d
        .account(&with(&[("userAccountControl", "512")]))
        .expect("account");
    assert_eq!(
        (a.id.as_str(), a.name.as_str(), a.mobile.as_deref(), a.state),
        (
            "arivera",
            "Alex Rivera",
            Some("+15555550199"),
            AccountState::Active
        )
    );
    let state = |extra: &[(&'static str, &'static str)]| d.state(&with(extra));
    assert_eq!(
        state(&[("userAccountControl", "514")]),
        AccountState::Disabled
    );
    assert_eq!(
        state(&[
            ("userAccountControl", "66050"),
            ("lockoutTime", "133000000000000000")
        ]),
        AccountState::Disabled,
        "disabled wins over locked"
    );
    assert_eq!(
        state(&[
            ("userAccountControl", "512"),
            ("lockoutTime", "133000000000000000")
        ]),
        AccountState::Locked
    );
    assert_eq!(
        state(&[("userAccountControl", "512"), ("lockoutTime", "0")]),
        AccountState::Active
    );
    // userAccountControl arrives as a signed 32-bit integer.
    assert_eq!(
        state(&[("userAccountControl", "-2147483646")]),
        AccountState::Disabled
    );
    assert!(d.account(&entry(&[("displayName", "No Id")])).is_err());
}

#[test]
fn openldap_state() {
    let d = LdapDirectory::new(good()).expect("directory");
    let state = |v: &str| d.state(&entry(&[("uid", "1"), ("pwdAccountLockedTime", v)]));
    assert_eq!(state("000001010000Z"), AccountState::Disabled);
    assert_eq!(state("20260101000000Z"), AccountState::Locked);
    assert_eq!(d.state(&entry(&[("uid", "1")])), AccountState::Active);
}
