//! `LdapDirectory` in its Active Directory flavour against a real domain controller: Samba's AD
//! DC, started by `resetline_connectors::testing::samba::SambaDc` (a throw-away domain with
//! seeded users, a service account with only the Reset Password right on the users' OU, a
//! lockout threshold), reached over LDAPS with the domain's private CA.

use resetline_connectors::LdapDirectory;
use resetline_connectors::ldap::refusal;
use resetline_connectors::testing::samba::{self, SambaDc};
use resetline_engine::{AccountState, Directory, Secret, SetSecretError};
use resetline_flow::model::LookupBy;

fn dc() -> SambaDc {
    SambaDc::start().unwrap_or_else(|e| panic!("cannot start the Samba DC: {e}"))
}

fn directory(dc: &SambaDc) -> LdapDirectory {
    LdapDirectory::new(dc.config()).expect("config")
}

/// The one value of `attr` on user `sam`, read as the domain administrator.
async fn attr(dc: &SambaDc, sam: &str, attr: &str) -> String {
    dc.read(&samba::user_dn(sam), attr)
        .await
        .expect("read")
        .pop()
        .unwrap_or_default()
}

/// The result code of the person's own login, and its diagnostic text.
async fn login(dc: &SambaDc, sam: &str, password: &str) -> (u32, String) {
    dc.user_bind(sam, password).await.expect("bind")
}

