//! [`Natter`]: natter-client's `Device` for the app. Everything with rules (end-to-end
//! encryption, trust, dedup, cursors, the offline queue, the encrypted store) is natter-client's
//! Rust; this class only converts ids and results for JavaScript.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Function, Promise};
use natter_client::{ClientError, Device};
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::error::{id, to_json};
use crate::views::{self, EventView, MarkView, MessageView};

/// A device logged in from this browser, with its store in IndexedDB.
#[wasm_bindgen]
pub struct Natter {
    device: Device,
    /// Ends the live connection ([`Natter::run`]) while it runs.
    stop: RefCell<Option<oneshot::Sender<()>>>,
    /// Conversations already found in this user's list: checked once, not on every call (the
    /// list is one sealed document, with every member of every room).
    member_of: Rc<RefCell<HashSet<ConversationId>>>,
}

/// A client error as a JavaScript `Error` whose `name` is the stable code (`unauthorized`,
/// `wrong_passphrase`...), so the app can tell them apart.
fn js_error(error: &ClientError) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name(error.code_or_local());
    js.into()
}

/// Runs `work` as a promise of its result's JSON, parsed into a JavaScript value.
fn promise<T: Serialize + 'static>(
    work: impl Future<Output = Result<T, ClientError>> + 'static,
) -> Promise {
    future_to_promise(resolve(work))
}

