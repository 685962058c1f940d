//! Tests against a fake SCIM 2.0 service provider ([`crate::fake_http`]) that records every
//! request and answers with RFC 7644 shapes (ListResponse, Error).

use super::*;
use crate::fake_http::{Fake, Reply, Seen};
use resetline_engine::Directory;

const TOKEN: &str = "scim-bearer-token-for-tests";
const NEW_PASSWORD: &str = "48213579";
const DANA: &str = r#"{
  "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
  "totalResults": 1, "itemsPerPage": 1, "startIndex": 1,
  "Resources": [{
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "userName": "100001",
    "name": {"formatted": "Ms. Dana Reyes", "givenName": "Dana", "familyName": "Reyes"},
    "displayName": "Dana Reyes",
    "active": true,
    "emails": [{"value": "dana.home@example.org", "type": "home"},
               {"value": "dana.reyes@example.com", "type": "work", "primary": true}],
    "phoneNumbers": [{"value": "+15555550123", "type": "work", "primary": true},
                     {"value": "+15555550199", "type": "mobile"}],
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E-100001"},
    "meta": {"resourceType": "User", "location": "https://idp.example.com/scim/v2/Users/2819c223-7f76-453a-919d-413861904646"}
  }]
}"#;
const NONE: &str = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}"#;

