//! The account service: registration, login (each login is a device), logout and profiles.

use natter_proto::accounts::{
    CreateAccountRequest, CreateSessionRequest, Presence, Profile, SessionResponse,
    UpdateProfileRequest,
};
use natter_proto::limits::{
    AVATAR_URL_MAX, DEVICE_NAME_MAX, DISPLAY_NAME_MAX, PASSWORD_MAX_BYTES, PASSWORD_MIN,
    USERNAME_MAX, USERNAME_MIN, is_valid_username,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use natter_proto::close::CloseCode;
use natter_proto::codes;
use natter_proto::{DeviceId, UserId};

use crate::close;
use crate::connections::profile;
use crate::credentials::{Passwords, hash_token, new_token};
use crate::fanout::{Bus, Outbound};
use crate::ratelimit::{Kind, RateLimits};
use crate::service_error::ServiceError;
use crate::store::{NewDevice, NewUser, Store, StoreError};

/// The account service, holding what it works with.
pub struct Accounts {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    limits: Arc<RateLimits>,
    bus: Arc<dyn Bus>,
    presence: crate::presence::Presence,
    /// How long a login's token lasts past its last use.
    token_ttl: Duration,
}

/// What a user who may not see another is told: the same whether or not that user exists.
const HIDDEN: ServiceError = ServiceError::NotFound("no such user, or you are not connected");

impl Accounts {
    /// The service over `store`, hashing with `passwords`, charging `limits`, telling devices
    /// through `bus`, answering presence from `presence`; logins last `token_ttl` past their
    /// last use.
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        limits: Arc<RateLimits>,
        bus: Arc<dyn Bus>,
        presence: crate::presence::Presence,
        token_ttl: Duration,
    ) -> Self {
        Self {
            store,
            passwords,
            limits,
            bus,
            presence,
            token_ttl,
        }
    }

    /// Registers a user.
    ///
    /// # Errors
    /// Invalid username, password or display name; the username is taken (any case).
    pub async fn register(
        &self,
        source: IpAddr,
        request: CreateAccountRequest,
    ) -> Result<UserId, ServiceError> {
        self.limits
            .check(Kind::AddressRegistrations, &source.to_string(), 1.0)
            .await?;
        if !is_valid_username(&request.username) {
            return Err(ServiceError::Invalid(format!(
                "a username has {USERNAME_MIN} to {USERNAME_MAX} ASCII letters, digits, '_', '.' or '-', \
             and starts with a letter or digit"
            )));
        }
        if request.password.chars().count() < PASSWORD_MIN
            || request.password.len() > PASSWORD_MAX_BYTES
        {
            return Err(ServiceError::Invalid(format!(
                "a password has at least {PASSWORD_MIN} characters and at most {PASSWORD_MAX_BYTES} bytes"
            )));
        }
        let display_name = match request.display_name {
            Some(name) => check_display_name(name)?,
            None => request.username.clone(),
        };
        let id = UserId::new();
        let password_hash = self.passwords.hash(request.password).await?;
        let user = NewUser {
            id,
            username: &request.username,
            password_hash: &password_hash,
            display_name: &display_name,
            created_at: crate::clock::now_ms(),
        };
        match self.store.create_user(&user).await {
            Ok(()) => Ok(id),
            Err(StoreError::Conflict(_)) => {
                Err(ServiceError::Conflict("this username is taken".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Logs in: checks the password and creates a device with a fresh token.
    ///
    /// # Errors
    /// Wrong username or password (the same error for both); an invalid device name.
    pub async fn login(
        &self,
        source: IpAddr,
        request: CreateSessionRequest,
    ) -> Result<SessionResponse, ServiceError> {
        // Both limits, in one charge, come before argon2, which is what a flood of logins would
        // exhaust. The account is keyed by a hash of the name, so names that exist and names that
        // don't are limited alike (no enumeration) and no username reaches a log line.
        let account = hash_token(&request.username.to_lowercase());
        self.limits
            .charge(&[
                (Kind::AddressLogins, &source.to_string(), 1.0),
                (Kind::AccountLogins, &account, 1.0),
            ])
            .await?;
        let device_name = request.device_name.trim();
        if device_name.is_empty()
            || device_name.chars().count() > DEVICE_NAME_MAX
            || has_control(device_name)
        {
            return Err(ServiceError::Invalid(format!(
                "a device name has 1 to {DEVICE_NAME_MAX} characters and no control characters"
            )));
        }
        // No account has an invalid name; looking one up could only fail (PostgreSQL refuses NUL).
        let found = if natter_proto::limits::is_valid_username(&request.username) {
            self.store
                .user_by_username(&request.username.to_lowercase())
                .await?
        } else {
            None
        };
        let (user, stored_hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let password = request.password.chars().take(PASSWORD_MAX_BYTES).collect();
        let (true, Some(user)) = (self.passwords.verify(password, stored_hash).await?, user) else {
            return Err(ServiceError::BadCredentials);
        };
        if user.suspended {
            return Err(ServiceError::Suspended);
        }
        let token = new_token();
        let now = crate::clock::now_ms();
        let expires_at = crate::credentials::expires_from_now(self.token_ttl);
        let device = NewDevice {
            id: DeviceId::new(),
            user_id: user.id,
            name: device_name,
            token_hash: &hash_token(&token),
            created_at: now,
            expires_at,
        };
        self.store.create_device(&device).await?;
        crate::device_lists::announce(self.store.as_ref(), self.bus.as_ref(), user.id).await;
        Ok(SessionResponse {
            token,
            user_id: user.id,
            device_id: device.id,
            expires_at,
        })
    }

    /// Checks `user`'s password again before a grave change (an identity reset). Spends the same
    /// allowance as a login, so it cannot be used to guess the password faster.
    ///
    /// # Errors
    /// [`ServiceError::Denied`] (`wrong_password`, 403) for a wrong password; rate limited like
    /// logins.
    pub async fn check_password(&self, user: UserId, password: &str) -> Result<(), ServiceError> {
        let record = self.store.user(user).await?;
        let username = record
            .map(|r| r.username.to_lowercase())
            .unwrap_or_default();
        self.limits
            .charge(&[(Kind::AccountLogins, &hash_token(&username), 1.0)])
            .await?;
        let stored_hash = self
            .store
            .user_by_username(&username)
            .await?
            .map(|(_, hash)| hash);
        let password = password.chars().take(PASSWORD_MAX_BYTES).collect();
        if self.passwords.verify(password, stored_hash).await? {
            Ok(())
        } else {
            // Not `unauthorized`: the token is fine, and a client must not log out over it.
            Err(ServiceError::Denied {
                code: codes::WRONG_PASSWORD,
                detail: "wrong password".into(),
            })
        }
    }

    /// Removes one of `user`'s devices (logging it out): its token stops working, its keys are
    /// removed, so nobody encrypts to it any more, and its open connections are closed on every
    /// node. False if the user has no such device.
    ///
    /// # Errors
    /// The store fails.
    pub async fn remove_device(
        &self,
        user: UserId,
        device: DeviceId,
    ) -> Result<bool, ServiceError> {
        if !self.store.delete_device(user, device).await? {
            return Ok(false);
        }
        self.bus.publish_to_device(
            user,
            device,
            Outbound::Close(CloseCode::Policy, close::SIGNED_OUT),
        );
        crate::device_lists::announce(self.store.as_ref(), self.bus.as_ref(), user).await;
        Ok(true)
    }

    /// A user's profile, if `viewer` may see it (themselves or connected); otherwise not found, so
    /// strangers cannot tell a hidden profile from a missing one.
    ///
    /// # Errors
    /// Not found or hidden; the store fails.
    pub async fn profile_for(
        &self,
        viewer: UserId,
        target: UserId,
    ) -> Result<Profile, ServiceError> {
        if !crate::visibility::can_see(self.store.as_ref(), viewer, target).await? {
            return Err(HIDDEN);
        }
        self.store.user(target).await?.map(profile).ok_or(HIDDEN)
    }

    /// Whether `target` is online, for a viewer allowed to see them (as for [`Self::profile_for`]).
    ///
    /// # Errors
    /// `NotFound` when the viewer may not see the target; the store fails.
    pub async fn presence_for(
        &self,
        viewer: UserId,
        target: UserId,
    ) -> Result<Presence, ServiceError> {
        if !crate::visibility::can_see(self.store.as_ref(), viewer, target).await? {
            return Err(HIDDEN);
        }
        Ok(Presence {
            user_id: target,
            online: self.presence.is_online(target).await,
        })
    }

    /// Changes the caller's display name and/or avatar.
    ///
    /// # Errors
    /// An invalid name or URL.
    pub async fn update_profile(
        &self,
        user: UserId,
        request: UpdateProfileRequest,
    ) -> Result<Profile, ServiceError> {
        let display_name = request.display_name.map(check_display_name).transpose()?;
        let avatar_url = request.avatar_url.map(check_avatar_url).transpose()?;
        self.store
            .update_profile(
                user,
                display_name.as_deref(),
                avatar_url.as_ref().map(Option::as_deref),
            )
            .await?;
        self.profile_for(user, user).await
    }
}

/// A display name as stored: trimmed, 1 to [`DISPLAY_NAME_MAX`] characters, no control
/// characters.
///
/// # Errors
/// [`ServiceError::Invalid`] for any other name.
pub fn check_display_name(name: String) -> Result<String, ServiceError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > DISPLAY_NAME_MAX || has_control(&name) {
        return Err(ServiceError::Invalid(format!(
            "a display name has 1 to {DISPLAY_NAME_MAX} characters and no control characters"
        )));
    }
    Ok(name)
}

/// An avatar URL as stored: `https://` or `http://`, no spaces or control characters, at most
/// [`AVATAR_URL_MAX`] bytes. An empty URL clears the avatar (`None`).
///
/// # Errors
/// [`ServiceError::Invalid`] for any other URL.
pub fn check_avatar_url(url: String) -> Result<Option<String>, ServiceError> {
    if url.is_empty() {
        return Ok(None);
    }
    let valid = url.len() <= AVATAR_URL_MAX
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(ServiceError::Invalid(format!(
            "an avatar URL starts with https:// or http://, has no spaces and at most {AVATAR_URL_MAX} bytes"
        )));
    }
    Ok(Some(url))
}

/// Whether `text` holds a control character.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}