/// The result of `work` as JSON parsed into a JavaScript value, or its error.
async fn resolve<T: Serialize>(
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<JsValue, JsValue> {
    let value = work.await.map_err(|e| js_error(&e))?;
    js_sys::JSON::parse(&to_json(&value))
}

/// Runs `work` as a promise, like [`promise`], once `conversation` is one of this user's
/// conversations; another's is refused (`not_member`) before anything is stored or sent.
fn in_conversation<T: Serialize + 'static, F: Future<Output = Result<T, ClientError>> + 'static>(
    natter: &Natter,
    conversation: ConversationId,
    work: impl FnOnce(Device) -> F + 'static,
) -> Promise {
    let device = natter.device.clone();
    let known = natter.member_of.clone();
    future_to_promise(resolve(async move {
        if !known.borrow().contains(&conversation) {
            member_of(&device, conversation).await?;
            known.borrow_mut().insert(conversation);
        }
        work(device).await
    }))
}

/// Whether `conversation` is in this device's conversation list (asking the server again for
/// one it does not list yet, such as a room made a moment ago).
async fn member_of(device: &Device, conversation: ConversationId) -> Result<(), ClientError> {
    let mut directory = device.directory().await?;
    if directory.conversation(conversation).is_none() {
        // Unreachable, the list stays as it was: a conversation it does not hold is refused.
        let _ = device.refresh_directory(&mut directory, &[]).await;
    }
    match directory.conversation(conversation) {
        Some(_) => Ok(()),
        None => Err(ClientError::NotMember(conversation)),
    }
}

/// Waits until what a write stored is in IndexedDB, so that closing the page cannot lose it.
async fn durable<T>(result: Result<T, ClientError>) -> Result<T, ClientError> {
    let value = result?;
    natter_client::flush_browser_storage().await?;
    Ok(value)
}

/// A sequence number JavaScript gives as a number: a whole number in the range it holds exactly.
fn seq_from(number: f64) -> Result<i64, JsError> {
    const SAFE: f64 = 9_007_199_254_740_991.0; // Number.MAX_SAFE_INTEGER
    if number.fract() == 0.0 && (0.0..=SAFE).contains(&number) {
        #[allow(clippy::cast_possible_truncation)] // whole and within 2^53, so exact
        Ok(number as i64)
    } else {
        Err(JsError::new(&format!(
            "not a valid seq: {number} is not a whole number from 0 to Number.MAX_SAFE_INTEGER"
        )))
    }
}

/// Parses a list of ids.
fn ids<T: std::str::FromStr>(list: Vec<String>, what: &str) -> Result<Vec<T>, JsError> {
    list.iter().map(|text| id(text, what)).collect()
}

#[wasm_bindgen]
impl Natter {
    /// Loads this origin's stores from IndexedDB; call once before `login` or `open`.
    #[wasm_bindgen(js_name = openStorage)]
    pub async fn open_storage() -> Result<(), JsValue> {
        natter_client::open_browser_storage()
            .await
            .map_err(|e| js_error(&e))
    }

    /// Creates an account on `server` (this page's origin).
    pub async fn register(
        server: String,
        username: String,
        password: String,
        display_name: Option<String>,
    ) -> Result<String, JsValue> {
        let client = natter_client::Client::new(&server).map_err(|e| js_error(&e))?;
        client
            .register(&username, &password, display_name.as_deref())
            .await
            .map(|user| user.to_string())
            .map_err(|e| js_error(&e))
    }

    /// Logs in as a new device of this browser, with its store `store` locked by `passphrase`.
    pub async fn login(
        server: String,
        username: String,
        password: String,
        device_name: String,
        store: String,
        passphrase: String,
    ) -> Result<Natter, JsValue> {
        let device = Device::login(
            &server,
            &username,
            &password,
            &device_name,
            store.as_ref(),
            &passphrase,
        )
        .await
        .map_err(|e| js_error(&e))?;
        Ok(Self::with(device))
    }

    /// Opens the device that logged in earlier in this browser.
    pub async fn open(store: String, passphrase: String) -> Result<Natter, JsValue> {
        let device = Device::open(store.as_ref(), &passphrase)
            .await
            .map_err(|e| js_error(&e))?;
        Ok(Self::with(device))
    }

    /// Forgets the store `store` in this browser (after `logout`, or a login the server
    /// forgot); resolves once IndexedDB no longer holds it.
    #[wasm_bindgen(js_name = removeStore)]
    pub async fn remove_store(store: String) -> Result<(), JsValue> {
        natter_client::remove_store(store.as_ref());
        natter_client::flush_browser_storage()
            .await
            .map_err(|e| js_error(&e))
    }

    fn with(device: Device) -> Self {
        Self {
            device,
            stop: RefCell::new(None),
            member_of: Rc::default(),
        }
    }

    /// This user's id.
    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.device.user_id().to_string()
    }

    /// This device's id.
    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.device.device_id().to_string()
    }

    /// The username this device logged in with.
    pub fn username(&self) -> Promise {
        let device = self.device.clone();
        promise(async move { device.username().await })
    }

    /// Stays connected, calling `on_event` with each live event (`{type: ...}`), until
    /// [`Natter::stop`]; rejects when the server no longer accepts this device.
    pub fn run(&self, on_event: Function) -> Promise {
        let (stop, stopped) = oneshot::channel();
        if let Some(previous) = self.stop.replace(Some(stop)) {
            let _ = previous.send(());
        }
        let (events, mut received) = mpsc::channel(64);
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = received.recv().await {
                let view = EventView::from(event);
                if let Ok(value) = js_sys::JSON::parse(&to_json(&view)) {
                    let _ = on_event.call1(&JsValue::NULL, &value);
                }
            }
        });
        let device = self.device.clone();
        promise(async move {
            device
                .run(events, async {
                    let _ = stopped.await;
                })
                .await
        })
    }

    /// Ends the live connection.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Brings names, connections and the conversation list up to date from the server (the
    /// members of `open` too), and returns the conversations.
    pub fn refresh(&self, open: Option<String>) -> Result<Promise, JsError> {
        let open: Option<ConversationId> = open.map(|c| id(&c, "conversation id")).transpose()?;
        let device = self.device.clone();
        Ok(promise(async move {
            let mut directory = device.directory().await?;
            device
                .refresh_directory(&mut directory, open.as_slice())
                .await?;
            Ok(views::conversations(&directory, device.user_id()))
        }))
    }

    /// The conversations as last seen, with their titles, members and unread counts.
    pub fn conversations(&self) -> Promise {
        let device = self.device.clone();
        promise(async move {
            let directory = device.directory().await?;
            Ok(views::conversations(&directory, device.user_id()))
        })
    }

    /// Everyone this device knows of, with the names they are shown by.
    pub fn people(&self) -> Promise {
        let device = self.device.clone();
        promise(async move { Ok(views::people(&device.directory().await?)) })
    }

    /// Fetches the profiles of `users` again (senders shown), and returns everyone known.
    #[wasm_bindgen(js_name = refreshPeople)]
    pub fn refresh_people(&self, users: Vec<String>) -> Result<Promise, JsError> {
        let users: Vec<UserId> = ids(users, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            let mut directory = device.directory().await?;
            device.refresh_people(&mut directory, &users).await?;
            Ok(views::people(&directory))
        }))
    }

    /// The newest `limit` messages of a conversation, oldest first.
    pub fn messages(&self, conversation: &str, limit: usize) -> Result<Promise, JsError> {
        let conversation = id(conversation, "conversation id")?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move {
                let messages = device.messages(conversation, limit).await?;
                Ok(messages
                    .into_iter()
                    .map(MessageView::from)
                    .collect::<Vec<_>>())
            },
        ))
    }

    /// The texts queued for a conversation and not yet acked, oldest first, as
    /// `{client_msg_id, text}`.
    pub fn pending(&self, conversation: &str) -> Result<Promise, JsError> {
        let conversation: ConversationId = id(conversation, "conversation id")?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move {
                let queued = device.queued().await?;
                Ok(queued
                    .into_iter()
                    .filter_map(|item| match item {
                        natter_client::Queued::Send {
                            conversation_id,
                            client_msg_id,
                            text,
                            ..
                        } if conversation_id == conversation => Some(
                            serde_json::json!({ "client_msg_id": client_msg_id, "text": text }),
                        ),
                        _ => None,
                    })
                    .collect::<Vec<_>>())
            },
        ))
    }

    /// Searches this device's messages (all conversations, or one).
    pub fn search(&self, query: String, conversation: Option<String>) -> Result<Promise, JsError> {
        let conversation = conversation
            .map(|c| id(&c, "conversation id"))
            .transpose()?;
        let device = self.device.clone();
        Ok(promise(async move {
            let found = device.search(&query, conversation, None, 100).await?;
            Ok(found.into_iter().map(MessageView::from).collect::<Vec<_>>())
        }))
    }

    /// Queues a text for a conversation; resolves to its `client_msg_id` once the queue is in
    /// IndexedDB. It goes out at once when connected, else at the next connection (of this
    /// page or the next one opened), exactly once.
    #[wasm_bindgen(js_name = sendText)]
    pub fn send_text(&self, conversation: &str, text: String) -> Result<Promise, JsError> {
        let conversation = id(conversation, "conversation id")?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move { durable(device.send_text(conversation, &text).await).await },
        ))
    }

    /// Marks a conversation read up to `seq` (a number: seqs stay far below 2^53); resolves once
    /// the queue is in IndexedDB.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, conversation: &str, seq: f64) -> Result<Promise, JsError> {
        let conversation = id(conversation, "conversation id")?;
        let seq = seq_from(seq)?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move { durable(device.mark_read(conversation, seq).await).await },
        ))
    }

    /// Tells the conversation this user is (not) typing, while connected.
    pub fn typing(&self, conversation: &str, typing: bool) -> Result<(), JsError> {
        self.device
            .typing(id(conversation, "conversation id")?, typing);
        Ok(())
    }

    /// How far each other member got in a conversation (`{user_id, delivered_seq, read_seq}`),
    /// caught up with the server when it is reachable.
    pub fn marks(&self, conversation: &str, members: Vec<String>) -> Result<Promise, JsError> {
        let conversation = id(conversation, "conversation id")?;
        let members: Vec<UserId> = ids(members, "user id")?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move {
                let _ = device.catch_up_receipts(conversation).await;
                let marks = device.member_receipts(conversation, &members).await?;
                Ok(marks
                    .into_iter()
                    .map(|(user_id, delivered_seq, read_seq)| MarkView {
                        user_id,
                        delivered_seq,
                        read_seq,
                    })
                    .collect::<Vec<_>>())
            },
        ))
    }

    /// This user's read cursor in a conversation (everything up to it was read here).
    #[wasm_bindgen(js_name = readUpTo)]
    pub fn read_up_to(&self, conversation: &str) -> Result<Promise, JsError> {
        let conversation = id(conversation, "conversation id")?;
        Ok(in_conversation(
            self,
            conversation,
            move |device| async move { Ok(device.cursors(conversation).await?.1) },
        ))
    }

    /// Connections, requests both ways and blocks (natter-proto's `ConnectionsResponse`).
    pub fn connections(&self) -> Promise {
        let device = self.device.clone();
        promise(async move { device.session().connections().await })
    }

    /// Finds a user by username (`UserLookup`).
    pub fn lookup(&self, username: String) -> Promise {
        let device = self.device.clone();
        promise(async move { device.session().lookup(&username).await })
    }

    /// Asks to connect with a user, or accepts their request.
    #[wasm_bindgen(js_name = requestConnection)]
    pub fn request_connection(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            device.session().request_connection(user, None).await
        }))
    }

    /// Accepts or rejects a user's request.
    #[wasm_bindgen(js_name = answerRequest)]
    pub fn answer_request(&self, user: &str, accept: bool) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            device.session().answer_request(user, accept, None).await
        }))
    }

    /// Ends a connection (or withdraws a request).
    #[wasm_bindgen(js_name = removeConnection)]
    pub fn remove_connection(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            device.session().remove_connection(user, None).await
        }))
    }

    /// Blocks (or unblocks) a user: their messages stay hidden here, and the server stops them.
    /// Resolves once the queue is in IndexedDB.
    pub fn block(&self, user: &str, block: bool) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            durable(device.block(user, block).await).await
        }))
    }

    /// Opens (or finds) the direct conversation with a connection.
    #[wasm_bindgen(js_name = openDirect)]
    pub fn open_direct(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(
            async move { device.session().open_direct(user).await },
        ))
    }

    /// Creates a room with connections as members.
    #[wasm_bindgen(js_name = createRoom)]
    pub fn create_room(&self, name: String, members: Vec<String>) -> Result<Promise, JsError> {
        let members: Vec<UserId> = ids(members, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            device.session().create_room(&name, &members).await
        }))
    }

    /// Adds connections to a room.
    #[wasm_bindgen(js_name = addMembers)]
    pub fn add_members(&self, room: &str, users: Vec<String>) -> Result<Promise, JsError> {
        let room = id(room, "conversation id")?;
        let users: Vec<UserId> = ids(users, "user id")?;
        Ok(in_conversation(self, room, move |device| async move {
            device.session().add_members(room, &users).await
        }))
    }

    /// Removes a member from a room; removing oneself leaves it.
    #[wasm_bindgen(js_name = removeMember)]
    pub fn remove_member(&self, room: &str, user: &str) -> Result<Promise, JsError> {
        let room = id(room, "conversation id")?;
        let user = id(user, "user id")?;
        Ok(in_conversation(self, room, move |device| async move {
            device.session().remove_member(room, user).await
        }))
    }

    /// A user's devices as this device judges them (`{device_id, name, ed25519, signed}`).
    pub fn devices(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move { device.device_list(user).await }))
    }

    /// The safety number to compare with a contact (60 digits).
    #[wasm_bindgen(js_name = safetyNumber)]
    pub fn safety_number(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move { device.safety_number(user).await }))
    }

    /// Marks a contact verified after comparing the safety number; resolves to that number.
    #[wasm_bindgen(js_name = confirmVerified)]
    pub fn confirm_verified(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move { device.confirm_verified(user).await }))
    }

    /// How far this device trusts a user's identity (`unknown`, `pinned`, `verified`...).
    #[wasm_bindgen(js_name = trustLevel)]
    pub fn trust_level(&self, user: &str) -> Result<Promise, JsError> {
        let user = id(user, "user id")?;
        let device = self.device.clone();
        Ok(promise(async move { device.trust_level(user).await }))
    }

    /// The recovery key made with this account's identity, once, to be written down.
    #[wasm_bindgen(js_name = takeRecoveryKey)]
    pub fn take_recovery_key(&self) -> Promise {
        let device = self.device.clone();
        promise(async move { device.take_recovery_key().await })
    }

    /// Whether this device is approved (holds the identity's keys and may send).
    #[wasm_bindgen(js_name = isApproved)]
    pub fn is_approved(&self) -> Promise {
        let device = self.device.clone();
        promise(async move { Ok(device.is_approved().await) })
    }

    /// Approves this device with the recovery key; resolves to how many earlier messages
    /// became readable.
    pub fn recover(&self, recovery_key: String) -> Promise {
        let device = self.device.clone();
        promise(async move { Ok(device.recover(&recovery_key).await?.len()) })
    }

    /// Starts approving another device of this user from this one; resolves to the flow id.
    #[wasm_bindgen(js_name = approveDevice)]
    pub fn approve_device(&self, other: &str) -> Result<Promise, JsError> {
        let other: DeviceId = id(other, "device id")?;
        let device = self.device.clone();
        Ok(promise(async move { device.approve_device(other).await }))
    }

    /// Confirms that both devices show the same code.
    #[wasm_bindgen(js_name = confirmApproval)]
    pub fn confirm_approval(&self, flow_id: String) -> Promise {
        let device = self.device.clone();
        promise(async move { device.confirm_approval(&flow_id).await })
    }

    /// Removes another device of this user (an approved one needs the recovery key, and its
    /// keys are rotated); resolves to the devices kept.
    #[wasm_bindgen(js_name = removeDevice)]
    pub fn remove_device(
        &self,
        other: &str,
        recovery_key: Option<String>,
    ) -> Result<Promise, JsError> {
        let other: DeviceId = id(other, "device id")?;
        let device = self.device.clone();
        Ok(promise(async move {
            let removal = device.remove_device(other, recovery_key.as_deref()).await?;
            Ok(removal.kept)
        }))
    }

    /// Every notice kept (safety numbers changed, devices left out, new devices, members
    /// added), as `{notice, text}`.
    pub fn notices(&self) -> Promise {
        let device = self.device.clone();
        promise(async move {
            Ok(device
                .notices()
                .await?
                .into_iter()
                .map(|notice| EventView::Notice {
                    text: notice.to_string(),
                    notice,
                })
                .collect::<Vec<_>>())
        })
    }

    /// Logs this device out: the server forgets its token and keys. Remove the store after.
    pub fn logout(&self) -> Promise {
        self.stop();
        let device = self.device.clone();
        promise(async move { device.logout().await })
    }
}
