//! Registration, login, logout, token expiry and profiles.

use std::time::Duration;

use natter_proto::accounts::UpdateProfileRequest;

use crate::helpers::{Backend, TestServer, assert_problem, backend_tests, server};
use crate::ws::{closed, connect, ping};

backend_tests!(
    register_login_and_me,
    usernames_are_unique_regardless_of_case,
    invalid_accounts_are_refused,
    wrong_password_and_unknown_user_look_the_same,
    logout_revokes_the_token_and_removes_the_device,
    a_removed_device_is_disconnected_at_once,
    expired_tokens_are_refused,
    tokens_last_their_lifetime_past_their_last_use,
    devices_unused_for_the_token_lifetime_leave_the_device_lists,
    profiles_are_visible_to_connections_only,
    profile_updates_are_validated,
    lookup_by_username,
);

async fn register_login_and_me(backend: Backend) {
    let server = server!(backend);
    let user_id = server
        .client
        .register("Alice", "password123", Some("Alice A."))
        .await
        .unwrap();
    let laptop = server
        .client
        .login("alice", "password123", "laptop")
        .await
        .unwrap();
    let phone = server
        .client
        .login("ALICE", "password123", "phone")
        .await
        .unwrap();
    assert_eq!(laptop.user_id(), user_id);
    assert_ne!(
        laptop.device_id(),
        phone.device_id(),
        "each login is a device"
    );
    assert_ne!(laptop.token(), phone.token());
    let me = phone.me().await.unwrap();
    assert_eq!(me.device_id, phone.device_id());
    assert_eq!(me.profile.username, "Alice");
    assert_eq!(me.profile.display_name, "Alice A.");
    let devices = laptop.devices(user_id).await.unwrap();
    let names: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["laptop", "phone"]);
    server.stop().await;
}

async fn usernames_are_unique_regardless_of_case(backend: Backend) {
    let server = server!(backend);
    server
        .client
        .register("bob", "password123", None)
        .await
        .unwrap();
    assert_problem(
        server.client.register("BOB", "password123", None).await,
        409,
        "conflict",
    );
    assert_problem(
        server.client.register("bob", "another-pass", None).await,
        409,
        "conflict",
    );
}

async fn invalid_accounts_are_refused(backend: Backend) {
    let server = server!(backend);
    let long = "x".repeat(33);
    for (username, password, display) in [
        ("ab", "password123", None),
        (long.as_str(), "password123", None),
        ("bad name", "password123", None),
        ("_bad", "password123", None),
        ("émile", "password123", None),
        ("carol", "short", None),
        ("carol", "password123", Some("")),
        ("carol", "password123", Some("tab\tname")),
    ] {
        assert_problem(
            server.client.register(username, password, display).await,
            400,
            "invalid_request",
        );
    }
    let huge = "p".repeat(1025);
    assert_problem(
        server.client.register("carol", &huge, None).await,
        400,
        "invalid_request",
    );
    // None of those created the account.
    server
        .client
        .register("carol", "password123", None)
        .await
        .unwrap();
}

async fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
    let server = server!(backend);
    server
        .client
        .register("dave", "password123", None)
        .await
        .unwrap();
    let wrong = server
        .client
        .login("dave", "wrong-password", "x")
        .await
        .unwrap_err();
    let unknown = server
        .client
        .login("nobody", "password123", "x")
        .await
        .unwrap_err();
    assert_eq!(wrong.status(), Some(401));
    assert_eq!(
        wrong.problem(),
        unknown.problem(),
        "the answers must not reveal which usernames exist"
    );
    assert_problem(
        server.client.login("dave", "password123", "").await,
        400,
        "invalid_request",
    );
    assert_problem(
        server
            .client
            .login("dave", "password123", &"d".repeat(65))
            .await,
        400,
        "invalid_request",
    );
}

async fn logout_revokes_the_token_and_removes_the_device(backend: Backend) {
    let server = server!(backend);
    let laptop = server.user("erin").await;
    let phone = server.login("erin", "phone").await;
    let same = phone.clone();
    // The token as a copy of the device's data would hold it, sent by another session.
    let stale = natter_client::Session::resume(
        server.client.clone(),
        phone.token().to_owned(),
        phone.user_id(),
        phone.device_id(),
    );
    phone.logout().await.unwrap();
    assert_problem(stale.me().await, 401, "unauthorized");
    // The logged-out session itself sends nothing more.
    assert!(matches!(
        same.me().await,
        Err(natter_client::ClientError::LoggedOut)
    ));
    let devices = laptop.devices(laptop.user_id()).await.unwrap();
    assert_eq!(devices.len(), 1, "the logged-out device is gone");
    assert_eq!(devices[0].device_id, laptop.device_id());
    // Removing another of one's own devices works the same way; someone else's cannot be removed.
    let tablet = server.login("erin", "tablet").await;
    let other = server.user("frank").await;
    assert_problem(
        other.delete_device(tablet.device_id()).await,
        404,
        "not_found",
    );
    tablet
        .me()
        .await
        .expect("still logged in after a stranger's attempt");
    laptop.delete_device(tablet.device_id()).await.unwrap();
    assert_problem(tablet.me().await, 401, "unauthorized");
}

