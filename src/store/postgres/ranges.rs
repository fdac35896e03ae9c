//! [`RangeStore`] on PostgreSQL: ranges leased with `FOR UPDATE SKIP
//! LOCKED`, rows staged by binary `COPY` into one table per job and part,
//! and merged with `DISTINCT ON` and an upsert whose inserts are told from
//! its updates by `xmax`.
//!
//! The bulk steps run at `READ COMMITTED`: a range's rows are written by
//! the one transaction that also marks the range done (after locking it at
//! the attempt that leased it), and a part's merge by the one transaction
//! that records it merged; neither needs more, and several of each run at
//! once without aborting one another.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{IsolationLevel, Transaction};

use super::{Fail, PgStore, TxResult, n, purge_domain, shape_id, u};
use crate::store::{
    Attempt, JobRef, JobStatus, MergePart, PlannedRange, RangeLease, RangeRecord, RangeResult,
    RangeState, RangeStore, StagedRow, StoreError, WriteCounts,
};

const RUNNING: &str = JobStatus::Running.as_str();

/// The staging table of a job's part: made only from numbers.
/// Merges a part's winners into a domain that has profiles, in one
/// statement over one in-memory sort: the keys the domain has updated,
/// the others inserted (what the update did not find) — plain statements
/// (one upsert, INSERT … ON CONFLICT with its speculative insertion per
/// row, took 10.5 s for 1.9 M new keys where they took 6 s), without the
/// temporary table they first went through (~10 s a part). When another
/// job inserted one of the keys in between (or `conflicted`: the plain
/// insert met one), one upsert that tells inserts from updates. Returns
/// (created, updated).
fn merge_winners(
    tx: &mut Transaction<'_>,
    winners_of: &str,
    params: &[&(dyn postgres::types::ToSql + Sync); 4],
    conflicted: bool,
) -> Result<(i64, i64), postgres::Error> {
    if !conflicted {
        let mut plain = tx.savepoint("sluice_plain")?;
        let two = plain.query_one(
            &format!(
                "WITH w AS MATERIALIZED ({winners_of}), \
                 u AS (UPDATE profiles p SET shape_id = $2, field_values = w.vals, \
                 updated_ms = $3, expires_ms = greatest(p.expires_ms, $4), search_terms = w.terms \
                 FROM w WHERE p.domain_id = $1 AND p.profile_key = w.key \
                 RETURNING p.profile_key), \
                 i AS (INSERT INTO profiles(domain_id, profile_key, shape_id, field_values, \
                 created_ms, updated_ms, expires_ms, search_terms) \
                 SELECT $1, key, $2, vals, $3, $3, $4, terms FROM w \
                 WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.profile_key = w.key) \
                 RETURNING 1) \
                 SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM u)"
            ),
            params,
        );
        match two {
            Ok(row) => {
                plain.commit()?;
                return Ok((row.get(0), row.get(1)));
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(e),
        }
    }
    let row = tx.query_one(
        &format!(
            "WITH w AS (INSERT INTO profiles(domain_id, profile_key, shape_id, \
             field_values, created_ms, updated_ms, expires_ms, search_terms) \
             SELECT $1, key, $2, vals, $3, $3, $4, terms FROM ({winners_of}) s \
             ON CONFLICT(domain_id, profile_key) DO UPDATE SET \
             shape_id = excluded.shape_id, field_values = excluded.field_values, \
             updated_ms = excluded.updated_ms, \
             expires_ms = greatest(profiles.expires_ms, excluded.expires_ms), \
             search_terms = excluded.search_terms \
             RETURNING xmax = 0 AS inserted) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FROM w"
        ),
        params,
    )?;
    let (created, all): (i64, i64) = (row.get(0), row.get(1));
    Ok((created, all - created))
}

fn stage_table(stage_no: i64, part: u32) -> String {
    format!("sluice_stage.s{stage_no}_p{part}")
}

fn stage_no(tx: &mut Transaction<'_>, job: JobRef<'_>) -> TxResult<Option<(i64, u32)>> {
    Ok(tx
        .query_opt(
            "SELECT stage_no, parts FROM job_plans WHERE account = $1 AND job_id = $2",
            &[&job.account.as_str(), &job.id],
        )?
        .map(|r| (r.get(0), u32::try_from(r.get::<_, i32>(1)).unwrap_or(0))))
}

/// A range's place, from five columns of `row` from `first` on: input,
/// body_start, byte_start, byte_end, newlines_before.
fn planned_range(row: &postgres::Row, first: usize) -> PlannedRange {
    PlannedRange {
        input: u(row.get(first)),
        body_start: u(row.get(first + 1)),
        start: u(row.get(first + 2)),
        end: u(row.get(first + 3)),
        newlines_before: u(row.get(first + 4)),
    }
}

/// Adds a range's counts to its job's.
fn add_to_job(tx: &mut Transaction<'_>, job: JobRef<'_>, r: &RangeResult) -> TxResult<()> {
    tx.execute(
        "UPDATE jobs SET completed_pieces = completed_pieces + 1, \
         failed_pieces = failed_pieces + $3, processed = processed + $4, \
         failed = failed + $5, field_warnings = field_warnings + $6 \
         WHERE account = $1 AND id = $2",
        &[
            &job.account.as_str(),
            &job.id,
            &i64::from(r.failed_piece),
            &n(r.processed),
            &n(r.failed),
            &n(r.warnings.iter().sum()),
        ],
    )?;
    Ok(())
}

/// Fails an open range for good, as a failed piece with `reason`.
fn fail_range(tx: &mut Transaction<'_>, job: JobRef<'_>, piece: i64, reason: &str) -> TxResult<()> {
    tx.execute(
        "UPDATE job_ranges SET state = 'failed', failed_piece = true, holder = NULL, \
         reason = $4 WHERE account = $1 AND job_id = $2 AND piece = $3",
        &[&job.account.as_str(), &job.id, &piece, &reason],
    )?;
    let result = RangeResult {
        failed_piece: true,
        ..RangeResult::default()
    };
    add_to_job(tx, job, &result)
}

impl PgStore {
    fn bulk<T: Send>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> TxResult<T> + Send,
    ) -> Result<T, StoreError> {
        super::blocking(|| self.write_at(IsolationLevel::ReadCommitted, f))
    }
}

