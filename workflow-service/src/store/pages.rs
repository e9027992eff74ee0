//! Pages for the list calls (`ListWorkflows`, `ListApprovals`).
//!
//! Each page query names only the filters the caller gave, so PostgreSQL
//! plans every shape with its index: a cached generic plan of
//! `($2 = '' OR status = $2)` cannot use one and walks the whole table for a
//! rare status. A page's steps, compensations and webhook deliveries are read
//! with one statement each, not one per row. Values are always bound, never
//! spliced into the text.

use std::collections::HashMap;

use super::approvals::{APPROVAL_COLUMNS, DELIVERY_COLUMNS};
use super::{
    ApprovalFilter, ApprovalRow, COMPENSATION_COLUMNS, CompensationRow, DeliveryRow, ListFilter,
    STEP_COLUMNS, StepRow, WORKFLOW_COLUMNS, WorkflowRow, WorkflowStore,
};
use crate::domain::WorkflowStatus;
use crate::error::WorkflowError;

/// A page statement and its text parameters in order; the page size is
/// bound after them (the last placeholder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub sql: String,
    pub params: Vec<String>,
}

impl PageQuery {
    fn new(select: String) -> Self {
        Self {
            sql: select,
            params: Vec::new(),
        }
    }

    /// Adds `condition`, whose one placeholder is written `?`, bound to `value`.
    fn and(&mut self, condition: &str, value: &str) {
        let keyword = if self.params.is_empty() {
            "WHERE"
        } else {
            "AND"
        };
        let placeholder = format!("${}", self.params.len() + 1);
        self.sql.push_str(&format!(
            " {keyword} {}",
            condition.replace('?', &placeholder)
        ));
        self.params.push(value.to_owned());
    }

    fn and_if(&mut self, condition: &str, value: &str) {
        if !value.is_empty() {
            self.and(condition, value);
        }
    }

    fn order_and_limit(mut self, order: &str) -> Self {
        let limit = self.params.len() + 1;
        self.sql
            .push_str(&format!(" ORDER BY {order} LIMIT ${limit}"));
        self
    }
}

impl ListFilter {
    /// Newest first, ids below `before_id` (empty: from the newest).
    pub fn page_query(&self, before_id: &str) -> PageQuery {
        let mut query = PageQuery::new(format!("SELECT {WORKFLOW_COLUMNS} FROM workflows"));
        query.and_if("workflow_id < ?", before_id);
        query.and_if("status = ?", self.status.map_or("", WorkflowStatus::as_str));
        query.and_if("submitter = ?", &self.submitter);
        query.and_if("name = ?", &self.name);
        query.and_if("owner = ?", &self.owner);
        query.order_and_limit("workflow_id DESC")
    }
}

impl ApprovalFilter {
    /// Oldest first (an inbox), ids above `after_id`.
    pub fn page_query(&self, after_id: &str) -> PageQuery {
        let mut query = PageQuery::new(format!("SELECT {APPROVAL_COLUMNS} FROM approvals"));
        query.and_if("approval_id > ?", after_id);
        query.and_if("status = ?", self.status.map_or("", |s| s.as_str()));
        query.and_if("workflow_id = ?", &self.workflow_id);
        query.order_and_limit("approval_id")
    }
}

/// The rows of one table that belong to a set of keys.
struct Keyed {
    columns: &'static str,
    table: &'static str,
    key: &'static str,
    order: &'static str,
}

const STEPS: Keyed = Keyed {
    columns: STEP_COLUMNS,
    table: "workflow_steps",
    key: "workflow_id",
    order: "workflow_id, position",
};
const COMPENSATIONS: Keyed = Keyed {
    columns: COMPENSATION_COLUMNS,
    table: "workflow_compensations",
    key: "workflow_id",
    order: "workflow_id, position",
};
const DELIVERIES: Keyed = Keyed {
    columns: DELIVERY_COLUMNS,
    table: "webhook_outbox",
    key: "approval_id",
    order: "approval_id, delivery_id",
};

impl Keyed {
    /// `SELECT ... WHERE key IN (...)` for `keys`, the list padded to a
    /// power of two (repeating the last key) so a connection caches a few
    /// statement shapes, not one per page length.
    fn select(&self, keys: &[&str]) -> (String, Vec<String>) {
        let width = keys.len().next_power_of_two();
        let placeholders: Vec<String> = (1..=width).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} IN ({}) ORDER BY {}",
            self.columns,
            self.table,
            self.key,
            placeholders.join(", "),
            self.order
        );
        let last = keys.last().copied().unwrap_or_default();
        let params = (0..width)
            .map(|i| keys.get(i).copied().unwrap_or(last).to_owned())
            .collect();
        (sql, params)
    }
}

