//! Local accounts for the web UI: argon2id password hashes, sessions with a
//! CSRF token each, and a limit on failed logins per username and per
//! client address.

use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::casework::{Actor, Role};
use crate::domain::time::now_millis;
use crate::store::{Store, StoreError, UserRecord};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("the username or the password is wrong")]
    BadCredentials,
    #[error("too many failed logins; try again in {} minutes", .0.as_secs().div_ceil(60))]
    Throttled(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccountError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(code, _) => code,
            Self::BadCredentials => "bad_credentials",
            Self::Throttled(_) => "throttled",
            Self::Store(e) => e.code(),
        }
    }
}

/// OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const HASH_LEN: usize = 32;
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Failed logins allowed per username in one window.
pub const MAX_FAILURES: i64 = 5;
/// Failed logins allowed from one client address in one window: higher,
/// since an office's reverse proxy carries all of its people.
pub const MAX_ADDRESS_FAILURES: i64 = 50;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const SESSION_LENGTH: Duration = Duration::from_secs(8 * 3600);

fn argon2(memory_kib: u32, passes: u32) -> Result<Argon2<'static>, AccountError> {
    let params = Params::new(memory_kib, passes, 1, Some(HASH_LEN))
        .map_err(|e| AccountError::Invalid("invalid_hash", e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// `argon2id$v=19$m=19456,t=2,p=1$SALT_HEX$HASH_HEX`: the parameters travel
/// with the hash, so stronger ones can be used later without a migration.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt: [u8; 16] = rand::rng().random();
    let mut out = [0u8; HASH_LEN];
    argon2(MEMORY_KIB, PASSES)?
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .map_err(|e| AccountError::Invalid("invalid_hash", e.to_string()))?;
    Ok(format!(
        "argon2id$v=19$m={MEMORY_KIB},t={PASSES},p=1${}${}",
        hex::encode(salt),
        hex::encode(out)
    ))
}

/// Checks a password against an encoded hash, in constant time.
pub fn verify_password(password: &str, encoded: &str) -> bool {
    let parts: Vec<&str> = encoded.split('$').collect();
    let [alg, "v=19", params, salt, hash] = parts.as_slice() else {
        return false;
    };
    if *alg != "argon2id" {
        return false;
    }
    let mut m = None;
    let mut t = None;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse::<u32>().ok(),
            Some(("t", v)) => t = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (Some(m), Some(t), Ok(salt), Ok(expected)) = (m, t, hex::decode(salt), hex::decode(hash))
    else {
        return false;
    };
    let Ok(a) = argon2(m, t) else { return false };
    let mut out = vec![0u8; expected.len()];
    if a.hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    constant_time_eq(&out, &expected)
}

/// Compares every byte whatever the first difference, so the time taken
/// says nothing about how much of a hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A hash nobody's password matches, verified when the username is unknown
/// so that a wrong username takes as long as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not a password of anyone").expect("hash"));

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password: String,
    pub role: Role,
    pub office: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> AccountError {
    AccountError::Invalid(code, message.into())
}

pub fn validate_username(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim().to_ascii_lowercase();
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(invalid(
            "invalid_username",
            "a username is 3 to 32 characters of a-z, 0-9, '.', '_' and '-'",
        ))
    }
}

pub fn validate_office(raw: &str) -> Result<String, AccountError> {
    let office = raw.trim();
    if office.len() == 6 && office.bytes().all(|b| b.is_ascii_digit()) {
        Ok(office.to_owned())
    } else {
        Err(invalid(
            "invalid_office",
            "an office is the 6-digit local government code, e.g. 131016",
        ))
    }
}