impl RangeStore for PgStore {
    fn plan_ranges(
        &self,
        a: Attempt<'_>,
        ranges: &[PlannedRange],
        parts: u32,
    ) -> Result<u32, StoreError> {
        let parts = parts.max(1);
        let col =
            |f: fn(&PlannedRange) -> u64| -> Vec<i64> { ranges.iter().map(|r| n(f(r))).collect() };
        let (inputs, bodies, starts, ends, newlines) = (
            col(|r| r.input),
            col(|r| r.body_start),
            col(|r| r.start),
            col(|r| r.end),
            col(|r| r.newlines_before),
        );
        self.write(|tx| {
            Self::require_running(tx, a)?;
            if let Some((_, planned)) = stage_no(tx, a.job)? {
                return Ok(planned);
            }
            let stage: i64 = tx
                .query_one(
                    "INSERT INTO job_plans(account, job_id, parts) VALUES ($1, $2, $3) \
                     RETURNING stage_no",
                    &[
                        &a.job.account.as_str(),
                        &a.job.id,
                        &i32::try_from(parts).unwrap_or(1),
                    ],
                )?
                .get(0);
            for part in 0..parts {
                tx.batch_execute(&format!(
                    "CREATE TABLE {}(piece BIGINT NOT NULL, ordinal BIGINT NOT NULL, \
                     key TEXT COLLATE \"C\" NOT NULL, vals TEXT NOT NULL, \
                     terms BIGINT[] NOT NULL)",
                    stage_table(stage, part)
                ))?;
            }
            tx.execute(
                "INSERT INTO job_ranges(account, job_id, piece, input, body_start, byte_start, \
                 byte_end, newlines_before) \
                 SELECT $1, $2, p - 1, i, b, s, e, l \
                 FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
                 $7::bigint[]) WITH ORDINALITY AS t(i, b, s, e, l, p)",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &inputs,
                    &bodies,
                    &starts,
                    &ends,
                    &newlines,
                ],
            )?;
            tx.execute(
                "UPDATE jobs SET total_pieces = $3 WHERE account = $1 AND id = $2",
                &[&a.job.account.as_str(), &a.job.id, &(ranges.len() as i64)],
            )?;
            Ok(parts)
        })
    }

    fn ranges(&self, job: JobRef<'_>) -> Result<Vec<RangeRecord>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT piece, input, body_start, byte_start, byte_end, newlines_before, state, \
                 attempt, processed, failed, warnings, failures, failed_piece, reason \
                 FROM job_ranges WHERE account = $1 AND job_id = $2 ORDER BY piece",
                &[&job.account.as_str(), &job.id],
            )?;
            Ok(rows
                .iter()
                .map(|r| RangeRecord {
                    piece: u(r.get(0)),
                    range: planned_range(r, 1),
                    state: match r.get::<_, &str>(6) {
                        "done" => RangeState::Done,
                        "failed" => RangeState::Failed,
                        _ => RangeState::Open,
                    },
                    attempt: u(r.get(7)),
                    result: RangeResult {
                        processed: u(r.get(8)),
                        failed: u(r.get(9)),
                        warnings: serde_json::from_str(r.get(10)).unwrap_or_default(),
                        failures: r.get(11),
                        failed_piece: r.get(12),
                        reason: r.get(13),
                    },
                })
                .collect())
        })
    }

    fn lease_range(
        &self,
        job: Option<JobRef<'_>>,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        max_attempts: u64,
    ) -> Result<Option<RangeLease>, StoreError> {
        let (account, id) = job.map_or((None, None), |j| (Some(j.account.as_str()), Some(j.id)));
        self.bulk(|tx| {
            loop {
                let Some(row) = tx.query_opt(
                    "SELECT r.account, r.job_id, r.piece, r.input, r.body_start, r.byte_start, \
                 r.byte_end, r.newlines_before, r.attempt, r.reason, p.parts \
                 FROM job_ranges r \
                 JOIN job_plans p ON p.account = r.account AND p.job_id = r.job_id \
                 JOIN jobs j ON j.account = r.account AND j.id = r.job_id \
                 WHERE r.state = 'open' AND r.deadline_ms < $1 AND j.status = $2 \
                 AND ($3::text IS NULL OR (r.account = $3 AND r.job_id = $4)) \
                 ORDER BY r.deadline_ms, r.job_id, r.piece \
                 FOR UPDATE OF r SKIP LOCKED LIMIT 1",
                    &[&now_ms, &RUNNING, &account, &id],
                )?
                else {
                    return Ok(None);
                };
                let lease_account: String = row.get(0);
                let job_id: String = row.get(1);
                let piece: i64 = row.get(2);
                let attempt = u(row.get(8));
                let account = crate::store::AccountId::new(lease_account);
                if attempt >= max_attempts {
                    let reason: Option<String> = row.get(9);
                    let reason = reason.unwrap_or_else(|| {
                        format!("its worker stopped answering on each of {attempt} attempts")
                    });
                    let job = JobRef {
                        account: &account,
                        id: &job_id,
                    };
                    fail_range(tx, job, piece, &reason)?;
                    continue;
                }
                tx.execute(
                    "UPDATE job_ranges SET holder = $4, attempt = attempt + 1, deadline_ms = $5 \
                 WHERE account = $1 AND job_id = $2 AND piece = $3",
                    &[
                        &account.as_str(),
                        &job_id,
                        &piece,
                        &holder,
                        &now_ms.saturating_add(ttl_ms),
                    ],
                )?;
                return Ok(Some(RangeLease {
                    account,
                    job_id,
                    piece: u(piece),
                    range: planned_range(&row, 3),
                    attempt: attempt + 1,
                    holder: holder.to_owned(),
                    parts: u32::try_from(row.get::<_, i32>(10)).unwrap_or(1),
                }));
            }
        })
    }

    fn renew_range(&self, l: &RangeLease, deadline_ms: i64) -> Result<bool, StoreError> {
        self.bulk(|tx| {
            Ok(tx.execute(
                "UPDATE job_ranges SET deadline_ms = $6 WHERE account = $1 AND job_id = $2 \
                 AND piece = $3 AND attempt = $4 AND holder = $5 AND state = 'open'",
                &[
                    &l.account.as_str(),
                    &l.job_id,
                    &n(l.piece),
                    &n(l.attempt),
                    &l.holder,
                    &deadline_ms,
                ],
            )? == 1)
        })
    }

    fn complete_range(
        &self,
        l: &RangeLease,
        result: &RangeResult,
        rows: &[StagedRow<'_>],
    ) -> Result<bool, StoreError> {
        let warnings = serde_json::to_string(&result.warnings).unwrap_or_else(|_| "[]".into());
        self.bulk(|tx| {
            let held = tx.query_opt(
                "SELECT 1 FROM job_ranges WHERE account = $1 AND job_id = $2 AND piece = $3 \
                 AND attempt = $4 AND holder = $5 AND state = 'open' FOR UPDATE",
                &[
                    &l.account.as_str(),
                    &l.job_id,
                    &n(l.piece),
                    &n(l.attempt),
                    &l.holder,
                ],
            )?;
            let Some((stage, parts)) = stage_no(tx, l.job())? else {
                return Ok(false);
            };
            if held.is_none() {
                return Ok(false);
            }
            let piece = n(l.piece);
            for part in 0..parts {
                let sink = tx.copy_in(&format!(
                    "COPY {}(piece, ordinal, key, vals, terms) FROM STDIN BINARY",
                    stage_table(stage, part)
                ))?;
                let mut w = BinaryCopyInWriter::new(
                    sink,
                    &[
                        Type::INT8,
                        Type::INT8,
                        Type::TEXT,
                        Type::TEXT,
                        Type::INT8_ARRAY,
                    ],
                );
                for r in rows.iter().filter(|r| r.part % parts == part) {
                    w.write(&[&piece, &n(r.ordinal), &r.key, &r.values, &r.terms])?;
                }
                w.finish()?;
            }
            tx.execute(
                "UPDATE job_ranges SET state = 'done', holder = NULL, processed = $4, \
                 failed = $5, warnings = $6, failures = $7, failed_piece = $8, reason = $9 \
                 WHERE account = $1 AND job_id = $2 AND piece = $3",
                &[
                    &l.account.as_str(),
                    &l.job_id,
                    &piece,
                    &n(result.processed),
                    &n(result.failed),
                    &warnings,
                    &result.failures,
                    &result.failed_piece,
                    &result.reason,
                ],
            )?;
            add_to_job(tx, l.job(), result)?;
            Ok(true)
        })
    }

    fn give_back_range(
        &self,
        l: &RangeLease,
        reason: &str,
        retry_ms: i64,
        max_attempts: u64,
    ) -> Result<bool, StoreError> {
        self.bulk(|tx| {
            let held = tx.execute(
                "UPDATE job_ranges SET holder = NULL, deadline_ms = $6, reason = $7 \
                 WHERE account = $1 AND job_id = $2 AND piece = $3 AND attempt = $4 \
                 AND holder = $5 AND state = 'open'",
                &[
                    &l.account.as_str(),
                    &l.job_id,
                    &n(l.piece),
                    &n(l.attempt),
                    &l.holder,
                    &retry_ms,
                    &reason,
                ],
            )? == 1;
            if held && l.attempt >= max_attempts {
                let why = format!("{reason} (gave up after {} attempts)", l.attempt);
                fail_range(tx, l.job(), n(l.piece), &why)?;
            }
            Ok(held)
        })
    }

    fn prepare_merge(
        &self,
        a: Attempt<'_>,
        domain: &str,
        now_ms: i64,
        expires_ms: i64,
        targets: &[&str],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let (domain_id, next_expiry): (i64, Option<i64>) = tx
                .query_opt(
                    "SELECT id, next_expiry_ms FROM domains WHERE account = $1 AND name = $2 \
                     FOR UPDATE",
                    &[&a.job.account.as_str(), &domain],
                )?
                .map(|r| (r.get(0), r.get(1)))
                .ok_or_else(|| StoreError::NoDomain(domain.to_owned()))?;
            Self::require_running(tx, a)?;
            if next_expiry.is_some_and(|t| t <= now_ms) {
                purge_domain(tx, domain_id, now_ms)?;
            }
            // Whether the domain had no profiles before the job, as the
            // first attempt saw it (part -1; later attempts keep it): then
            // every key of a part is new, as the parts' keys are disjoint,
            // and a part is inserted without looking for it first.
            tx.execute(
                "INSERT INTO job_merges(account, job_id, part, created, updated)                  SELECT $1, $2, -1,                  CASE WHEN EXISTS (SELECT 1 FROM profiles WHERE domain_id = $3) THEN 0 ELSE 1 END, 0                  ON CONFLICT DO NOTHING",
                &[&a.job.account.as_str(), &a.job.id, &domain_id],
            )?;
            // Made here, committed before the parts: the first part to
            // insert it would make the others wait for its end.
            shape_id(tx, targets)?;
            tx.execute(
                "UPDATE domains SET next_expiry_ms = least(coalesce(next_expiry_ms, $2), $2) \
                 WHERE id = $1",
                &[&domain_id, &expires_ms],
            )?;
            Ok(())
        })
    }

    fn merge_part(&self, m: &MergePart<'_>) -> Result<Option<WriteCounts>, StoreError> {
        let a = m.attempt;
        self.bulk(|tx| {
            let domain_id = Self::domain_id(tx, a.job.account, m.domain)?;
            let Some((stage, _)) = stage_no(tx, a.job)? else {
                return Err(Fail::Store(StoreError::NoJob(a.job.id.to_owned())));
            };
            // First, so that another attempt merging this part waits here
            // and then finds it merged.
            let fresh = tx.execute(
                "INSERT INTO job_merges(account, job_id, part, created, updated) \
                 VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &i32::try_from(m.part).unwrap_or(0),
                ],
            )? == 1;
            if !fresh {
                return Ok(None);
            }
            let shape = shape_id(tx, m.targets)?;
            let new_domain = tx
                .query_opt(
                    "SELECT created = 1 FROM job_merges \
                     WHERE account = $1 AND job_id = $2 AND part = -1",
                    &[&a.job.account.as_str(), &a.job.id],
                )?
                .is_some_and(|r| r.get::<_, bool>(0));
            // The sort of DISTINCT ON in memory, not in temporary files
            // (a part of the 1 GiB job is ~450 MB to sort: at 256MB it
            // spilled); no parallel workers: parts already run side by
            // side, and two parts with their workers took 17 s where two
            // without took 11 s.
            tx.batch_execute(
                "SET LOCAL work_mem = '1GB'; SET LOCAL max_parallel_workers_per_gather = 0",
            )?;
            // The winners: per key the row of the greatest place.
            let winners_of = format!(
                "SELECT DISTINCT ON (key) key, vals, terms FROM {} \
                 ORDER BY key, piece DESC, ordinal DESC",
                stage_table(stage, m.part)
            );
            let params: [&(dyn postgres::types::ToSql + Sync); 4] =
                [&domain_id, &shape, &m.now_ms, &m.expires_ms];
            // Into a domain that had no profiles every winner is new: one
            // INSERT from the sort (writing the winners to a temporary
            // table first cost ~9 s a part). A key another job inserted
            // meanwhile is a unique violation: then as below.
            let direct = if new_domain {
                let mut plain = tx.savepoint("sluice_new")?;
                match plain.execute(
                    &format!(
                        "INSERT INTO profiles(domain_id, profile_key, shape_id, field_values, \
                         created_ms, updated_ms, expires_ms, search_terms) \
                         SELECT $1, key, $2, vals, $3, $3, $4, terms FROM ({winners_of}) w"
                    ),
                    &params,
                ) {
                    Ok(created) => {
                        plain.commit()?;
                        Some((n(created), 0))
                    }
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => None,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let (created, updated) = match direct {
                Some(counts) => counts,
                None => merge_winners(tx, &winners_of, &params, new_domain)?,
            };
            let total = created + updated;
            let counts = WriteCounts {
                created: u(created),
                updated: u(total - created),
            };
            tx.execute(
                "UPDATE job_merges SET created = $4, updated = $5 \
                 WHERE account = $1 AND job_id = $2 AND part = $3",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &i32::try_from(m.part).unwrap_or(0),
                    &created,
                    &(total - created),
                ],
            )?;
            // Last, so that merges of other parts hold the job's row only
            // for their last moment.
            let ours = tx.execute(
                "UPDATE jobs SET created = created + $4, updated = updated + $5 \
                 WHERE account = $1 AND id = $2 AND status = $3 AND attempts = $6",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &RUNNING,
                    &created,
                    &(total - created),
                    &i64::from(a.attempt),
                ],
            )? == 1;
            if !ours {
                // Rolled back: say who runs the job now.
                Self::require_running(tx, a)?;
                return Err(Fail::Store(StoreError::NoJob(a.job.id.to_owned())));
            }
            Ok(Some(counts))
        })
    }

    fn drop_ranges(&self, job: JobRef<'_>) -> Result<(), StoreError> {
        self.bulk(|tx| {
            if let Some((stage, parts)) = stage_no(tx, job)? {
                for part in 0..parts {
                    tx.batch_execute(&format!(
                        "DROP TABLE IF EXISTS {}",
                        stage_table(stage, part)
                    ))?;
                }
            }
            for table in ["job_ranges", "job_merges", "job_plans"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE account = $1 AND job_id = $2"),
                    &[&job.account.as_str(), &job.id],
                )?;
            }
            Ok(())
        })
    }
}
