//! A small migration runner: numbered SQL files per dialect, embedded in the
//! binary, applied in order, each in its own transaction, and recorded with
//! a checksum so that an edited, already-applied migration is refused.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Dialect, Result, Store, StoreError, q};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "breaker_window_alerts",
        sqlite: include_str!("../../migrations/sqlite/0002_breaker_window_alerts.sql"),
        postgres: include_str!("../../migrations/postgres/0002_breaker_window_alerts.sql"),
    },
    Migration {
        version: 3,
        name: "audit",
        sqlite: include_str!("../../migrations/sqlite/0003_audit.sql"),
        postgres: include_str!("../../migrations/postgres/0003_audit.sql"),
    },
    Migration {
        version: 4,
        name: "retention",
        sqlite: include_str!("../../migrations/sqlite/0004_retention.sql"),
        postgres: include_str!("../../migrations/postgres/0004_retention.sql"),
    },
    Migration {
        version: 5,
        name: "departments",
        sqlite: include_str!("../../migrations/sqlite/0005_departments.sql"),
        postgres: include_str!("../../migrations/postgres/0005_departments.sql"),
    },
    Migration {
        version: 6,
        name: "web_ui",
        sqlite: include_str!("../../migrations/sqlite/0006_web_ui.sql"),
        postgres: include_str!("../../migrations/postgres/0006_web_ui.sql"),
    },
    Migration {
        version: 7,
        name: "batch_payloads",
        sqlite: include_str!("../../migrations/sqlite/0007_batch_payloads.sql"),
        postgres: include_str!("../../migrations/postgres/0007_batch_payloads.sql"),
    },
    Migration {
        version: 8,
        name: "queue_order",
        sqlite: include_str!("../../migrations/sqlite/0008_queue_order.sql"),
        postgres: include_str!("../../migrations/postgres/0008_queue_order.sql"),
    },
    Migration {
        version: 9,
        name: "payload_encoding",
        sqlite: include_str!("../../migrations/sqlite/0009_payload_encoding.sql"),
        postgres: include_str!("../../migrations/postgres/0009_payload_encoding.sql"),
    },
    Migration {
        version: 10,
        name: "byte_collation",
        sqlite: include_str!("../../migrations/sqlite/0010_byte_collation.sql"),
        postgres: include_str!("../../migrations/postgres/0010_byte_collation.sql"),
    },
    Migration {
        version: 11,
        name: "queue_table",
        sqlite: include_str!("../../migrations/sqlite/0011_queue_table.sql"),
        postgres: include_str!("../../migrations/postgres/0011_queue_table.sql"),
    },
    Migration {
        version: 12,
        name: "answers_file_the_case",
        sqlite: include_str!("../../migrations/sqlite/0012_answers_file_the_case.sql"),
        postgres: include_str!("../../migrations/postgres/0012_answers_file_the_case.sql"),
    },
    Migration {
        version: 13,
        name: "history_from_submit",
        sqlite: include_str!("../../migrations/sqlite/0013_history_from_submit.sql"),
        postgres: include_str!("../../migrations/postgres/0013_history_from_submit.sql"),
    },
    Migration {
        version: 14,
        name: "audit_pending",
        sqlite: include_str!("../../migrations/sqlite/0014_audit_pending.sql"),
        postgres: include_str!("../../migrations/postgres/0014_audit_pending.sql"),
    },
    Migration {
        version: 15,
        name: "batch_members",
        sqlite: include_str!("../../migrations/sqlite/0015_batch_members.sql"),
        postgres: include_str!("../../migrations/postgres/0015_batch_members.sql"),
    },
    Migration {
        version: 16,
        name: "history_from_answers",
        sqlite: include_str!("../../migrations/sqlite/0016_history_from_answers.sql"),
        postgres: include_str!("../../migrations/postgres/0016_history_from_answers.sql"),
    },
    Migration {
        version: 17,
        name: "per_inquiry_keys",
        sqlite: include_str!("../../migrations/sqlite/0017_per_inquiry_keys.sql"),
        postgres: include_str!("../../migrations/postgres/0017_per_inquiry_keys.sql"),
    },
    Migration {
        version: 18,
        name: "delivered_at",
        sqlite: include_str!("../../migrations/sqlite/0018_delivered_at.sql"),
        postgres: include_str!("../../migrations/postgres/0018_delivered_at.sql"),
    },
];

/// Serialises concurrent migrators on PostgreSQL (several gateways starting).
const PG_MIGRATION_LOCK: i64 = 0x5348_4f4b_4149;

impl Store {
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            q(format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn).await;
        if self.dialect == Dialect::Postgres {
            q(format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_locked(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS shokai_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                checksum TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(&mut *conn)
        .await?;
        for m in MIGRATIONS {
            let sql = match self.dialect {
                Dialect::Sqlite => m.sqlite,
                Dialect::Postgres => m.postgres,
            };
            let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
            let applied = sqlx::query("SELECT checksum FROM shokai_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = applied {
                let stored: String = row.try_get("checksum")?;
                if stored != checksum {
                    return Err(StoreError::Migration(format!(
                        "migration {} ({}) was changed after it was applied",
                        m.version, m.name
                    )));
                }
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration(format!("{} ({}): {e}", m.version, m.name)))?;
            sqlx::query(
                "INSERT INTO shokai_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(checksum)
            .bind(crate::domain::time::now_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        Ok(())
    }

    /// The versions applied, for readiness checks and `shokai migrate`.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT version FROM shokai_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>("version")?))
            .collect()
    }

    pub fn latest_migration() -> i64 {
        MIGRATIONS.last().map_or(0, |m| m.version)
    }
}