async fn a_removed_device_is_disconnected_at_once(backend: Backend) {
    let server = server!(backend);
    let laptop = server.user("erin").await;
    let phone = server.login("erin", "phone").await;
    let tablet = server.login("erin", "tablet").await;
    let (mut laptop_live, _) = connect(&laptop).await;
    let (mut phone_live, _) = connect(&phone).await;
    let (mut tablet_live, _) = connect(&tablet).await;
    // Someone else cannot remove it, nor end its connection by trying.
    let mallory = server.user("mallory").await;
    assert_problem(
        mallory.delete_device(phone.device_id()).await,
        404,
        "not_found",
    );
    ping(&mut phone_live, 7).await;
    // Removed from another device (a lost phone): its open connection ends with it.
    laptop.delete_device(phone.device_id()).await.unwrap();
    let (before, close) = closed(&mut phone_live).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(close.code, Some(1008), "{close:?}");
    // Logging out ends the device's own connections too.
    tablet.logout().await.unwrap();
    assert_eq!(closed(&mut tablet_live).await.1.code, Some(1008));
    // The user's other devices stay connected.
    ping(&mut laptop_live, 1).await;
}

/// Tokens that last this long past their last use, short enough to outlive in a test.
const SHORT_TTL: Duration = Duration::from_secs(8);

/// A server whose tokens last [`SHORT_TTL`].
async fn short_lived_tokens(backend: Backend) -> Option<TestServer> {
    TestServer::start_with(backend, |c| c.token_ttl = SHORT_TTL).await
}

/// Uses `session` over REST every half second until its token would have expired unused.
async fn use_past_the_lifetime(session: &natter_client::Session) {
    let until = tokio::time::Instant::now() + SHORT_TTL + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        session.me().await.expect("a token in use stays valid");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn tokens_last_their_lifetime_past_their_last_use(backend: Backend) {
    let Some(server) = short_lived_tokens(backend).await else {
        return;
    };
    let laptop = server.user("gina").await;
    let phone = server.login("gina", "phone").await;
    let tablet = server.login("gina", "tablet").await;
    let (mut live, _) = connect(&laptop).await;
    // The phone is used over REST, the laptop holds a connection, the tablet rests.
    use_past_the_lifetime(&phone).await;
    ping(&mut live, 1).await;
    laptop
        .me()
        .await
        .expect("an open connection keeps its token valid");
    let error = tablet.me().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("expired"), "{error}");
}

async fn devices_unused_for_the_token_lifetime_leave_the_device_lists(backend: Backend) {
    let Some(server) = short_lived_tokens(backend).await else {
        return;
    };
    let laptop = server.user("hana").await;
    let tablet = server.login("hana", "tablet").await;
    assert_eq!(laptop.devices(laptop.user_id()).await.unwrap().len(), 2);
    use_past_the_lifetime(&laptop).await;
    // Nobody is offered the tablet's keys any more (the node removes it within the hour).
    let devices = laptop.devices(laptop.user_id()).await.unwrap();
    assert_eq!(
        devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        [laptop.device_id()],
        "{:?} is gone",
        tablet.device_id()
    );
}

async fn expired_tokens_are_refused(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.token_ttl = Duration::ZERO).await
    else {
        return;
    };
    let session = server.user("gina").await;
    let error = session.me().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("expired"), "{error}");
}

async fn profiles_are_visible_to_connections_only(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let stranger = server.user("mallory").await;
    let update = UpdateProfileRequest {
        display_name: Some("Alice Liddell".into()),
        avatar_url: Some("https://example.org/a.png".into()),
    };
    alice.update_profile(&update).await.unwrap();
    let seen = bob.profile(alice.user_id()).await.unwrap();
    assert_eq!(seen.display_name, "Alice Liddell");
    assert_eq!(
        seen.avatar_url.as_deref(),
        Some("https://example.org/a.png")
    );
    assert_problem(stranger.profile(alice.user_id()).await, 404, "not_found");
    assert_problem(stranger.devices(alice.user_id()).await, 404, "not_found");
    // A stranger cannot tell a hidden profile from a missing user.
    let missing = stranger
        .profile(natter_proto::UserId::new())
        .await
        .unwrap_err();
    let hidden = stranger.profile(alice.user_id()).await.unwrap_err();
    assert_eq!(missing.problem(), hidden.problem());
}

async fn profile_updates_are_validated(backend: Backend) {
    let server = server!(backend);
    let user = server.user("hank").await;
    for update in [
        UpdateProfileRequest {
            display_name: Some(" ".into()),
            avatar_url: None,
        },
        UpdateProfileRequest {
            display_name: Some("x".repeat(65)),
            avatar_url: None,
        },
        UpdateProfileRequest {
            display_name: None,
            avatar_url: Some("javascript:alert(1)".into()),
        },
        UpdateProfileRequest {
            display_name: None,
            avatar_url: Some(format!("https://{}", "a".repeat(600))),
        },
    ] {
        assert_problem(user.update_profile(&update).await, 400, "invalid_request");
    }
    let set = UpdateProfileRequest {
        display_name: None,
        avatar_url: Some("https://example.org/h.png".into()),
    };
    assert_eq!(
        user.update_profile(&set).await.unwrap().display_name,
        "hank",
        "absent fields stay"
    );
    let clear = UpdateProfileRequest {
        display_name: Some("Hank".into()),
        avatar_url: Some(String::new()),
    };
    let profile = user.update_profile(&clear).await.unwrap();
    assert_eq!(
        (profile.display_name.as_str(), profile.avatar_url),
        ("Hank", None)
    );
}

async fn lookup_by_username(backend: Backend) {
    let server = server!(backend);
    let ivy = server.user("Ivy").await;
    let jack = server.user("jack").await;
    let found = jack.lookup("IVY").await.unwrap();
    assert_eq!(
        (found.user_id, found.username.as_str()),
        (ivy.user_id(), "Ivy")
    );
    assert_problem(jack.lookup("nobody").await, 404, "not_found");
    assert_problem(jack.lookup("not a name/..").await, 404, "not_found");
}