/// Groups rows by the key `key_of` picks, keeping their order.
fn grouped<R>(rows: Vec<R>, key_of: impl Fn(&R) -> &str) -> HashMap<String, Vec<R>> {
    let mut groups: HashMap<String, Vec<R>> = HashMap::new();
    for row in rows {
        groups.entry(key_of(&row).to_owned()).or_default().push(row);
    }
    groups
}

/// Runs `sql` with text `params` on either backend, collecting rows of
/// type `$row`; with `page $limit`, binds the page size last and does not
/// keep the statement prepared: PostgreSQL then plans each page for its
/// values (a rare status through its index) where a cached generic plan
/// assumes every status is as common and walks the primary key.
macro_rules! fetch_with {
    ($db:expr, $row:ty, $sql:expr, $params:expr $(, page $limit:expr)?) => {{
        let (sql, params): (&str, &[String]) = ($sql, $params);
        airt_kit::with_pool!($db, pool => {
            let mut query = sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe(sql));
            for param in params {
                query = query.bind(param.as_str());
            }
            $(query = query.bind($limit).persistent(false);)?
            query.fetch_all(pool).await?
        })
    }};
}

/// The rows of `$keyed` for `$keys` as `$row`s, grouped by their `$field`.
macro_rules! rows_by_key {
    ($store:expr, $row:ty, $keyed:expr, $keys:expr, $field:ident) => {{
        let keys: &[&str] = $keys;
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let (sql, params) = $keyed.select(keys);
        let rows = fetch_with!(&$store.db, $row, &sql, &params);
        Ok(grouped(rows, |row: &$row| &row.$field))
    }};
}

impl WorkflowStore {
    /// Newest first, with an id below `before_id` (empty: from the newest).
    pub async fn list(
        &self,
        filter: &ListFilter,
        before_id: &str,
        limit: i64,
    ) -> Result<Vec<WorkflowRow>, WorkflowError> {
        let query = filter.page_query(before_id);
        Ok(fetch_with!(&self.db, WorkflowRow, &query.sql, &query.params, page limit))
    }

    /// Oldest first (an inbox), with an id above `after_id`.
    pub async fn list_approvals(
        &self,
        filter: &ApprovalFilter,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>, WorkflowError> {
        let query = filter.page_query(after_id);
        Ok(fetch_with!(&self.db, ApprovalRow, &query.sql, &query.params, page limit))
    }

    /// The steps of each of `workflow_ids`, in spec order.
    pub async fn steps_of(
        &self,
        workflow_ids: &[&str],
    ) -> Result<HashMap<String, Vec<StepRow>>, WorkflowError> {
        rows_by_key!(self, StepRow, STEPS, workflow_ids, workflow_id)
    }

    /// The compensations of each of `workflow_ids`, in running order.
    pub async fn compensations_of(
        &self,
        workflow_ids: &[&str],
    ) -> Result<HashMap<String, Vec<CompensationRow>>, WorkflowError> {
        rows_by_key!(
            self,
            CompensationRow,
            COMPENSATIONS,
            workflow_ids,
            workflow_id
        )
    }

    /// The webhook deliveries of each of `approval_ids`, oldest first.
    pub async fn deliveries_of_many(
        &self,
        approval_ids: &[&str],
    ) -> Result<HashMap<String, Vec<DeliveryRow>>, WorkflowError> {
        rows_by_key!(self, DeliveryRow, DELIVERIES, approval_ids, approval_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_name_only_the_filters_given() {
        let all = ListFilter::default().page_query("");
        assert_eq!(
            all.sql,
            format!("SELECT {WORKFLOW_COLUMNS} FROM workflows ORDER BY workflow_id DESC LIMIT $1")
        );
        assert!(all.params.is_empty());
        let some = ListFilter {
            status: Some(WorkflowStatus::Paused),
            submitter: "user:alice".into(),
            ..Default::default()
        }
        .page_query("w-9");
        assert!(some.sql.ends_with(
            "FROM workflows WHERE workflow_id < $1 AND status = $2 AND submitter = $3 \
             ORDER BY workflow_id DESC LIMIT $4"
        ));
        assert_eq!(some.params, ["w-9", "PAUSED", "user:alice"]);
        let approvals = ApprovalFilter {
            status: None,
            workflow_id: "w-1".into(),
        }
        .page_query("");
        assert!(
            approvals
                .sql
                .ends_with("FROM approvals WHERE workflow_id = $1 ORDER BY approval_id LIMIT $2")
        );
    }

    #[test]
    fn keyed_lists_pad_to_a_power_of_two_with_the_last_key() {
        let keyed = Keyed {
            columns: "a",
            table: "t",
            key: "k",
            order: "k",
        };
        let (sql, params) = keyed.select(&["x", "y", "z"]);
        assert_eq!(
            sql,
            "SELECT a FROM t WHERE k IN ($1, $2, $3, $4) ORDER BY k"
        );
        assert_eq!(params, ["x", "y", "z", "z"]);
    }
}