pub async fn create_user(store: &Store, u: NewUser) -> Result<UserRecord, AccountError> {
    let username = validate_username(&u.username)?;
    let office = validate_office(&u.office)?;
    let display_name = u.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.chars().count() > 40 {
        return Err(invalid(
            "invalid_display_name",
            "the display name is 1 to 40 characters",
        ));
    }
    if u.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(
            "weak_password",
            format!("a password has at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let password = u.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| invalid("invalid_hash", e.to_string()))??;
    let record = UserRecord {
        username,
        display_name,
        password_hash,
        role: u.role.as_str().to_owned(),
        office,
        created_at: now_millis(),
        disabled_at: None,
    };
    store.insert_user(&record).await.map_err(|e| match e {
        StoreError::Conflict(why) => invalid("user_exists", why),
        other => other.into(),
    })?;
    Ok(record)
}

/// A logged-in session: the cookie value and the form token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub user: UserRecord,
}

/// What the store keeps of a secret token (session cookies and API
/// tokens): its SHA-256, so a database copy holds no usable token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// Checks the password and opens a session. Every attempt is counted for
/// the username and for the client address before the password is checked
/// (a success takes its count back): `MAX_FAILURES` failures for a username,
/// or `MAX_ADDRESS_FAILURES` from one address (an office's proxy carries
/// many people), within `FAILURE_WINDOW` refuse every attempt until the
/// window has passed.
pub async fn login(
    store: &Store,
    username: &str,
    password: &str,
    client: &str,
) -> Result<Session, AccountError> {
    let now = now_millis();
    let window = FAILURE_WINDOW.as_millis() as i64;
    let name = username.trim().to_ascii_lowercase();
    let user_key = format!("user:{name}");
    let addr_key = format!("addr:{client}");
    let by_user = store.count_login_attempt(&user_key, now, window).await?;
    let by_addr = store.count_login_attempt(&addr_key, now, window).await?;
    if by_user > MAX_FAILURES || by_addr > MAX_ADDRESS_FAILURES {
        tracing::warn!(user = %name, "login refused: too many failures");
        return Err(AccountError::Throttled(FAILURE_WINDOW));
    }
    let user = store.user(&name).await?;
    let encoded = user
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |u| u.password_hash.clone());
    let given = password.to_owned();
    // Each check takes 19 MiB: a burst of logins waits here instead of
    // taking the memory of the machine.
    let permit = HASHING
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let matches = tokio::task::spawn_blocking(move || verify_password(&given, &encoded))
        .await
        .unwrap_or(false);
    drop(permit);
    let user = match user {
        Some(u) if matches && u.disabled_at.is_none() => u,
        _ => {
            tracing::warn!(user = %name, "login failed");
            return Err(AccountError::BadCredentials);
        }
    };
    store.clear_login_failures(&user_key).await?;
    store.uncount_login_attempt(&addr_key).await?;
    let session = Session {
        token: random_token(),
        csrf: random_token(),
        user,
    };
    store
        .insert_session(
            &token_hash(&session.token),
            &session.user.username,
            &session.csrf,
            now,
            now + SESSION_LENGTH.as_millis() as i64,
        )
        .await?;
    tracing::info!(user = %session.user.username, "login");
    Ok(session)
}

/// At most this many password checks at once.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Who holds this session cookie, with the session's CSRF token.
pub async fn session_actor(
    store: &Store,
    token: &str,
) -> Result<Option<(Actor, String, UserRecord)>, AccountError> {
    let Some((user, csrf)) = store.session(&token_hash(token), now_millis()).await? else {
        return Ok(None);
    };
    let role = Role::parse(&user.role).map_err(|e| invalid("invalid_role", e.message))?;
    let actor = Actor {
        id: format!("user:{}", user.username),
        role,
        office: user.office.clone(),
    };
    Ok(Some((actor, csrf, user)))
}

pub async fn logout(store: &Store, token: &str) -> Result<(), AccountError> {
    store.delete_session(&token_hash(token)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
        assert!(!verify_password("x", "argon2i$v=19$m=8,t=1,p=1$00$00"));
        assert!(!verify_password("x", "garbage"));
    }

    #[test]
    fn usernames_and_offices_are_checked() {
        assert_eq!(validate_username(" Sato.K ").unwrap(), "sato.k");
        assert!(validate_username("ab").is_err());
        assert!(validate_username("佐藤").is_err());
        assert!(validate_office("131016").is_ok());
        assert!(validate_office("13101").is_err());
    }
}
