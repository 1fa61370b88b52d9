//! What reading costs: the rows D1 reads (and bills), counted per database and per run, and
//! the run's budget of them.
//!
//! D1 bills rows *scanned* (`meta.rows_read` of every statement), and the Free plan stops
//! reading at 5,000,000 rows a day. A [`RowBudget`] is shared by every database of a run:
//! a database is not started when its estimate would pass what is left, and the run stops as
//! soon as the rows actually read pass the budget.

use std::sync::atomic::{AtomicU64, Ordering};

/// Rows read over a whole run, and the most it may read (`None`: unlimited).
#[derive(Debug, Default)]
pub struct RowBudget {
    read: AtomicU64,
    max: Option<u64>,
}

/// The rows-read budget was, or would be, passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBudget {
    #[error(
        "database {database:?} was not read: about {estimate} rows to read would pass the budget of {budget} rows ({read} already read in this run)"
    )]
    WouldPass {
        database: String,
        estimate: u64,
        read: u64,
        budget: u64,
    },
    #[error(
        "stopped reading database {database:?}: {read} rows read in this run passed the budget of {budget} rows"
    )]
    Passed {
        database: String,
        read: u64,
        budget: u64,
    },
}

impl RowBudget {
    pub fn new(max: Option<u64>) -> RowBudget {
        RowBudget {
            read: AtomicU64::new(0),
            max,
        }
    }

    pub fn is_limited(&self) -> bool {
        self.max.is_some()
    }

    /// Rows read so far in this run.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Count `rows` read from `database`; an error once the total passes the budget.
    pub fn add(&self, database: &str, rows: u64) -> Result<(), OverBudget> {
        let read = self.read.fetch_add(rows, Ordering::Relaxed) + rows;
        match self.max {
            Some(budget) if read > budget => Err(OverBudget::Passed {
                database: database.to_string(),
                read,
                budget,
            }),
            _ => Ok(()),
        }
    }

    /// Whether `database`, estimated at `estimate` rows, may still be read.
    pub fn admit(&self, database: &str, estimate: u64) -> Result<(), OverBudget> {
        let read = self.read();
        match self.max {
            Some(budget) if read.saturating_add(estimate) > budget => Err(OverBudget::WouldPass {
                database: database.to_string(),
                estimate,
                read,
                budget,
            }),
            _ => Ok(()),
        }
    }
}

/// Rows read from one database, counted into the run's budget.
#[derive(Debug)]
pub struct Meter {
    database: String,
    read: AtomicU64,
    budget: std::sync::Arc<RowBudget>,
}

impl Meter {
    pub fn new(database: &str, budget: std::sync::Arc<RowBudget>) -> Meter {
        Meter {
            database: database.to_string(),
            read: AtomicU64::new(0),
            budget,
        }
    }

    /// Count the rows one request read.
    pub fn add(&self, rows: u64) -> Result<(), OverBudget> {
        self.read.fetch_add(rows, Ordering::Relaxed);
        self.budget.add(&self.database, rows)
    }

    /// Rows read from this database so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Whether reading about `estimate` more rows stays within the run's budget.
    pub fn admit(&self, estimate: u64) -> Result<(), OverBudget> {
        self.budget.admit(&self.database, estimate)
    }

    pub fn is_limited(&self) -> bool {
        self.budget.is_limited()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn budget_admits_and_stops() {
        // (budget, already read, estimate, admitted)
        let cases = [
            (None, 0, u64::MAX, true),
            (Some(100), 0, 100, true),
            (Some(100), 0, 101, false),
            (Some(100), 60, 40, true),
            (Some(100), 60, 41, false),
            (Some(0), 0, 0, true),
            (Some(0), 0, 1, false),
        ];
        for (max, read, estimate, admitted) in cases {
            let budget = Arc::new(RowBudget::new(max));
            let meter = Meter::new("db", Arc::clone(&budget));
            meter.add(read).unwrap();
            assert_eq!(
                meter.admit(estimate).is_ok(),
                admitted,
                "{max:?} {read} {estimate}"
            );
        }
    }

    #[test]
    fn two_databases_share_one_budget() {
        let budget = Arc::new(RowBudget::new(Some(10)));
        let a = Meter::new("a", Arc::clone(&budget));
        let b = Meter::new("b", Arc::clone(&budget));
        a.add(6).unwrap();
        assert_eq!(a.read(), 6);
        let err = b.add(5).unwrap_err();
        assert_eq!(
            err,
            OverBudget::Passed {
                database: "b".into(),
                read: 11,
                budget: 10
            }
        );
        assert_eq!((a.read(), b.read(), budget.read()), (6, 5, 11));
    }
}
