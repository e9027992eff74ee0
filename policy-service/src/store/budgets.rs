//! Budget counts, shared by every replica through the database. One
//! statement consumes a unit atomically: an upsert that increments only
//! while the count is below the maximum — concurrent decisions on any
//! number of replicas never count past it (PostgreSQL re-checks the
//! condition on the row it locked; SQLite runs it in a write transaction).

use crate::domain::budget::BudgetUse;
use crate::error::PolicyError;

use super::PolicyStore;

const CONSUME: &str = "INSERT INTO policy_budgets (rule_id, scope, window_start, window_end, used) \
     VALUES ($1, $2, $3, $4, 1) \
     ON CONFLICT (rule_id, scope, window_start) DO UPDATE SET used = policy_budgets.used + 1 \
     WHERE policy_budgets.used < $5 RETURNING used";
const PEEK: &str =
    "SELECT used FROM policy_budgets WHERE rule_id = $1 AND scope = $2 AND window_start = $3";
const PURGE: &str = "DELETE FROM policy_budgets WHERE window_end <= $1";

/// What consuming one unit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Counted in the window after the attempt.
    pub used: u32,
    /// No unit was left; nothing was counted.
    pub exceeded: bool,
}

fn to_u32(used: i64) -> u32 {
    u32::try_from(used.max(0)).unwrap_or(u32::MAX)
}

impl PolicyStore {
    /// Counts one decision against `budget`, unless its window is full.
    pub async fn consume_budget(&self, budget: &BudgetUse) -> Result<Consumed, PolicyError> {
        let counted: Option<i64> = airt_kit::write_tx!(&self.db, tx => {
            sqlx::query_scalar(CONSUME)
                .bind(&*budget.rule_id)
                .bind(&budget.scope)
                .bind(budget.window_start)
                .bind(budget.window_end)
                .bind(i64::from(budget.max))
                .fetch_optional(&mut *tx)
                .await?
        })?;
        Ok(match counted {
            Some(used) => Consumed {
                used: to_u32(used),
                exceeded: false,
            },
            None => Consumed {
                used: budget.max,
                exceeded: true,
            },
        })
    }

    /// The count of `budget`'s window, without counting.
    pub async fn peek_budget(&self, budget: &BudgetUse) -> Result<u32, PolicyError> {
        let used: Option<i64> = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_scalar(PEEK)
                .bind(&*budget.rule_id)
                .bind(&budget.scope)
                .bind(budget.window_start)
                .fetch_optional(pool)
                .await?
        });
        Ok(used.map_or(0, to_u32))
    }

    /// Deletes the counts of windows that ended at or before `now_secs`.
    pub async fn purge_budgets(&self, now_secs: i64) -> Result<u64, PolicyError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query(PURGE).bind(now_secs).execute(pool).await?.rows_affected()
        }))
    }
}
