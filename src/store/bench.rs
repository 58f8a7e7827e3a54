//! Measurements for `shokai bench`: the raw-database baseline and the
//! answer latencies of a run.

use super::{Priority, Result, Store, get_i64, q};

impl Store {
    /// The fastest plain load of inquiry-sized rows this database takes:
    /// multi-row INSERTs of `per_statement` rows, `per_transaction` rows per
    /// transaction, into a scratch table that is dropped afterwards.
    /// Returns rows per second.
    pub async fn baseline_rows_per_s(
        &self,
        rows: usize,
        per_statement: usize,
        per_transaction: usize,
    ) -> Result<f64> {
        q("DROP TABLE IF EXISTS shokai_bench_baseline".to_owned())
            .execute(&self.pool)
            .await?;
        q(
            "CREATE TABLE shokai_bench_baseline (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, \
           subject_id TEXT NOT NULL, institution_code TEXT NOT NULL, state TEXT NOT NULL, \
           created_at BIGINT NOT NULL)"
                .to_owned(),
        )
        .execute(&self.pool)
        .await?;
        let started = std::time::Instant::now();
        let mut written = 0;
        while written < rows {
            let mut tx = self.begin(Priority::Background).await?;
            let end = (written + per_transaction).min(rows);
            while written < end {
                let n = per_statement.min(end - written);
                let values = super::value_rows(0, n, 6);
                let mut query = super::q_many(
                    self.dialect,
                    format!(
                        "INSERT INTO shokai_bench_baseline (id, request_id, subject_id, institution_code, state, created_at) VALUES {values}"
                    ),
                );
                for i in written..written + n {
                    query = query
                        .bind(format!("{i:032x}"))
                        .bind("0190000000000000000000000000aaaa")
                        .bind("0190000000000000000000000000bbbb")
                        .bind("0001")
                        .bind("queued")
                        .bind(i as i64);
                }
                query.execute(&mut *tx).await?;
                written += n;
            }
            tx.commit().await?;
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        q("DROP TABLE shokai_bench_baseline".to_owned())
            .execute(&self.pool)
            .await?;
        Ok(rate)
    }

    /// From filing to first answer, in ms, for every answered inquiry.
    /// Streamed: a million rows held at once would be most of the peak
    /// memory the bench reports.
    pub async fn first_answer_latencies(&self) -> Result<Vec<i64>> {
        use futures_util::TryStreamExt;
        let mut rows = q("SELECT a.received_at - i.created_at AS ms FROM answers a \
               JOIN inquiries i ON i.id = a.inquiry_id WHERE a.revision = 1"
            .to_owned())
        .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            out.push(get_i64(&row, "ms")?);
        }
        Ok(out)
    }
}
