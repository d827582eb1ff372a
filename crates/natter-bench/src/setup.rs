//! The setup phase: accounts (one device each), connections, direct conversations and rooms,
//! made over REST with the client library and cached in a JSON file for later runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use natter_client::{Client, ClientError, Session};
use natter_proto::connections::ConnectionState;
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};

use crate::cli::Common;
use crate::report;

/// The password of every benchmark account.
const PASSWORD: &str = "natter-bench-password";

/// A benchmark user with its one logged-in device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    /// Username.
    pub username: String,
    /// User id.
    pub user_id: UserId,
    /// Its device.
    pub device_id: DeviceId,
    /// The device's bearer token.
    pub token: String,
}

/// A conversation and the indexes (in its pool) of its members.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation.
    pub id: ConversationId,
    /// Members, the creator first.
    pub members: Vec<usize>,
}

/// What the cache file holds.
#[derive(Default, Serialize, Deserialize)]
struct Cache {
    /// The server the accounts were made on; a cache of another server is not used.
    server: String,
    /// Accounts by pool name, in index order.
    users: BTreeMap<String, Vec<Account>>,
    /// Conversations by pool and shape (`pool:direct:NxP`, `pool:rooms:KxR`), members as
    /// indexes into that pool's accounts.
    conversations: BTreeMap<String, Vec<Conversation>>,
}

/// Accounts and conversations on one server, made once and reused.
pub struct Setup {
    /// The REST client of `--server`.
    client: Client,
    /// The cache file (`--accounts`), rewritten after each step that made something.
    path: PathBuf,
    /// REST calls in flight at once (`--setup-concurrency`, at least one).
    concurrency: usize,
    /// What is made so far.
    cache: Cache,
}

