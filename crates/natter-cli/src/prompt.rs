//! Secrets a command asks for: from an environment variable, the terminal or standard input.
//! The local store's passphrase is `home`'s.

use anyhow::{Context, bail};

/// The password: `NATTER_PASSWORD`, else asked on the terminal without echo (twice when
/// `confirm`, for a new account), else the first line of standard input. Fails when it is
/// empty, the two typed differ, or there is nothing to read.
pub fn password(confirm: bool) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::env::var_os("NATTER_PASSWORD").is_some() || !std::io::stdin().is_terminal() {
        return secret_line("NATTER_PASSWORD", "password");
    }
    let ask = |prompt: &str| rpassword::prompt_password(prompt).context("reading the password");
    let password = ask("Password: ")?;
    if password.is_empty() {
        bail!("no password given");
    }
    if confirm && ask("The same password again: ")? != password {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(password)
}

/// A secret from the environment variable `var`, else the first line of standard input
/// (prompted with `what` on standard error, its line break dropped). Fails on an empty line.
pub fn secret_line(var: &str, what: &str) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(var) {
        return Ok(value);
    }
    eprint!("{what}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what}"))?;
    let value = line.trim_end_matches(['\r', '\n']).to_owned();
    if value.is_empty() {
        bail!("no {what} given (set {var} or type it)");
    }
    Ok(value)
}
