//! [`Device`]: a logged-in device with its local store, end-to-end encryption and queue.

use std::path::Path;
use std::sync::Arc;

use natter_crypto::{DeviceAccount, RotationPolicy, Secrets, StoreKey};
use natter_proto::ws::ClientFrame;
use natter_proto::{ConversationId, DeviceId, UserId};
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc};

use crate::store::{NewKeyring, Queued, Store, StoredMessage, location};
use crate::trust::Notice;
use crate::{Client, ClientError, Session};

/// What is kept behind the device's lock: the store and the Olm account. One lock keeps
/// every ratchet change and its write to disk together.
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) account: DeviceAccount,
    /// The identity's private keys and the backup key, once this device is approved.
    pub(crate) secrets: Option<Secrets>,
    /// Notices recorded since the live connection last reported them.
    pub(crate) fresh_notices: Vec<Notice>,
}

/// Device lists kept between sends (`device_lists`): `None` for a user the server does not
/// show this user.
pub(crate) type DeviceLists = std::sync::Mutex<
    std::collections::HashMap<UserId, Option<natter_proto::keys::DevicesResponse>>,
>;

pub(crate) struct Inner {
    pub(crate) session: Session,
    pub(crate) key: StoreKey,
    pub(crate) state: Mutex<State>,
    /// Woken when something is queued, so a live connection sends it at once.
    pub(crate) wake: Notify,
    /// The live connection's frame queue, while one is open (typing indicators).
    pub(crate) live: std::sync::Mutex<Option<mpsc::UnboundedSender<ClientFrame>>>,
    pub(crate) policy: RotationPolicy,
    /// Approvals of devices of this user in progress.
    pub(crate) approvals: crate::approval::Flows,
    /// Device lists kept between sends.
    pub(crate) device_lists: DeviceLists,
}

