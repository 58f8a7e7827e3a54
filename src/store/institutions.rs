//! The institution directory and per-institution delivery settings.

use sqlx::any::AnyRow;

use super::{Priority, Result, Store, StoreError, get_i64, get_opt_str, get_str, q};
use crate::domain::state::Channel;
use crate::domain::time::now_millis;
use crate::domain::zengin::{BranchCode, BranchRecord, InstitutionCode, InstitutionRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institution {
    pub code: InstitutionCode,
    pub name: String,
    pub kana: String,
    pub settings: InstitutionSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionSettings {
    pub channel: Channel,
    pub endpoint_url: Option<String>,
    /// PEM of the CA that must have issued the bank's server certificate.
    pub server_ca_pem: Option<String>,
    pub max_batch_size: i64,
    pub max_in_flight: i64,
    pub batch_max_age_ms: i64,
    pub paused: bool,
    /// When batches may be sent, e.g. `weekdays 08:00-19:00` (JST); always
    /// when absent.
    pub delivery_window: Option<String>,
}

impl Default for InstitutionSettings {
    fn default() -> Self {
        Self {
            channel: Channel::Paper,
            endpoint_url: None,
            server_ca_pem: None,
            max_batch_size: 100,
            max_in_flight: 2,
            batch_max_age_ms: 2000,
            paused: false,
            delivery_window: None,
        }
    }
}

const INSTITUTION_COLUMNS: &str = "code, name, kana, channel, endpoint_url, server_ca_pem, \
     max_batch_size, max_in_flight, batch_max_age_ms, paused, delivery_window";

fn institution_from_row(row: &AnyRow) -> Result<Institution> {
    Ok(Institution {
        code: InstitutionCode::from_trusted(get_str(row, "code")?),
        name: get_str(row, "name")?,
        kana: get_str(row, "kana")?,
        settings: InstitutionSettings {
            channel: Channel::parse(&get_str(row, "channel")?)?,
            endpoint_url: get_opt_str(row, "endpoint_url")?,
            server_ca_pem: get_opt_str(row, "server_ca_pem")?,
            max_batch_size: get_i64(row, "max_batch_size")?,
            max_in_flight: get_i64(row, "max_in_flight")?,
            batch_max_age_ms: get_i64(row, "batch_max_age_ms")?,
            paused: get_i64(row, "paused")? != 0,
            delivery_window: get_opt_str(row, "delivery_window")?,
        },
    })
}

impl Store {
    /// Loads the zengin directory. Names are refreshed; delivery settings of
    /// institutions already known are kept. Returns (institutions, branches).
    pub async fn import_directory(
        &self,
        banks: &[InstitutionRecord],
        branches: &[BranchRecord],
    ) -> Result<(usize, usize)> {
        let now = now_millis();
        let mut tx = self.begin(Priority::Background).await?;
        super::insert_rows(
            &mut tx,
            self.dialect,
            "INSERT INTO institutions (code, name, kana, updated_at)",
            4,
            banks,
            " ON CONFLICT (code) DO UPDATE SET name = excluded.name, kana = excluded.kana",
            |query, b| {
                query
                    .bind(b.code.as_str().to_owned())
                    .bind(b.name.clone())
                    .bind(b.kana.clone())
                    .bind(now)
            },
        )
        .await?;
        super::insert_rows(
            &mut tx,
            self.dialect,
            "INSERT INTO branches (institution_code, code, name, kana)",
            4,
            branches,
            " ON CONFLICT (institution_code, code) DO UPDATE SET name = excluded.name, \
             kana = excluded.kana",
            |query, b| {
                query
                    .bind(b.institution.as_str().to_owned())
                    .bind(b.code.as_str().to_owned())
                    .bind(b.name.clone())
                    .bind(b.kana.clone())
            },
        )
        .await?;
        tx.commit().await?;
        Ok((banks.len(), branches.len()))
    }

    pub async fn institution(&self, code: &InstitutionCode) -> Result<Option<Institution>> {
        let row = q(format!(
            "SELECT {INSTITUTION_COLUMNS} FROM institutions WHERE code = $1"
        ))
        .bind(code.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(institution_from_row).transpose()
    }

    /// Institutions whose channel is not paper, or all when `all` is set.
    pub async fn institutions_with_channel(&self, channel: Channel) -> Result<Vec<Institution>> {
        let rows = q(format!(
            "SELECT {INSTITUTION_COLUMNS} FROM institutions WHERE channel = $1 ORDER BY code"
        ))
        .bind(channel.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(institution_from_row).collect()
    }

    pub async fn update_institution_settings(
        &self,
        code: &InstitutionCode,
        s: &InstitutionSettings,
    ) -> Result<()> {
        let done = q(
            "UPDATE institutions SET channel = $1, endpoint_url = $2, server_ca_pem = $3, \
               max_batch_size = $4, max_in_flight = $5, batch_max_age_ms = $6, paused = $7, \
               updated_at = $8, delivery_window = $10 WHERE code = $9"
                .to_owned(),
        )
        .bind(s.channel.as_str())
        .bind(s.endpoint_url.clone())
        .bind(s.server_ca_pem.clone())
        .bind(s.max_batch_size)
        .bind(s.max_in_flight)
        .bind(s.batch_max_age_ms)
        .bind(i64::from(s.paused))
        .bind(now_millis())
        .bind(code.as_str().to_owned())
        .bind(s.delivery_window.clone())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("institution {code}")));
        }
        Ok(())
    }

    /// Pauses or resumes delivery to one institution (an admin's switch).
    pub async fn set_paused(&self, code: &InstitutionCode, paused: bool) -> Result<()> {
        let done =
            q("UPDATE institutions SET paused = $1, updated_at = $2 WHERE code = $3".to_owned())
                .bind(i64::from(paused))
                .bind(now_millis())
                .bind(code.as_str().to_owned())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("institution {code}")));
        }
        Ok(())
    }

    /// Which of `codes` are not in the directory, in their order. One
    /// query per few hundred codes: a submit checks every institution it
    /// names, and each round trip to a pool connection is a wait.
    pub async fn unknown_institutions(
        &self,
        codes: &[InstitutionCode],
    ) -> Result<Vec<InstitutionCode>> {
        self.not_found(
            "SELECT code FROM institutions WHERE code IN",
            &[],
            codes,
            InstitutionCode::as_str,
        )
        .await
    }

    /// Which of `branches` the institution does not have, in their order.
    pub async fn unknown_branches(
        &self,
        institution: &InstitutionCode,
        branches: &[BranchCode],
    ) -> Result<Vec<BranchCode>> {
        self.not_found(
            "SELECT code FROM branches WHERE institution_code = $1 AND code IN",
            &[institution.as_str()],
            branches,
            BranchCode::as_str,
        )
        .await
    }

    /// The `items` whose code `select … IN (…)` does not find, in their
    /// order, asked on one pool connection; `fixed` binds the placeholders
    /// before the list.
    async fn not_found<T: Clone>(
        &self,
        select: &str,
        fixed: &[&str],
        items: &[T],
        code: fn(&T) -> &str,
    ) -> Result<Vec<T>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = std::collections::HashSet::new();
        let mut conn = self.pool.acquire().await?;
        for chunk in items.chunks(super::ROWS_PER_STATEMENT) {
            let sql = format!(
                "{select} ({})",
                super::placeholders(fixed.len(), chunk.len())
            );
            let query = fixed
                .iter()
                .copied()
                .chain(chunk.iter().map(code))
                .fold(super::q_many(self.dialect, sql), |query, v| {
                    query.bind(v.to_owned())
                });
            for row in query.fetch_all(&mut *conn).await? {
                found.insert(get_str(&row, "code")?);
            }
        }
        Ok(items
            .iter()
            .filter(|item| !found.contains(code(item)))
            .cloned()
            .collect())
    }

    /// Registers a bank's client certificate fingerprint (SHA-256, hex).
    /// The client certificates that name this institution, newest first.
    pub async fn bank_certificates(
        &self,
        institution: &InstitutionCode,
    ) -> Result<Vec<(String, i64)>> {
        q(
            "SELECT fingerprint, added_at FROM bank_client_certs WHERE institution_code = $1 \
           ORDER BY added_at DESC"
                .to_owned(),
        )
        .bind(institution.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((get_str(r, "fingerprint")?, get_i64(r, "added_at")?)))
        .collect()
    }

    pub async fn add_bank_certificate(
        &self,
        fingerprint: &str,
        institution: &InstitutionCode,
    ) -> Result<()> {
        q("INSERT INTO bank_client_certs (fingerprint, institution_code, added_at) VALUES ($1, $2, $3) \
           ON CONFLICT (fingerprint) DO UPDATE SET institution_code = excluded.institution_code"
            .to_owned())
        .bind(fingerprint.to_ascii_lowercase())
        .bind(institution.as_str().to_owned())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn institution_for_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<InstitutionCode>> {
        let row =
            q("SELECT institution_code FROM bank_client_certs WHERE fingerprint = $1".to_owned())
                .bind(fingerprint.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(InstitutionCode::from_trusted(get_str(
                &r,
                "institution_code",
            )?))
        })
        .transpose()
    }
}