fn error(status: u16, scim_type: Option<&str>, detail: &str) -> String {
    let kind = scim_type
        .map(|t| format!(r#""scimType": "{t}", "#))
        .unwrap_or_default();
    format!(
        r#"{{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], {kind}"detail": "{detail}", "status": "{status}"}}"#
    )
}

fn scim(fake: &Fake) -> ScimDirectory {
    ScimDirectory::new(&format!("{}/scim/v2", fake.base()), Secret::new(TOKEN)).unwrap()
}

/// The request's path and decoded query pairs.
fn target(seen: &Seen) -> (String, Vec<(String, String)>) {
    let line = &seen.request_line;
    let path = line.split(' ').nth(1).unwrap();
    let url = reqwest::Url::parse(&format!("http://x{path}")).unwrap();
    (
        url.path().to_owned(),
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

fn assert_scim_headers(s: &Seen) {
    assert_eq!(
        s.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(s.header("accept"), Some("application/scim+json"));
}

fn assert_clean(shown: &str) {
    assert!(
        !shown.contains(TOKEN) && !shown.contains(NEW_PASSWORD),
        "{shown}"
    );
}

#[tokio::test]
async fn find_filters_users_and_maps_the_resource() {
    let fake = Fake::start(200, DANA, Duration::ZERO).await;
    let found = scim(&fake)
        .find(LookupBy::EmployeeId, " 100001 ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        Account {
            id: "100001".into(),
            name: "Dana Reyes".into(),
            mobile: Some("+15555550199".into()),
            email: Some("dana.reyes@example.com".into()),
            state: AccountState::Active,
            allow_phone_reset: true,
            birth_date: None,
        }
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].request_line,
        "GET /scim/v2/Users?filter=userName%20eq%20%22100001%22&count=2 HTTP/1.1"
    );
    assert_scim_headers(&seen[0]);
    let (path, query) = target(&seen[0]);
    assert_eq!(path, "/scim/v2/Users");
    assert_eq!(
        query,
        [
            ("filter".to_owned(), r#"userName eq "100001""#.to_owned()),
            ("count".to_owned(), "2".to_owned())
        ]
    );
}

#[tokio::test]
async fn each_lookup_uses_its_attribute_and_values_are_quoted() {
    let fake = Fake::start(200, DANA, Duration::ZERO).await;
    let dir = scim(&fake)
        .with_employee_id_attribute(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        )
        .unwrap();
    dir.find(LookupBy::EmployeeId, "E-100001").await.unwrap();
    dir.find(LookupBy::Phone, "+15555550199").await.unwrap();
    dir.find(LookupBy::Email, "dana.reyes@example.com")
        .await
        .unwrap();
    dir.find(LookupBy::Username, r#"x" or userName pr or "y"#)
        .await
        .unwrap();
    let filters: Vec<String> = fake
        .requests()
        .iter()
        .map(|s| target(s).1[0].1.clone())
        .collect();
    assert_eq!(
        filters,
        [
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "E-100001""#,
            r#"phoneNumbers.value eq "+15555550199""#,
            r#"emails.value eq "dana.reyes@example.com""#,
            r#"userName eq "x\" or userName pr or \"y""#,
        ]
    );
}

#[tokio::test]
async fn inactive_none_and_ambiguous() {
    let inactive = DANA
        .replace(r#""active": true"#, r#""active": false"#)
        .replace(r#""displayName": "Dana Reyes","#, "");
    let fake = Fake::start(200, &inactive, Duration::ZERO).await;
    let a = scim(&fake)
        .find(LookupBy::EmployeeId, "100001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, AccountState::Disabled);
    assert_eq!(
        a.name, "Ms. Dana Reyes",
        "name.formatted when no displayName"
    );

    let fake = Fake::start(200, NONE, Duration::ZERO).await;
    assert_eq!(scim(&fake).find(LookupBy::EmployeeId, "9").await, Ok(None));
    assert_eq!(scim(&fake).find(LookupBy::EmployeeId, "  ").await, Ok(None));
    assert_eq!(fake.requests().len(), 1, "an empty value asks nothing");

    let two = DANA.replace(r#""totalResults": 1"#, r#""totalResults": 2"#);
    let fake = Fake::start(200, &two, Duration::ZERO).await;
    assert_eq!(
        scim(&fake).find(LookupBy::Phone, "+15555550199").await,
        Ok(None)
    );
}

#[tokio::test]
async fn set_secret_patches_the_password_by_server_id() {
    let fake = Fake::script(vec![Reply::new(200, DANA), Reply::new(204, "")]).await;
    scim(&fake)
        .set_secret("100001", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap();
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(target(&seen[0]).1[0].1, r#"userName eq "100001""#);
    assert_eq!(
        seen[1].request_line,
        "PATCH /scim/v2/Users/2819c223-7f76-453a-919d-413861904646 HTTP/1.1"
    );
    assert_scim_headers(&seen[1]);
    assert_eq!(
        seen[1].header("content-type"),
        Some("application/scim+json")
    );
    assert_eq!(
        seen[1].json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "password", "value": NEW_PASSWORD}]
        })
    );
}

#[tokio::test]
async fn policy_refusals_are_spoken_other_errors_are_backend_errors() {
    let refused = error(
        400,
        Some("invalidValue"),
        "Password must be at least 10 characters long.",
    );
    let fake = Fake::script(vec![Reply::new(200, DANA), Reply::new(400, &refused)]).await;
    let e = scim(&fake)
        .set_secret("100001", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        SetSecretError::Rejected {
            prompt: "policy_too_short".into(),
            reason: "Password must be at least 10 characters long.".into()
        }
    );

    let mutability = error(400, Some("mutability"), "password is readOnly");
    let fake = Fake::script(vec![Reply::new(200, DANA), Reply::new(400, &mutability)]).await;
    let e = scim(&fake)
        .set_secret("100001", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap_err();
    let SetSecretError::Backend(b) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        b.message,
        "SCIM password change answered HTTP 400 (mutability: password is readOnly)"
    );

    let fake = Fake::script(vec![
        Reply::new(200, DANA),
        Reply::new(404, &error(404, None, "Resource 2819c223 not found")),
    ])
    .await;
    let e = scim(&fake)
        .set_secret("100001", &Secret::new(NEW_PASSWORD))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SetSecretError::Backend(b) if b.message.contains("HTTP 404 (Resource ***c223 not found)")),
        "{e:?}"
    );
    assert_clean(&format!("{e:?}"));

    let fake = Fake::script(vec![Reply::new(200, DANA), Reply::new(423, "")]).await;
    assert_eq!(
        scim(&fake)
            .set_secret("100001", &Secret::new(NEW_PASSWORD))
            .await,
        Err(SetSecretError::Locked)
    );

    let inactive = DANA.replace(r#""active": true"#, r#""active": false"#);
    let fake = Fake::start(200, &inactive, Duration::ZERO).await;
    assert!(matches!(
        scim(&fake).set_secret("100001", &Secret::new(NEW_PASSWORD)).await,
        Err(SetSecretError::Rejected { prompt, .. }) if prompt == "not_allowed"
    ));
    assert_eq!(fake.requests().len(), 1, "no PATCH for an inactive user");
}

#[tokio::test]
async fn unauthorized_rate_limited_and_server_errors() {
    for (status, body, want) in [
        (
            401,
            error(401, None, "Authorization failure. The token is invalid."),
            "SCIM search answered HTTP 401 (Authorization failure. The token is invalid.)",
        ),
        (
            403,
            error(403, None, "Insufficient scope"),
            "SCIM search answered HTTP 403 (Insufficient scope)",
        ),
        (
            400,
            error(
                400,
                Some("invalidFilter"),
                "The specified filter syntax was invalid",
            ),
            "SCIM search answered HTTP 400 (invalidFilter: The specified filter syntax was invalid)",
        ),
        (
            429,
            error(429, None, "Too many requests"),
            "SCIM search answered HTTP 429 (Too many requests)",
        ),
        (
            500,
            error(500, None, "Internal error for user +15555550199"),
            "SCIM search answered HTTP 500 (Internal error for user +***)",
        ),
        (
            503,
            "<html>down</html>".to_owned(),
            "SCIM search answered HTTP 503",
        ),
    ] {
        let fake = Fake::start(status, &body, Duration::ZERO).await;
        let e = scim(&fake)
            .find(LookupBy::EmployeeId, "100001")
            .await
            .unwrap_err();
        assert_eq!(e.message, want);
        assert_eq!(e.backend, "directory");
        assert_clean(&format!("{e} {e:?}"));
    }
}

#[tokio::test]
async fn a_slow_or_absent_provider_is_a_timeout_or_an_error() {
    let fake = Fake::start(200, DANA, Duration::from_secs(3)).await;
    let dir = scim(&fake).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(
        dir.find(LookupBy::EmployeeId, "100001").await,
        Err(BackendError::timeout("directory"))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = ScimDirectory::new(&format!("http://{closed}/scim/v2"), Secret::new(TOKEN)).unwrap();
    let e = dir.find(LookupBy::EmployeeId, "1").await.unwrap_err();
    assert!(!e.timeout);
    assert!(e.message.starts_with("request to SCIM failed"), "{e}");
}

#[tokio::test]
async fn pins_need_a_hash_attribute() {
    let fake = Fake::start(200, DANA, Duration::ZERO).await;
    let e = scim(&fake)
        .verify_pin("100001", &Secret::new("1234"))
        .await
        .unwrap_err();
    assert!(e.message.contains("pin_hash_attribute"), "{e}");
    assert!(fake.requests().is_empty());

    let hash = crate::hash_pin(&Secret::new("48213579")).unwrap();
    let with_hash = DANA.replace(
        r#"{"employeeNumber": "E-100001"}"#,
        &format!(r#"{{"employeeNumber": "E-100001"}}, "urn:example:params:scim:schemas:extension:resetline:2.0:User": {{"pinHash": "{hash}"}}"#),
    );
    let fake = Fake::start(200, &with_hash, Duration::ZERO).await;
    let dir = scim(&fake)
        .with_pin_hash_attribute(
            "urn:example:params:scim:schemas:extension:resetline:2.0:User:pinHash",
        )
        .unwrap();
    assert_eq!(
        dir.verify_pin("100001", &Secret::new("48213579")).await,
        Ok(true)
    );
    assert_eq!(
        dir.verify_pin("100001", &Secret::new("48213578")).await,
        Ok(false)
    );
    // A user without the attribute (or unknown) never matches.
    let fake = Fake::start(200, DANA, Duration::ZERO).await;
    let dir = scim(&fake).with_pin_hash_attribute("pinHash").unwrap();
    assert_eq!(
        dir.verify_pin("100001", &Secret::new("48213579")).await,
        Ok(false)
    );
}

#[test]
fn configuration_is_checked_and_debug_hides_the_token() {
    assert!(ScimDirectory::new("https://idp.example.com/scim/v2", Secret::new(TOKEN)).is_ok());
    assert!(matches!(
        ScimDirectory::new("http://idp.example.com/scim/v2", Secret::new(TOKEN)),
        Err(IdpConfigError::BaseUrl(_))
    ));
    assert_eq!(
        ScimDirectory::new("https://idp.example.com", Secret::new("")).unwrap_err(),
        IdpConfigError::Token
    );
    let dir = ScimDirectory::new("https://idp.example.com", Secret::new(TOKEN)).unwrap();
    assert!(dir.with_employee_id_attribute("a b").is_err());
    let shown = format!(
        "{:?}",
        ScimDirectory::new("https://idp.example.com", Secret::new(TOKEN)).unwrap()
    );
    assert_clean(&shown);
    assert!(shown.contains("Secret(***)"));
}