fn rejected(r: Result<(), SetSecretError>) -> (String, String) {
    match r {
        Err(SetSecretError::Rejected { prompt, reason }) => (prompt, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn finds_ad_users_by_account_name_upn_employee_id_and_mobile() {
    let dc = dc();
    let d = directory(&dc);
    let alex = d
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect("find")
        .expect("Alex");
    assert_eq!(alex.id, "arivera", "the account id is the sAMAccountName");
    assert_eq!(alex.name, "Alex Rivera");
    assert_eq!(alex.mobile.as_deref(), Some("+15555550199"));
    assert_eq!(alex.email.as_deref(), Some("alex.rivera@example.com"));
    assert_eq!(alex.state, AccountState::Active);
    for (by, value) in [
        (LookupBy::Username, "arivera"),
        (LookupBy::Username, "alex.rivera@resetline.test"),
        (LookupBy::Phone, "+15555550199"),
        (LookupBy::Email, "Alex.Rivera@example.com"),
        (LookupBy::EmployeeId, " 100001 "),
    ] {
        let found = d.find(by, value).await.expect("find");
        assert_eq!(
            found.map(|a| a.id).as_deref(),
            Some("arivera"),
            "{by:?} {value}"
        );
    }
    for (by, value) in [
        (LookupBy::EmployeeId, "999999"),
        // Two entries share this mobile: a claim never picks one of them.
        (LookupBy::Phone, "+15555550111"),
        (LookupBy::EmployeeId, "*"),
        (LookupBy::Username, "arivera)(sAMAccountName=*"),
        // Outside the configured base (OU=People).
        (LookupBy::EmployeeId, "100010"),
    ] {
        assert_eq!(
            d.find(by, value).await.expect("find"),
            None,
            "{by:?} {value}"
        );
    }
}

#[tokio::test]
async fn ad_account_states_come_from_user_account_control_and_lockout_time() {
    let dc = dc();
    let d = directory(&dc);
    let state = |id: &'static str| {
        let d = &d;
        async move {
            d.find(LookupBy::EmployeeId, id)
                .await
                .expect("find")
                .map(|a| a.state)
        }
    };
    assert_eq!(
        state("100002").await,
        Some(AccountState::Locked),
        "lockoutTime"
    );
    assert_eq!(state("100003").await, Some(AccountState::Disabled), "0x2");
    // Neither flag stops a reset: "never expires" changes nothing about it, and "must change
    // at next logon" means the current password is a temporary one.
    assert_eq!(state("100008").await, Some(AccountState::Active), "0x10000");
    assert_eq!(
        state("100009").await,
        Some(AccountState::Active),
        "pwdLastSet 0"
    );

    let locked = attr(&dc, "bchen", "lockoutTime").await;
    assert_eq!(
        d.set_secret("bchen", &Secret::new("58204617")).await,
        Err(SetSecretError::Locked)
    );
    let (prompt, _) = rejected(d.set_secret("cdiaz", &Secret::new("58204617")).await);
    assert_eq!(prompt, "not_allowed");
    // Nothing was written: the lock and the disabled flag are as they were.
    assert_eq!(attr(&dc, "bchen", "lockoutTime").await, locked);
    assert_ne!(locked, "0");
    assert_eq!(attr(&dc, "cdiaz", "userAccountControl").await, "514");
    assert_eq!(login(&dc, "bchen", "58204617").await.0, 49);
}

#[tokio::test]
async fn a_reset_writes_unicode_pwd_over_ldaps_and_the_user_binds_with_it() {
    let dc = dc();
    let d = directory(&dc);
    d.set_secret("arivera", &Secret::new("58204617"))
        .await
        .expect("reset");
    assert_eq!(login(&dc, "arivera", "58204617").await.0, 0, "new password");
    let (rc, text) = login(&dc, "arivera", "31415926").await;
    assert!(
        rc == 49 && text.contains("data 52e"),
        "old password: {rc} {text}"
    );
    assert_ne!(attr(&dc, "arivera", "pwdLastSet").await, "0");

    // A pending "must change at next logon" is cleared by a reset the caller chose.
    assert_eq!(attr(&dc, "ijones", "pwdLastSet").await, "0");
    assert!(
        login(&dc, "ijones", "93238462")
            .await
            .1
            .contains("data 773")
    );
    d.set_secret("ijones", &Secret::new("70315826"))
        .await
        .expect("reset");
    assert_eq!(login(&dc, "ijones", "70315826").await.0, 0);

    // PIN checks by bind follow the new secret.
    let by_bind = LdapDirectory::new(dc.bind_mode_config()).expect("config");
    assert!(
        by_bind
            .verify_pin("arivera", &Secret::new("58204617"))
            .await
            .expect("verify")
    );
}

#[tokio::test]
async fn must_change_at_next_logon_is_set_when_the_config_asks() {
    let dc = dc();
    let mut cfg = dc.config();
    cfg.must_change_at_next_logon = true;
    let d = LdapDirectory::new(cfg).expect("config");
    d.set_secret("arivera", &Secret::new("58204617"))
        .await
        .expect("reset");
    assert_eq!(attr(&dc, "arivera", "pwdLastSet").await, "0");
    let (rc, text) = login(&dc, "arivera", "58204617").await;
    assert!(
        rc == 49 && text.contains("data 773"),
        "the new password works only to change it: {rc} {text}"
    );

    // Hana's password never expires, and AD ignores "must change" for such accounts: the reset
    // goes through without it (and says so in the log) instead of pretending.
    d.set_secret("hito", &Secret::new("58204617"))
        .await
        .expect("reset");
    assert_ne!(attr(&dc, "hito", "pwdLastSet").await, "0");
    assert_eq!(login(&dc, "hito", "58204617").await.0, 0);
}

#[tokio::test]
async fn ad_refusals_are_spoken_as_their_reason() {
    let dc = dc();
    let d = directory(&dc);
    let (prompt, reason) = rejected(d.set_secret("arivera", &Secret::new("1234567")).await);
    assert_eq!(prompt, "policy_too_short");
    assert!(reason.contains("0000052D"), "{reason}");
    assert!(
        !reason.contains("1234567"),
        "the secret is not in the reason"
    );

    // Dana's PSO asks for complexity: digits only never meet it; a generated password does.
    let (prompt, reason) = rejected(d.set_secret("devans", &Secret::new("58204617")).await);
    assert_eq!(prompt, "policy_complexity", "{reason}");
    d.set_secret("devans", &Secret::new("Kq7mWx3PzR9tBn4V"))
        .await
        .expect("a generated-style password meets the complexity rules");
    assert_eq!(login(&dc, "devans", "Kq7mWx3PzR9tBn4V").await.0, 0);

    // History and minimum age apply to the person's own change, not to a reset (AD exempts
    // resets; Windows checks history on one only with the policy-hints control Resetline
    // sends, which Samba ignores). The DC's own words for them still map to their prompts.
    let (rc, text) = dc
        .change_own_password("devans", "Kq7mWx3PzR9tBn4V", "Zt8pLm2QwX6rHc5N")
        .await
        .expect("change");
    assert_eq!(rc, 19, "{text}");
    assert_eq!(prompt_of(rc, &text), "policy_too_recent", "{text}");
    d.set_secret("arivera", &Secret::new("58204617"))
        .await
        .expect("reset");
    let (rc, text) = dc
        .change_own_password("arivera", "58204617", "31415926")
        .await
        .expect("change");
    assert_eq!(rc, 19, "{text}");
    assert_eq!(prompt_of(rc, &text), "policy_reused", "{text}");
    d.set_secret("arivera", &Secret::new("31415926"))
        .await
        .expect("a reset to an old password: AD does not check history on resets");
}

fn prompt_of(rc: u32, text: &str) -> String {
    match refusal::active_directory(rc, text) {
        SetSecretError::Rejected { prompt, .. } => prompt,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_service_account_may_reset_only_inside_its_ou() {
    let dc = dc();
    let mut cfg = dc.config();
    cfg.base_dn = samba::BASE_DN.into();
    let d = LdapDirectory::new(cfg).expect("config");
    match d
        .set_secret(samba::OUTSIDER, &Secret::new("58204617"))
        .await
    {
        Err(SetSecretError::Backend(e)) => {
            assert!(e.message.contains("Reset Password right"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        login(&dc, samba::OUTSIDER, "57721566").await.0,
        0,
        "unchanged"
    );
}

#[tokio::test]
async fn ldaps_needs_the_private_ca_starttls_works_and_plain_binds_are_refused() {
    let dc = dc();
    let mut untrusted = dc.config();
    untrusted.ca_file = None;
    let d = LdapDirectory::new(untrusted).expect("config");
    assert!(d.find(LookupBy::EmployeeId, "100001").await.is_err());

    let mut starttls = dc.config();
    starttls.url = dc.ldap_url();
    starttls.starttls = true;
    let d = LdapDirectory::new(starttls).expect("config");
    assert!(
        d.find(LookupBy::EmployeeId, "100001")
            .await
            .expect("starttls")
            .is_some()
    );
    d.set_secret("arivera", &Secret::new("58204617"))
        .await
        .expect("reset over StartTLS");

    // Plain ldap:// (allowed by the config only on loopback): the DC refuses the simple bind.
    let mut plain = dc.config();
    plain.url = dc.ldap_url();
    let e = LdapDirectory::new(plain)
        .expect("config")
        .find(LookupBy::EmployeeId, "100001")
        .await
        .expect_err("no simple bind without TLS");
    assert!(
        e.message.contains("could not bind") && e.message.contains("LDAP result 8"),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_pins_on_the_phone_never_touch_the_ad_login() {
    let dc = dc();
    let d = directory(&dc);
    // More wrong PINs than the domain's lockoutThreshold (5).
    for pin in [
        "11111111", "22222222", "33333333", "44444444", "55555555", "66666666",
    ] {
        assert!(
            !d.verify_pin("arivera", &Secret::new(pin))
                .await
                .expect("verify")
        );
    }
    assert_eq!(attr(&dc, "arivera", "badPwdCount").await, "0");
    assert_eq!(
        login(&dc, "arivera", "31415926").await.0,
        0,
        "still logs in"
    );
    // The demo PIN, against the hash in the confidential attribute.
    assert!(
        d.verify_pin("arivera", &Secret::new("48213579"))
            .await
            .expect("verify")
    );
    let weak = d
        .verify_pin("eshared", &Secret::new("11235813"))
        .await
        .expect_err("a hash below the floor is not used");
    assert!(weak.message.contains("weaker"), "{weak}");

    // Only the service account reads the hash; another user of the domain sees nothing.
    let hash = |who: &'static str, password: &'static str| {
        let dc = &dc;
        async move {
            dc.read_as(
                who,
                password,
                &samba::user_dn("arivera"),
                samba::PIN_HASH_ATTRIBUTE,
            )
            .await
            .expect("read")
        }
    };
    assert_eq!(
        hash(samba::SERVICE_DN, samba::SERVICE_PASSWORD).await.len(),
        1
    );
    let other = samba::user_dn("fshared");
    assert!(
        dc.read_as(
            &other,
            "11235813",
            &samba::user_dn("arivera"),
            samba::PIN_HASH_ATTRIBUTE
        )
        .await
        .expect("read")
        .is_empty()
    );
}

#[tokio::test]
async fn ad_pin_binds_stop_before_the_domain_lockout_threshold() {
    let dc = dc();
    let d = LdapDirectory::new(dc.bind_mode_config()).expect("config");
    let mut wrong = 0;
    for pin in [
        "11111111", "22222222", "33333333", "44444444", "55555555", "66666666",
    ] {
        match d.verify_pin("arivera", &Secret::new(pin)).await {
            Ok(matched) => {
                assert!(!matched);
                wrong += 1;
            }
            Err(e) => assert!(e.message.contains("locks at 5"), "{e}"),
        }
    }
    // lockoutThreshold is 5: Resetline stops while the person keeps two attempts.
    assert_eq!(wrong, 3, "binds made before the guard refused");
    assert_eq!(attr(&dc, "arivera", "badPwdCount").await, "3");
    assert!(matches!(
        attr(&dc, "arivera", "lockoutTime").await.as_str(),
        "" | "0"
    ));
    assert_eq!(
        login(&dc, "arivera", "31415926").await.0,
        0,
        "still logs in"
    );

    // Gale's PSO locks at 3: one phone attempt, then the guard.
    assert!(
        !d.verify_pin("ghart", &Secret::new("11111111"))
            .await
            .expect("verify")
    );
    let e = d
        .verify_pin("ghart", &Secret::new("22222222"))
        .await
        .expect_err("guard");
    assert!(e.message.contains("locks at 3"), "{e}");
    assert_eq!(attr(&dc, "ghart", "badPwdCount").await, "1");
    assert_eq!(login(&dc, "ghart", "17320508").await.0, 0);
}

#[tokio::test]
async fn after_the_person_logs_in_the_phone_may_check_the_pin_again() {
    let dc = dc();
    let d = LdapDirectory::new(dc.bind_mode_config()).expect("config");
    for pin in ["11111111", "22222222", "33333333"] {
        assert!(
            !d.verify_pin("arivera", &Secret::new(pin))
                .await
                .expect("verify")
        );
    }
    assert!(
        d.verify_pin("arivera", &Secret::new("44444444"))
            .await
            .is_err()
    );
    // The person logs in at their desk: AD resets badPwdCount to 0, and shows the 0.
    assert_eq!(login(&dc, "arivera", "31415926").await.0, 0);
    assert_eq!(attr(&dc, "arivera", "badPwdCount").await, "0");
    assert!(
        d.verify_pin("arivera", &Secret::new("31415926"))
            .await
            .expect("the count the directory cleared no longer stops the check")
    );
}

#[tokio::test]
async fn a_right_password_that_must_be_changed_is_not_a_wrong_pin() {
    let dc = dc();
    let d = LdapDirectory::new(dc.bind_mode_config()).expect("config");
    // Ivan must change his password at next logon: his bind fails with data 773 although the
    // password is right, and AD counts no failure for it.
    assert!(
        d.verify_pin("ijones", &Secret::new("93238462"))
            .await
            .expect("verify")
    );
    assert!(
        !d.verify_pin("ijones", &Secret::new("11111111"))
            .await
            .expect("verify")
    );
    assert_eq!(attr(&dc, "ijones", "badPwdCount").await, "1");
    // A locked account (five failures on record) is stopped by the guard before any bind;
    // were it not, AD would refuse every bind (data 775), right or wrong: never a wrong PIN.
    assert!(
        d.verify_pin("bchen", &Secret::new("27182818"))
            .await
            .is_err()
    );
    // Disabled (data 533): the same.
    let e = d
        .verify_pin("cdiaz", &Secret::new("16180339"))
        .await
        .expect_err("disabled at the directory");
    assert!(e.message.contains("disabled"), "{e}");
}