/// A logged-in device: everything a person does, end-to-end encrypted, with a local store
/// (messages, search, cursors, blocks) and a queue that works while the server is away.
///
/// Cloning is cheap and shares the device.
///
/// ```no_run
/// # async fn demo(conversation: natter_proto::ConversationId) -> Result<(), natter_client::ClientError> {
/// let path = std::path::Path::new("/tmp/alice.db");
/// let alice = natter_client::Device::login("http://127.0.0.1:8080", "alice", "correct horse",
///     "laptop", path, "store passphrase").await?;
/// alice.send_text(conversation, "hello").await?;
/// alice.sync().await?; // sends the queue, receives and decrypts what arrived
/// for message in alice.messages(conversation, 50).await? {
///     println!("{}: {:?}", message.sender_id, message.body);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Logs in as a new device, creates its store at `path` (encrypted at rest under a key
    /// wrapped with `passphrase`), makes its identity keys and publishes them with one-time keys.
    /// The store is created only once the server accepted the login, and removed again if
    /// publishing the keys fails: a failed login leaves no file behind.
    ///
    /// The account's first device also creates the user's identity and a recovery key
    /// ([`Device::take_recovery_key`]); a later device must be approved before it can send or
    /// be given keys ([`Device::recover`]).
    ///
    /// # Errors
    /// A wrong password (`unauthorized`), an empty passphrase, an unreachable server, a store
    /// that already holds a login, or a store that cannot be written.
    pub async fn login(
        server: &str,
        username: &str,
        password: &str,
        device_name: &str,
        path: &Path,
        passphrase: &str,
    ) -> Result<Self, ClientError> {
        if location::exists(path) {
            return Err(ClientError::StoreInUse(path.to_owned()));
        }
        let keyring = NewKeyring::new(passphrase)?;
        let session = Client::new(server)?
            .login(username, password, device_name)
            .await?;
        let device = match Self::create(path, keyring, server, username, session.clone()) {
            Ok(device) => device,
            Err(error) => {
                let _ = session.logout().await;
                return Err(error);
            }
        };
        if let Err(error) = device.publish_keys(true).await {
            drop(device);
            let _ = session.logout().await;
            location::remove(path);
            return Err(error);
        }
        device.join_identity().await?;
        Ok(device)
    }

    /// Creates the store of a device the server just accepted and writes its login into it.
    fn create(
        path: &Path,
        keyring: NewKeyring,
        server: &str,
        username: &str,
        session: Session,
    ) -> Result<Self, ClientError> {
        let store = Store::create(path, keyring)?;
        let key = store.pickle_key();
        let account = DeviceAccount::new();
        let written = [
            ("server", server),
            ("username", username),
            ("token", session.token()),
            ("user_id", &*session.user_id().to_string()),
            ("account", &*account.pickle(&key)),
            ("device_id", &*session.device_id().to_string()),
        ]
        .into_iter()
        .try_for_each(|(name, value)| store.set(name, value));
        if let Err(error) = written {
            drop(store);
            location::remove(path);
            return Err(error);
        }
        // On failure the store was dropped (closed) inside.
        let device = Self::assemble(session, key, store, account);
        if device.is_err() {
            location::remove(path);
        }
        device
    }

    /// Locks this device's store with a new passphrase. The data in it is not rewritten: the
    /// random key that encrypts it is wrapped again, so the old passphrase opens it no more
    /// (a copy of the store taken before still opens with the old one).
    ///
    /// # Errors
    /// [`ClientError::WrongPassphrase`] when `old` is not the current passphrase; an empty
    /// `new`.
    pub async fn change_passphrase(&self, old: &str, new: &str) -> Result<(), ClientError> {
        self.lock().await.store.change_passphrase(old, new)
    }

    /// Opens the store of a device that logged in earlier.
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`] for a store without a login,
    /// [`ClientError::WrongPassphrase`], or an unreadable store.
    pub async fn open(path: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !location::exists(path) {
            return Err(ClientError::NotLoggedIn);
        }
        let store = Store::open(path, passphrase)?;
        let field = |name: &str| store.get(name)?.ok_or(ClientError::NotLoggedIn);
        let key = store.pickle_key();
        let account = DeviceAccount::from_pickle(&field("account")?, &key)?;
        let user_id = field("user_id")?
            .parse()
            .map_err(|_| ClientError::NotLoggedIn)?;
        let device_id = field("device_id")?
            .parse()
            .map_err(|_| ClientError::NotLoggedIn)?;
        let session = Session::resume(
            Client::new(&field("server")?)?,
            field("token")?,
            user_id,
            device_id,
        );
        Self::assemble(session, key, store, account)
    }

    fn assemble(
        session: Session,
        key: StoreKey,
        store: Store,
        account: DeviceAccount,
    ) -> Result<Self, ClientError> {
        let mut state = State {
            store,
            account,
            secrets: None,
            fresh_notices: Vec::new(),
        };
        state.load_secrets()?;
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                key,
                state: Mutex::new(state),
                wake: Notify::new(),
                live: std::sync::Mutex::new(None),
                policy: RotationPolicy::default(),
                approvals: crate::approval::Flows::default(),
                device_lists: DeviceLists::default(),
            }),
        })
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().await
    }

    /// The REST session, for everything that is not end-to-end (connections, rooms).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The logged-in user.
    pub fn user_id(&self) -> UserId {
        self.inner.session.user_id()
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.inner.session.device_id()
    }

    /// The username this device logged in with.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn username(&self) -> Result<String, ClientError> {
        Ok(self.lock().await.store.get("username")?.unwrap_or_default())
    }

    /// Queues a text message for a conversation and returns its `client_msg_id`. It is
    /// encrypted and sent by the next [`Device::sync`] or by a running [`Device::run`], and
    /// resent with the same id until the server acks it.
    ///
    /// # Errors
    /// An empty text or one over 1,000 characters ([`ClientError::Crypto`]), or a device not
    /// approved yet ([`ClientError::NotApproved`]), checked before anything is queued.
    pub async fn send_text(
        &self,
        conversation: ConversationId,
        text: &str,
    ) -> Result<String, ClientError> {
        natter_crypto::envelope::check_text(text)?;
        if !self.is_approved().await {
            return Err(ClientError::NotApproved);
        }
        let client_msg_id = uuid::Uuid::now_v7().to_string();
        self.enqueue(&Queued::Send {
            conversation_id: conversation,
            client_msg_id: client_msg_id.clone(),
            text: text.to_owned(),
            ciphertext: None,
        })
        .await?;
        Ok(client_msg_id)
    }

    /// Marks everything up to `seq` in a conversation as read (queued like a send), if that
    /// is ahead of this device's read cursor. Returns whether it queued the mark.
    ///
    /// # Errors
    /// The store cannot be read or written.
    pub async fn mark_read(
        &self,
        conversation: ConversationId,
        seq: i64,
    ) -> Result<bool, ClientError> {
        if seq <= self.cursors(conversation).await?.1 {
            return Ok(false);
        }
        self.enqueue(&Queued::Read {
            conversation_id: conversation,
            seq,
        })
        .await?;
        Ok(true)
    }

    /// Blocks or unblocks a user. Their messages are hidden locally at once; the server is
    /// told in queue order, once reachable.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn block(&self, user: UserId, block: bool) -> Result<(), ClientError> {
        self.lock().await.store.set_blocked(user, block)?;
        self.enqueue(&Queued::Block {
            user_id: user,
            block,
        })
        .await
    }

    /// Whether this device has `user` on its block list.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn is_blocked(&self, user: UserId) -> Result<bool, ClientError> {
        self.lock().await.store.is_blocked(user)
    }

    async fn enqueue(&self, item: &Queued) -> Result<(), ClientError> {
        self.lock().await.store.enqueue(item)?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// What is still queued, oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn queued(&self) -> Result<Vec<Queued>, ClientError> {
        let outbox = self.lock().await.store.outbox()?;
        Ok(outbox.into_iter().map(|(_, item)| item).collect())
    }

    /// Tells the other members this user is (not) typing, if a live connection is open.
    pub fn typing(&self, conversation: ConversationId, typing: bool) {
        let live = self
            .inner
            .live
            .lock()
            .expect("the live sender lock is never poisoned");
        if let Some(live) = live.as_ref() {
            let _ = live.send(ClientFrame::Typing {
                conversation_id: conversation,
                typing,
            });
        }
    }

    /// The newest `limit` messages of a conversation this device has, oldest first
    /// (blocked users' messages hidden).
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn messages(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        self.lock().await.store.messages(conversation, limit)
    }

    /// Full-text search over this device's decrypted messages, newest first; the server never
    /// sees the terms.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn search(
        &self,
        query: &str,
        conversation: Option<ConversationId>,
        sender: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        self.lock()
            .await
            .store
            .search(query, conversation, sender, limit)
    }

    /// This device's (delivered, read) cursors in a conversation.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn cursors(&self, conversation: ConversationId) -> Result<(i64, i64), ClientError> {
        self.lock().await.store.cursors(conversation)
    }

    /// How far the other members got: the highest (delivered, read) seq among them, from the
    /// receipts this device saw. A message of mine at or below them is delivered / read.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn receipts(&self, conversation: ConversationId) -> Result<(i64, i64), ClientError> {
        self.lock()
            .await
            .store
            .receipts(conversation, self.user_id())
    }

    /// Logs this device out on the server; the local store stays (delete its file to forget).
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.inner.session.clone().logout().await
    }
}
