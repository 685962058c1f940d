//! `LdapDirectory` against a real Active Directory domain controller (Samba AD DC), started by
//! `resetline_connectors::testing::samba::SambaDc` with seeded users.

use resetline_connectors::LdapDirectory;
use resetline_connectors::testing::samba::SambaDc;
use resetline_engine::{AccountState, Directory};
use resetline_flow::model::LookupBy;

fn dc() -> SambaDc {
    SambaDc::start().unwrap_or_else(|e| panic!("cannot start the Samba DC: {e}"))
}

fn directory(dc: &SambaDc) -> LdapDirectory {
    LdapDirectory::new(dc.config()).expect("config")
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
    assert_eq!(alex.id, "arivera");
    assert_eq!(alex.state, AccountState::Active);
}
