//! What a command line tool owes its users: no lock-outs, hidden and confirmed passwords,
//! completions, documented environment and exit statuses, and errors as JSON for scripts.

use std::process::Output;

use serde_json::Value;

use super::{
    Relay, alice_and_bob, answer, capture, eventually, files, has_tmux, json_lines, natter, ok,
    server, tmux,
};

/// The JSON error `natter --json` printed on standard error.
fn json_error(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {stderr}"))["error"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_login_logs_out_and_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let (laptop, phone) = (dir.path().join("laptop"), dir.path().join("phone"));
    ok(&url, &laptop, &["register", "alice"]).await;
    ok(
        &url,
        &laptop,
        &["login", "alice", "--device-name", "laptop"],
    )
    .await;
    ok(&url, &phone, &["login", "alice", "--device-name", "phone"]).await;
    let phone_id = json_lines(&ok(&url, &phone, &["--json", "whoami"]).await)[0]["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The phone is lost: the laptop removes it, and the server refuses its token from now on.
    ok(&url, &laptop, &["devices", "--remove", &phone_id]).await;

    let refused = natter(&url, &phone, &["whoami"]).await;
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("natter logout") && stderr.contains("natter login"),
        "{stderr}"
    );
    let refused = natter(&url, &phone, &["--json", "whoami"]).await;
    assert_eq!(refused.status.code(), Some(3));
    let error = json_error(&refused);
    assert_eq!(error["code"], "login_refused");
    assert_eq!(error["exit"], 3);
    let again = natter(&url, &phone, &["login", "alice"]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("natter logout"));

    // Logging out works although the server refuses the token, and then logging in again.
    let out = ok(&url, &phone, &["logout"]).await;
    assert!(out.contains("already ended"), "{out}");
    assert!(files(&phone).is_empty(), "the old login is forgotten here");
    ok(&url, &phone, &["login", "alice", "--device-name", "phone"]).await;
    assert!(ok(&url, &phone, &["whoami"]).await.starts_with("alice"));

    // With the server out of reach, logout says how to forget the login here only.
    let relay = Relay::start(&url).await;
    let tablet = dir.path().join("tablet");
    ok(
        &relay.url,
        &tablet,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;
    relay.set_up(false);
    let unreachable = natter(&relay.url, &tablet, &["logout"]).await;
    assert_eq!(unreachable.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("logout --local"));
    ok(&relay.url, &tablet, &["logout", "--local"]).await;
    assert!(files(&tablet).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_completions_json_errors_and_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    let help = ok(&url, &alice, &["--help"]).await;
    for expected in [
        "NATTER_HOME",
        "NATTER_SERVER",
        "NATTER_PASSWORD",
        "NATTER_PASSPHRASE",
        "NATTER_RECOVERY_KEY",
        "Exit status",
        "4  the server cannot be reached",
        "6  a name fits several conversations",
    ] {
        assert!(
            help.contains(expected),
            "{expected} missing from --help:\n{help}"
        );
    }

    // Completion scripts that the shells take.
    let bash = ok(&url, &alice, &["completions", "bash"]).await;
    let script = dir.path().join("natter.bash");
    std::fs::write(&script, &bash).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p natter", script.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("_natter"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(bash.contains("completions") && bash.contains("connections"));
    assert!(
        ok(&url, &alice, &["completions", "zsh"])
            .await
            .starts_with("#compdef natter")
    );
    assert!(
        ok(&url, &alice, &["completions", "fish"])
            .await
            .contains("complete -c natter")
    );
    assert_eq!(
        natter(&url, &alice, &["completions", "tcsh"])
            .await
            .status
            .code(),
        Some(2)
    );

    // Errors under --json: one line with a stable code, and the exit status of its kind.
    let usage = natter(&url, &alice, &["--json", "send", "bob"]).await;
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(json_error(&usage)["code"], "usage");
    let nobody = natter(&url, &dir.path().join("nobody"), &["--json", "whoami"]).await;
    assert_eq!(nobody.status.code(), Some(3));
    assert_eq!(json_error(&nobody)["code"], "not_logged_in");
    let missing = natter(&url, &alice, &["--json", "history", "no-such-user"]).await;
    assert_eq!(missing.status.code(), Some(5));
    assert_eq!(json_error(&missing)["code"], "not_found");
    let long = "x".repeat(1001);
    let too_long = natter(&url, &alice, &["--json", "send", "bob", &long]).await;
    assert_eq!(too_long.status.code(), Some(1));
    assert_eq!(json_error(&too_long)["code"], "invalid_input");
    assert!(too_long.stdout.is_empty());

    // What was done, not the state left behind.
    ok(&url, &bob, &["connections", "delete", "alice"]).await;
    ok(&url, &alice, &["connections", "request", "bob"]).await;
    assert_eq!(
        ok(&url, &bob, &["connections", "reject", "alice"]).await,
        "rejected\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_asks_the_password_twice_without_showing_it() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let zed = dir.path().join("zed");
    let register = |name: &str| {
        tmux(
            name,
            &format!(
                "env -u NATTER_PASSWORD NATTER_HOME={} NATTER_SERVER={url} {} register zed; \
                 echo exit=$?; sleep 60",
                zed.display(),
                env!("CARGO_BIN_EXE_natter")
            ),
        )
    };
    let session = register("register-differ");
    answer(&session.0, "Password:", "secret-one-23").await;
    answer(&session.0, "The same password again:", "secret-two-23").await;
    eventually("the refusal", async || {
        capture(&session.0).contains("exit=1")
    })
    .await;
    assert!(capture(&session.0).contains("the two passwords differ"));
    drop(session);

    let session = register("register-same");
    answer(&session.0, "Password:", "secret-one-23").await;
    answer(&session.0, "The same password again:", "secret-one-23").await;
    eventually("the account", async || {
        capture(&session.0).contains("exit=0")
    })
    .await;
    let screen = capture(&session.0);
    assert!(screen.contains("registered zed"), "{screen}");
    assert!(
        !screen.contains("secret-one-23"),
        "the password was shown: {screen}"
    );

    // Logging in on a terminal asks for it hidden, once.
    let login = tmux(
        "login-password",
        &format!(
            "env -u NATTER_PASSWORD NATTER_PASSPHRASE=pass NATTER_HOME={} NATTER_SERVER={url} \
             {} login zed; echo exit=$?; sleep 60",
            zed.display(),
            env!("CARGO_BIN_EXE_natter")
        ),
    );
    answer(&login.0, "Password:", "secret-one-23").await;
    eventually("the login", async || capture(&login.0).contains("exit=0")).await;
    let screen = capture(&login.0);
    assert!(
        screen.contains("logged in as zed") && !screen.contains("secret-one-23"),
        "{screen}"
    );
}
