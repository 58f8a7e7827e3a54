//! Local user accounts, their sessions and failed-login counters.

use super::{Priority, Result, Store, StoreError, get_i64, get_opt_i64, get_str, q};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub display_name: String,
    /// The encoded argon2id hash (never shown).
    pub password_hash: String,
    pub role: String,
    pub office: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        username: get_str(r, "username")?,
        display_name: get_str(r, "display_name")?,
        password_hash: get_str(r, "password_hash")?,
        role: get_str(r, "role")?,
        office: get_str(r, "office")?,
        created_at: get_i64(r, "created_at")?,
        disabled_at: get_opt_i64(r, "disabled_at")?,
    })
}

const USER_COLUMNS: &str =
    "u.username, u.display_name, u.password_hash, u.role, u.office, u.created_at, u.disabled_at";

impl Store {
    /// Adds a user; an existing username is a `Conflict`.
    pub async fn insert_user(&self, u: &UserRecord) -> Result<()> {
        let done = q(
            "INSERT INTO users (username, display_name, password_hash, role, office, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING"
                .to_owned(),
        )
        .bind(u.username.clone())
        .bind(u.display_name.clone())
        .bind(u.password_hash.clone())
        .bind(u.role.clone())
        .bind(u.office.clone())
        .bind(u.created_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "user {} exists already",
                u.username
            )));
        }
        Ok(())
    }

    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        q(format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"
        ))
        .bind(username.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        q(format!(
            "SELECT {USER_COLUMNS} FROM users u ORDER BY u.office, u.username"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    pub async fn set_user_disabled(&self, username: &str, at: Option<i64>) -> Result<()> {
        let mut tx = self.begin(Priority::Interactive).await?;
        let done = q("UPDATE users SET disabled_at = $1 WHERE username = $2".to_owned())
            .bind(at)
            .bind(username.to_owned())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        if at.is_some() {
            q("DELETE FROM sessions WHERE username = $1".to_owned())
                .bind(username.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        username: &str,
        csrf_token: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        q(
            "INSERT INTO sessions (token_hash, username, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)"
                .to_owned(),
        )
        .bind(token_hash.to_owned())
        .bind(username.to_owned())
        .bind(csrf_token.to_owned())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live session's user and CSRF token: not expired, user not disabled.
    pub async fn session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(UserRecord, String)>> {
        let Some(row) = q(format!(
            "SELECT {USER_COLUMNS}, s.csrf_token FROM sessions s \
             JOIN users u ON u.username = s.username \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL"
        ))
        .bind(token_hash.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some((user_from_row(&row)?, get_str(&row, "csrf_token")?)))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        q("DELETE FROM sessions WHERE token_hash = $1".to_owned())
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts one login attempt against `key` before its password is
    /// checked, and returns the count in the window: concurrent attempts
    /// cannot all pass a read taken before any of them is counted. An
    /// expired window starts anew.
    pub async fn count_login_attempt(&self, key: &str, now: i64, window_ms: i64) -> Result<i64> {
        let row = q(
            "INSERT INTO login_failures (throttle_key, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
             failures = CASE WHEN login_failures.window_start > $3 \
               THEN login_failures.failures + 1 ELSE 1 END, \
             window_start = CASE WHEN login_failures.window_start > $3 \
               THEN login_failures.window_start ELSE $2 END \
             RETURNING failures"
                .to_owned(),
        )
        .bind(key.to_owned())
        .bind(now)
        .bind(now - window_ms)
        .fetch_one(&self.pool)
        .await?;
        get_i64(&row, "failures")
    }

    /// Takes back one counted attempt (it succeeded).
    pub async fn uncount_login_attempt(&self, key: &str) -> Result<()> {
        q("UPDATE login_failures SET failures = failures - 1 \
             WHERE throttle_key = $1 AND failures > 0"
            .to_owned())
        .bind(key.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        q("DELETE FROM login_failures WHERE throttle_key = $1".to_owned())
            .bind(key.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
