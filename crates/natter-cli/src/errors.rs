//! How `natter` fails: a stable code and an exit status for every error, the code and message
//! as JSON under `--json`, and a hint where the way out is not obvious. Nothing here prints
//! results or retries: it only describes a command that failed.

use natter_client::ClientError;
use serde_json::{Value, json};

use crate::resolve::Ambiguous;

/// Errors of the CLI itself; the client library's are [`ClientError`], and [`classify`]
/// gives both their codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No device is logged in in this data directory (no store at the path it holds).
    #[error("not logged in here (no {0}); run `natter login`")]
    NotLoggedIn(String),
    /// The server refused queued messages for good, as (client_msg_id, problem code).
    #[error("the server refused for good, so these were not sent: {}", listed(.0))]
    Refused(Vec<(String, String)>),
}

/// Refused messages as `id (code), …`, for the error message and `natter send`'s warning.
pub fn listed(failed: &[(String, String)]) -> String {
    let messages: Vec<String> = failed
        .iter()
        .map(|(id, code)| format!("{id} ({code})"))
        .collect();
    messages.join(", ")
}

/// What an error is: (stable code, exit status, extra JSON fields). The first cause in the
/// chain this knows decides. Exit statuses: 1 a local problem or anything unknown, 3 not
/// logged in or the login refused, 4 the server unreachable, 5 the server refused, 6 an
/// ambiguous name (the candidates are listed).
pub fn classify(error: &anyhow::Error) -> (String, u8, Value) {
    for cause in error.chain() {
        if let Some(ambiguous) = cause.downcast_ref::<Ambiguous>() {
            let candidates: Vec<Value> = ambiguous
                .candidates
                .iter()
                .map(|(id, name, members)| json!({ "id": id, "name": name, "members": members }))
                .collect();
            return ("ambiguous".into(), 6, json!({ "candidates": candidates }));
        }
        if let Some(error) = cause.downcast_ref::<CliError>() {
            return match error {
                CliError::NotLoggedIn(_) => ("not_logged_in".into(), 3, json!({})),
                CliError::Refused(failed) => {
                    let failed: Vec<Value> = failed
                        .iter()
                        .map(|(id, code)| json!({ "client_msg_id": id, "code": code }))
                        .collect();
                    ("refused".into(), 5, json!({ "failed": failed }))
                }
            };
        }
        if let Some(error) = cause.downcast_ref::<ClientError>() {
            let (code, status) = match error {
                ClientError::Api(problem) if problem.status == 401 => ("login_refused", 3),
                ClientError::Api(problem) => (problem.code.as_str(), 5),
                ClientError::NotLoggedIn => ("not_logged_in", 3),
                ClientError::Http(_) | ClientError::WebSocket(_) | ClientError::Timeout => {
                    ("unreachable", 4)
                }
                ClientError::UnexpectedStatus(_) => ("server_error", 5),
                ClientError::WrongPassphrase => ("wrong_passphrase", 1),
                ClientError::StoreInUse(_) => ("already_logged_in", 1),
                ClientError::NotApproved => ("not_approved", 1),
                ClientError::Crypto(_) => ("invalid_input", 1),
                other => (other.code_or_local(), 1),
            };
            return (code.to_owned(), status, json!({}));
        }
    }
    ("error".into(), 1, json!({}))
}

/// A hint for the person, for the errors whose way out is not in their message; `code` is
/// one [`classify`] gives.
pub fn hint(code: &str) -> Option<&'static str> {
    match code {
        "login_refused" => Some(
            "the server no longer accepts this device's login (it was removed, or unused for \
             30 days): run `natter logout`, then `natter login`",
        ),
        "already_logged_in" => Some(
            "`natter logout` forgets the login here (with --local, even if the server cannot \
             be reached or refuses it)",
        ),
        _ => None,
    }
}

/// Reports an error on standard error (as one JSON line under `--json`) and returns the exit
/// status. The JSON is `{"error": {code, message, exit, hint?, ...}}` with the fields
/// [`classify`] adds (the candidates of an ambiguous name, the refused messages).
pub fn report(error: &anyhow::Error, as_json: bool) -> u8 {
    let (code, status, extra) = classify(error);
    let message = format!("{error:#}");
    if as_json {
        let mut body = json!({ "code": code, "message": message, "exit": status });
        if let Some(hint) = hint(&code) {
            body["hint"] = hint.into();
        }
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        eprintln!("{}", json!({ "error": body }));
    } else {
        eprintln!("natter: {message}");
        if let Some(hint) = hint(&code) {
            eprintln!("hint: {hint}");
        }
    }
    status
}