impl Setup {
    /// Loads the cache for `common.server` (starting afresh when it belongs to another server
    /// or its tokens no longer work, as after wiping natterd's database). A file that cannot be
    /// read starts afresh; one that is not the cache's JSON is an error rather than overwritten.
    pub async fn open(common: &Common) -> anyhow::Result<Self> {
        let client = Client::new(&common.server)?;
        let mut cache: Cache = match std::fs::read(&common.accounts) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", common.accounts.display()))?,
            Err(_) => Cache::default(),
        };
        let first = cache.users.values().flatten().next().cloned();
        let stale = match first {
            Some(account) => session(&client, &account).me().await.is_err(),
            None => false,
        };
        if cache.server != common.server || stale {
            cache = Cache {
                server: common.server.clone(),
                ..Cache::default()
            };
        }
        Ok(Self {
            client,
            path: common.accounts.clone(),
            concurrency: common.setup_concurrency.max(1),
            cache,
        })
    }

    /// Writes the cache file, so an interrupted setup resumes from what was made.
    fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_vec(&self.cache)?;
        std::fs::write(&self.path, text).with_context(|| format!("writing {}", self.path.display()))
    }

    /// The first `n` accounts of `pool`, registering and logging in the missing ones (named
    /// `nb-<pool>-<index>`). Fails when the server refuses, with a hint when its rate limits
    /// did.
    pub async fn users(&mut self, pool: &str, n: usize) -> anyhow::Result<Vec<Account>> {
        let have = self.cache.users.get(pool).map_or(0, Vec::len);
        if have < n {
            let bar = report::bar((n - have) as u64, &format!("setup: accounts ({pool})"));
            let client = &self.client;
            let made: Vec<Account> = stream::iter(have..n)
                .map(|i| {
                    let bar = bar.clone();
                    async move {
                        let account = account(client, &format!("nb-{pool}-{i}")).await;
                        bar.inc(1);
                        account
                    }
                })
                .buffered(self.concurrency)
                .try_collect()
                .await?;
            bar.finish_and_clear();
            self.cache
                .users
                .entry(pool.to_owned())
                .or_default()
                .extend(made);
            self.save()?;
        }
        Ok(self.cache.users[pool][..n].to_vec())
    }

    /// Direct conversations among the first `n` users of `pool`: user i with users i+1 ..=
    /// i+peers (mod n).
    pub async fn direct(
        &mut self,
        pool: &str,
        n: usize,
        peers: usize,
    ) -> anyhow::Result<(Vec<Account>, Vec<Conversation>)> {
        let users = self.users(pool, n).await?;
        let pairs: BTreeSet<(usize, usize)> = (0..n)
            .flat_map(|i| (1..=peers.min(n - 1)).map(move |k| (i, (i + k) % n)))
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        let key = format!("{pool}:direct:{n}x{peers}");
        let conversations = self
            .conversations(&key, &users, pairs.into_iter().map(|(a, b)| vec![a, b]))
            .await?;
        Ok((users, conversations))
    }

    /// `rooms` rooms of `k` members among the users of `pool`, each with its own members:
    /// room r holds users r·k .. (r+1)·k, so the pool needs `k * rooms` accounts.
    pub async fn rooms(
        &mut self,
        pool: &str,
        k: usize,
        rooms: usize,
    ) -> anyhow::Result<(Vec<Account>, Vec<Conversation>)> {
        let users = self.users(pool, k * rooms).await?;
        let key = format!("{pool}:rooms:{k}x{rooms}");
        let groups = (0..rooms).map(|r| (r * k..(r + 1) * k).collect());
        let conversations = self.conversations(&key, &users, groups).await?;
        Ok((users, conversations))
    }

    /// The conversations cached under `key`, or else made for `groups` (two members: direct;
    /// more: a room owned by the first, connected to the others first).
    async fn conversations(
        &mut self,
        key: &str,
        users: &[Account],
        groups: impl Iterator<Item = Vec<usize>>,
    ) -> anyhow::Result<Vec<Conversation>> {
        if let Some(done) = self.cache.conversations.get(key) {
            return Ok(done.clone());
        }
        let groups: Vec<Vec<usize>> = groups.collect();
        let links: Vec<(usize, usize)> = groups
            .iter()
            .flat_map(|g| g[1..].iter().map(|&m| (g[0], m)))
            .collect();
        let bar = report::bar(links.len() as u64, "setup: connections");
        let client = &self.client;
        stream::iter(&links)
            .map(|&(a, b)| {
                let bar = bar.clone();
                async move {
                    connect(client, &users[a], &users[b]).await?;
                    bar.inc(1);
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        bar.finish_and_clear();
        let bar = report::bar(groups.len() as u64, "setup: conversations");
        let made: Vec<Conversation> = stream::iter(groups)
            .map(|members| {
                let bar = bar.clone();
                async move {
                    let owner = session(client, &users[members[0]]);
                    let details = if let [_, peer] = members[..] {
                        owner.open_direct(users[peer].user_id).await
                    } else {
                        let ids: Vec<UserId> = members.iter().map(|&m| users[m].user_id).collect();
                        owner.create_room("natter-bench", &ids).await
                    }
                    .context("creating a conversation")?;
                    bar.inc(1);
                    anyhow::Ok(Conversation {
                        id: details.summary.id,
                        members,
                    })
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        bar.finish_and_clear();
        self.cache
            .conversations
            .insert(key.to_owned(), made.clone());
        self.save()?;
        Ok(made)
    }
}

/// The session of a cached account, resumed from its token without logging in again; its
/// calls fail with 401 once natterd forgot the token.
pub fn session(client: &Client, account: &Account) -> Session {
    Session::resume(
        client.clone(),
        account.token.clone(),
        account.user_id,
        account.device_id,
    )
}

/// Registers `username` (or finds it taken by an earlier run) and logs in a new device, with
/// the one benchmark [`PASSWORD`]; a name taken by someone else fails at the login.
async fn account(client: &Client, username: &str) -> anyhow::Result<Account> {
    match client.register(username, PASSWORD, None).await {
        Ok(_) => {}
        Err(error) if error.code() == Some(natter_proto::codes::CONFLICT) => {}
        Err(error) => return Err(hint(error)).with_context(|| format!("registering {username}")),
    }
    let session = client
        .login(username, PASSWORD, "natter-bench")
        .await
        .map_err(hint)
        .with_context(|| format!("logging in {username}"))?;
    Ok(Account {
        username: username.to_owned(),
        user_id: session.user_id(),
        device_id: session.device_id(),
        token: session.token().to_owned(),
    })
}

/// Connects two users: `a` asks, `b` asks back (which accepts). Fails when they end up in any
/// state but accepted, as when one blocked the other.
async fn connect(client: &Client, a: &Account, b: &Account) -> anyhow::Result<()> {
    let (a, b) = (session(client, a), session(client, b));
    let asked = a.request_connection(b.user_id(), None).await;
    let answered = b.request_connection(a.user_id(), None).await;
    let state = match (asked, answered) {
        (_, Ok(status)) if status.state == ConnectionState::Accepted => return Ok(()),
        (Err(error), _) | (_, Err(error)) => already_connected(&a, b.user_id(), error).await?,
        (Ok(_), Ok(status)) => status.state,
    };
    anyhow::ensure!(
        state == ConnectionState::Accepted,
        "connection between {} and {} ended {state:?}",
        a.user_id(),
        b.user_id()
    );
    Ok(())
}

/// The state of a connection after a refused request (a re-run finds it accepted already).
async fn already_connected(
    a: &Session,
    b: UserId,
    error: ClientError,
) -> anyhow::Result<ConnectionState> {
    let status = a.connection(b).await.context("checking a connection")?;
    if status.state == ConnectionState::Accepted {
        Ok(status.state)
    } else {
        Err(hint(error)).context("connecting two users")
    }
}

/// A client error, with advice when natterd's rate limits refused the setup.
fn hint(error: ClientError) -> anyhow::Error {
    if error.code() == Some(natter_proto::codes::RATE_LIMITED) {
        anyhow::Error::new(error).context(
            "natterd's rate limits refuse the setup: raise them (NATTER_LIMITS, see docs/benchmarks.md)",
        )
    } else {
        error.into()
    }
}
