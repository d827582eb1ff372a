//! `natter`: the Natter terminal client. One-shot commands for accounts, connections, rooms
//! and messages, and `natter chat` for a full-screen conversation.
//!
//! Everything is end-to-end encrypted by `natter-client`; this binary only parses flags,
//! resolves names and prints. Layout:
//! - `home`: the data directory, the encrypted device store and how it is unlocked
//!   (passphrase, or key file).
//! - `commands`: the one-shot commands.
//! - `chat`: the interactive chat (ratatui).
//! - `trust`: device approval by code and notices about whom messages reach.
//! - `history`: a conversation's messages with their marks (`marks`), and search results.
//! - `resolve`: user and conversation names to ids, from the server or the directory here.
//! - `text`: widths in terminal cells, wrapping, and stripping control characters.
//! - `out`, `prompt`, `errors`: printing results as text or JSON, asking for secrets, and
//!   turning errors into stable codes, exit statuses and hints.

mod chat;
mod commands;
mod errors;
mod history;
mod home;
mod marks;
mod out;
mod prompt;
mod resolve;
mod text;
mod trust;

use clap::{Parser, Subcommand};

/// The environment variables and exit statuses, for `--help`; the statuses must stay those
/// [`errors::classify`] gives.
const AFTER_HELP: &str = "Environment:
  NATTER_HOME              the data directory (default: the platform's data directory)
  NATTER_SERVER            the server, for register and login
  NATTER_PASSWORD          the account password (else asked on the terminal, hidden; without
                           a terminal, the first line of standard input)
  NATTER_PASSPHRASE        the passphrase of the encrypted local store (else the key file of a
                           `login --key-file`, else asked on the terminal)
  NATTER_RECOVERY_KEY      the recovery key, for `natter recover`
  NATTER_APPROVAL_CONFIRM  `yes` answers the code question of `natter approve`
  TZ                       the time zone `natter chat` shows times in (default: the system's)

Exit status:
  0  success
  1  any other error (its code says which, under --json)
  2  the command line is wrong (usage)
  3  not logged in here, or the server no longer accepts this device's login
  4  the server cannot be reached (queued work stays queued)
  5  the server refused the request (its problem code says why)
  6  a name fits several conversations (name one by id)

With --json, results are JSON lines on standard output and an error is one JSON line on
standard error: {\"error\": {\"code\", \"message\", \"exit\", ...}}.";

/// Natter: end-to-end encrypted messaging in the terminal.
#[derive(Parser)]
#[command(name = "natter", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The server, for `register` and `login` (later commands use the one logged in to).
    #[arg(
        long,
        env = "NATTER_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Create an account (the password is read from NATTER_PASSWORD or standard input).
    Register {
        /// 3 to 32 letters, digits, `_`, `.` or `-`.
        username: String,
        /// The name others see.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Log in as a new device of this computer, and publish its keys. The local store is
    /// encrypted under a passphrase, asked twice on the terminal (or NATTER_PASSPHRASE).
    Login {
        /// The username.
        username: String,
        /// A name for this device.
        #[arg(long, default_value = "terminal")]
        device_name: String,
        /// Unlock the store with a random key kept in a file beside it (store.key) instead of
        /// a passphrase, for unattended use. Weaker: whoever copies the data directory with
        /// the key file reads everything in it.
        #[arg(long)]
        key_file: bool,
    },
    /// Log this device out and forget its local store. If the server no longer accepts the
    /// login (the device was removed, or unused for 30 days), it is forgotten here all the same.
    Logout {
        /// Forget the login here without telling the server (when it cannot be reached, or the
        /// store's passphrase is lost); remove the device later with `natter devices --remove`.
        #[arg(long)]
        local: bool,
    },
    /// Who this device is.
    Whoami,
    /// Your profile: show it, or change the name others see.
    Profile {
        /// The name others see (1 to 64 characters).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Connections with other users.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Rooms.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// Send a message to a user (direct) or a room (by name or id).
    Send {
        /// A username, room name, conversation id or a unique prefix of one.
        to: String,
        /// The text (at most 1,000 characters).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Receive what is waiting and send what is queued.
    Sync,
    /// Show a conversation's messages.
    History {
        /// A username, room name, conversation id or a unique prefix of one.
        with: String,
        /// How many of the newest.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Search this device's messages (locally; the server never sees the terms).
    Search {
        /// The words.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Only in this conversation (username, room name or id).
        #[arg(long = "in")]
        within: Option<String>,
        /// Only from this user.
        #[arg(long)]
        from: Option<String>,
    },
    /// A user's devices (yours by default), and whether their identity signed each: only
    /// signed devices are given keys.
    Devices {
        /// The user.
        user: Option<String>,
        /// Remove this device of yours (a lost phone, or one you do not know). An approved one
        /// held your identity's keys: they are replaced, which needs your recovery key (read
        /// from NATTER_RECOVERY_KEY or standard input).
        #[arg(long, value_name = "DEVICE_ID")]
        remove: Option<natter_proto::DeviceId>,
    },
    /// The safety number with a user: compare it with theirs (read out, or side by side).
    Verify {
        /// The user.
        user: String,
        /// The numbers matched: mark the user verified (carried to your other devices).
        /// If their safety number changes later, nothing is sent to them until you verify again.
        #[arg(long)]
        confirm: bool,
    },
    /// Approve a new device of yours by comparing a code on both screens: run
    /// `natter approve <its id>` on an approved device and `natter approve` on the new one at
    /// the same time, check the codes match, and confirm on both (answer `yes`, or set
    /// NATTER_APPROVAL_CONFIRM=yes for scripts).
    Approve {
        /// The new device (on the approved one); none on the new device itself, which waits.
        device: Option<natter_proto::DeviceId>,
    },
    /// Approve this device with the recovery key shown at your first login (read from
    /// NATTER_RECOVERY_KEY or standard input): it can then send, and reads earlier messages.
    Recover,
    /// Lock this device's local store with a new passphrase (NATTER_NEW_PASSPHRASE, or asked
    /// twice); the current one comes from NATTER_PASSPHRASE, the key file, or is asked. A key
    /// file, if this device had one, is removed: the passphrase replaces it.
    Passphrase,
    /// Start your identity anew, when you lost your recovery key (or fear someone else has it):
    /// asks for your password (NATTER_PASSWORD or standard input) and shows a new recovery key.
    /// Your other devices must be approved again, the history in your key backup is lost, and
    /// your contacts are told your safety number changed.
    ResetIdentity {
        /// Go ahead (without it, the command only says what it would do).
        #[arg(long)]
        yes: bool,
    },
    /// What changed about whom your messages reach: safety numbers, devices left out, new
    /// devices of yours.
    Notices,
    /// Print a completion script for a shell, such as `natter completions bash >
    /// /etc/bash_completion.d/natter`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Full-screen chat with a user or in a room (by default, the most recently active
    /// conversation).
    Chat {
        /// A username, room name, conversation id or a unique prefix of one.
        with: Option<String>,
    },
}

/// `natter connections ...`
#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// Connections, requests and blocks.
    List,
    /// Ask a user to connect.
    Request {
        /// The username.
        user: String,
    },
    /// Accept a request.
    Accept {
        /// The username.
        user: String,
    },
    /// Reject a request.
    Reject {
        /// The username.
        user: String,
    },
    /// Block a user (hidden here at once; queued if the server is unreachable).
    Block {
        /// The username.
        user: String,
    },
    /// Unblock a user.
    Unblock {
        /// The username.
        user: String,
    },
    /// Remove a connection or withdraw a request.
    Delete {
        /// The username.
        user: String,
    },
}

/// `natter rooms ...`
#[derive(Subcommand)]
pub enum RoomsCommand {
    /// Create a room with some of your connections.
    Create {
        /// The room's name.
        name: String,
        /// Usernames of the first members.
        members: Vec<String>,
    },
    /// Add connections to a room you own.
    Add {
        /// The room (name or id).
        room: String,
        /// Usernames.
        #[arg(required = true, num_args = 1..)]
        users: Vec<String>,
    },
    /// Remove a member from a room you own.
    Remove {
        /// The room (name or id).
        room: String,
        /// The username.
        user: String,
    },
    /// Leave a room.
    Leave {
        /// The room (name or id).
        room: String,
    },
    /// Your conversations with unread counts.
    List,
}

/// Parses the command line and runs the command; the exit status is 0, 2 for a wrong command
/// line (a JSON error under `--json`), or what [`errors::report`] says of the error.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A wrong command line under --json is a JSON error too (help and version are not
        // errors: clap prints them).
        Err(error) if error.use_stderr() && std::env::args().any(|a| a == "--json") => {
            let message = error.render().to_string();
            eprintln!(
                "{}",
                serde_json::json!({ "error": { "code": "usage", "message": message.trim(), "exit": 2 } })
            );
            return std::process::ExitCode::from(2);
        }
        Err(error) => error.exit(),
    };
    let json = cli.json;
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => std::process::ExitCode::from(errors::report(&error, json)),
    }
}
