//! The budgets of limited keys ([`UsageBudget`] on [`PgStore`];
//! docs/limits.md): each take and each return is one conditional statement,
//! so that of any number of nodes taking shares at once, the shares of one
//! window never add up to more than its limit, nor the shares of credits to
//! more than the key had.

use std::sync::LazyLock;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use domain::{CreditShare, KeyId, RefillDue, RepositoryError, UsageBudget, WindowShare};
use time::OffsetDateTime;

use crate::statement::{Statement, Template};
use crate::store::PgStore;

/// Counter: statements that took a share of a budget, by `budget`
/// (`window`, `credits`): one database write each (docs/limits.md).
pub const SHARE_WRITES: &str = "apikeys_usage_share_writes_total";

/// Takes up to `$3` uses of key `$1`'s window `$2`, of which at most `$4`
/// may be handed out: the row's lock serialises concurrent takes, and each
/// sees the count the previous one left. `granted` is 0 once the window is
/// used up.
static TAKE_WINDOW: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
INSERT INTO usage_windows AS w (key_id, window_start, used, granted)
VALUES ($1, $2, LEAST($3, $4), LEAST($3, $4))
ON CONFLICT (key_id, window_start) DO UPDATE
    SET used = w.used + GREATEST(LEAST($3, $4 - w.used), 0),
        granted = GREATEST(LEAST($3, $4 - w.used), 0)
RETURNING granted, used",
    )
});

/// Deletes the counts of windows that ended before `$1`: a window ends its
/// key's `rate_window_seconds` after it starts; a key without a rate limit
/// has no window that lasts. Only rows no take reads again.
static DELETE_ENDED_WINDOWS: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
DELETE FROM usage_windows AS w
USING api_keys AS k
WHERE k.id = w.key_id
  AND (k.rate_window_seconds IS NULL
       OR w.window_start + make_interval(secs => k.rate_window_seconds) <= $1)",
    )
});

/// Gives `$3` uses back to key `$1`'s window `$2`.
static RETURN_WINDOW: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
UPDATE usage_windows SET used = GREATEST(used - $3, 0)
WHERE key_id = $1 AND window_start = $2",
    )
});

/// Takes up to `$2` of key `$1`'s credits, after setting them to `$3` when
/// they were last set before the refill instant `$4` (both null: no
/// refill). The sub-select locks the row, so the update sees the credits
/// as the previous take left them.
static TAKE_CREDITS: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
UPDATE api_keys AS k
SET credits_remaining = cur.effective - LEAST($2, cur.effective),
    credits_since = cur.since
FROM (
    SELECT id,
        CASE WHEN $4::timestamptz IS NOT NULL AND credits_since < $4
             THEN $3::bigint ELSE credits_remaining END AS effective,
        CASE WHEN $4::timestamptz IS NOT NULL AND credits_since < $4
             THEN $4::timestamptz ELSE credits_since END AS since
    FROM api_keys
    WHERE id = $1 AND credits_remaining IS NOT NULL
    FOR NO KEY UPDATE
) AS cur
WHERE k.id = cur.id
RETURNING LEAST($2, cur.effective) AS granted, k.credits_remaining AS remaining,
    k.credits_since AS period",
    )
});

/// Gives `$3` credits back to key `$1`, only while its credits are of
/// period `$2`.
static RETURN_CREDITS: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
UPDATE api_keys SET credits_remaining = LEAST(credits_remaining + $3, 1000000000000)
WHERE id = $1 AND credits_remaining IS NOT NULL AND credits_since = $2",
    )
});

#[derive(QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = Integer)]
    granted: i32,
    #[diesel(sql_type = Integer)]
    used: i32,
}

#[derive(QueryableByName)]
struct CreditsRow {
    #[diesel(sql_type = BigInt)]
    granted: i64,
    #[diesel(sql_type = BigInt)]
    remaining: i64,
    #[diesel(sql_type = Timestamptz)]
    period: OffsetDateTime,
}

fn count_write(budget: &'static str) {
    metrics::counter!(SHARE_WRITES, "budget" => budget).increment(1);
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl UsageBudget for PgStore {
    #[tracing::instrument(level = "debug", name = "db.take_window_share", skip_all)]
    fn take_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        limit: u32,
        want: u32,
    ) -> Result<WindowShare, RepositoryError> {
        let key = key.to_string();
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let want = i32::try_from(want).unwrap_or(i32::MAX);
        let row = self.run(
            "taking a share of a window",
            |conn| {
                Ok(Statement::new(&TAKE_WINDOW)
                    .bind::<Text, _>(&key)
                    .bind::<Timestamptz, _>(&window_start)
                    .bind::<Integer, _>(&want)
                    .bind::<Integer, _>(&limit)
                    .get_result::<WindowRow>(conn)?)
            },
            |_| None,
        )?;
        count_write("window");
        Ok(WindowShare {
            granted: u32::try_from(row.granted).unwrap_or(0),
            used: u32::try_from(row.used).unwrap_or(0),
        })
    }

    #[tracing::instrument(level = "debug", name = "db.return_window_share", skip_all)]
    fn return_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        amount: u32,
    ) -> Result<(), RepositoryError> {
        let key = key.to_string();
        let amount = i32::try_from(amount).unwrap_or(i32::MAX);
        self.run(
            "returning a share of a window",
            |conn| {
                Ok(Statement::new(&RETURN_WINDOW)
                    .bind::<Text, _>(&key)
                    .bind::<Timestamptz, _>(&window_start)
                    .bind::<Integer, _>(&amount)
                    .execute(conn)?)
            },
            |_| None,
        )?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "db.delete_ended_windows", skip_all)]
    fn delete_ended_windows(&self, before: OffsetDateTime) -> Result<usize, RepositoryError> {
        self.run(
            "deleting the counts of ended windows",
            |conn| {
                Ok(Statement::new(&DELETE_ENDED_WINDOWS)
                    .bind::<Timestamptz, _>(&before)
                    .execute(conn)?)
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.take_credits", skip_all)]
    fn take_credits(
        &self,
        key: &KeyId,
        want: u64,
        refill: Option<RefillDue>,
    ) -> Result<Option<CreditShare>, RepositoryError> {
        let key = key.to_string();
        let want = signed(want);
        let amount = refill.map(|r| signed(r.amount));
        let at = refill.map(|r| r.at);
        let row = self.run(
            "taking a share of credits",
            |conn| {
                Ok(Statement::new(&TAKE_CREDITS)
                    .bind::<Text, _>(&key)
                    .bind::<BigInt, _>(&want)
                    .bind::<Nullable<BigInt>, _>(&amount)
                    .bind::<Nullable<Timestamptz>, _>(&at)
                    .get_result::<CreditsRow>(conn)
                    .optional()?)
            },
            |_| None,
        )?;
        count_write("credits");
        Ok(row.map(|row| CreditShare {
            granted: unsigned(row.granted),
            remaining: unsigned(row.remaining),
            period: row.period,
        }))
    }

    #[tracing::instrument(level = "debug", name = "db.return_credits", skip_all)]
    fn return_credits(
        &self,
        key: &KeyId,
        period: OffsetDateTime,
        amount: u64,
    ) -> Result<(), RepositoryError> {
        let key = key.to_string();
        let amount = signed(amount);
        self.run(
            "returning credits",
            |conn| {
                Ok(Statement::new(&RETURN_CREDITS)
                    .bind::<Text, _>(&key)
                    .bind::<Timestamptz, _>(&period)
                    .bind::<BigInt, _>(&amount)
                    .execute(conn)?)
            },
            |_| None,
        )?;
        Ok(())
    }
}
