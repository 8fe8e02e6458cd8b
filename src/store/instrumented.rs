//! [`Instrumented`]: a store as seen by the metrics: every call of either port timed
//! by operation (`kurz_store_operation_duration_seconds{op}`), its failures counted
//! by kind (`kurz_store_errors_total{op,kind}`), and the calls in flight
//! (`kurz_store_operations_in_flight`: waiting for or holding a connection).
//!
//! One wrapper around whichever backend `connect` opened, so no backend repeats the
//! timing code. Operations are a fixed set (the [`Op`] names), never a code or a
//! query text.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use metrics::{Counter, Gauge, Histogram};

use super::{
    IdempotencyClaim, LinkPatch, LinkStore, ListQuery, NewLink, NewUser, PoolState, StoreError, StoreResult,
    User,
};
use crate::analytics::port::{ClickResult, ClickStore, ClickStoreError, ClickTx, SketchPlan, StoredRollup};
use crate::domain::{Link, LinkTarget};

/// The operations the store metrics are labelled with.
#[derive(Debug, Clone, Copy)]
enum Op {
    GetLink,
    InsertLinks,
    UpdateLink,
    DeleteLink,
    ListLinks,
    LeaseBlock,
    UserLookup,
    CreateUser,
    Idempotency,
    ClickWrite,
    ClickRead,
    Ping,
    Other,
}

const OPS: [(Op, &str); 13] = [
    (Op::GetLink, "get_link"),
    (Op::InsertLinks, "insert_links"),
    (Op::UpdateLink, "update_link"),
    (Op::DeleteLink, "delete_link"),
    (Op::ListLinks, "list_links"),
    (Op::LeaseBlock, "lease_block"),
    (Op::UserLookup, "user_lookup"),
    (Op::CreateUser, "create_user"),
    (Op::Idempotency, "idempotency"),
    (Op::ClickWrite, "click_write"),
    (Op::ClickRead, "click_read"),
    (Op::Ping, "ping"),
    (Op::Other, "other"),
];

struct OpMetrics {
    latency: Histogram,
    unavailable: Counter,
    conflict: Counter,
    other: Counter,
}

/// The handles of every operation, resolved once (a registry lookup per call would
/// cost more than the bookkeeping itself), and registered at zero.
struct Metrics {
    ops: Vec<OpMetrics>,
    in_flight: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let ops = OPS
            .iter()
            .map(|(_, op)| {
                let error = |kind: &'static str| {
                    let c = metrics::counter!("kurz_store_errors_total", "op" => *op, "kind" => kind);
                    c.increment(0);
                    c
                };
                OpMetrics {
                    latency: metrics::histogram!("kurz_store_operation_duration_seconds", "op" => *op),
                    unavailable: error("unavailable"),
                    conflict: error("conflict"),
                    other: error("other"),
                }
            })
            .collect();
        let in_flight = metrics::gauge!("kurz_store_operations_in_flight");
        in_flight.set(0.0);
        Self { ops, in_flight }
    }

    fn of(&self, op: Op) -> Option<&OpMetrics> {
        self.ops.get(op as usize)
    }

    /// Runs `call` as `op`: in flight meanwhile, then timed, its failure counted.
    async fn timed<T, E: Kind>(&self, op: Op, call: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let started = Instant::now();
        self.in_flight.increment(1.0);
        let result = call.await;
        self.in_flight.decrement(1.0);
        self.record(op, started, result.as_ref().err().map(Kind::kind));
        result
    }

    fn record(&self, op: Op, started: Instant, failure: Option<ErrorKind>) {
        let Some(m) = self.of(op) else { return };
        m.latency.record(started.elapsed().as_secs_f64());
        match failure {
            None => {}
            Some(ErrorKind::Unavailable) => m.unavailable.increment(1),
            Some(ErrorKind::Conflict) => m.conflict.increment(1),
            Some(ErrorKind::Other) => m.other.increment(1),
        }
    }
}

enum ErrorKind {
    Unavailable,
    Conflict,
    Other,
}

trait Kind {
    fn kind(&self) -> ErrorKind;
}

impl Kind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Conflict => ErrorKind::Conflict,
            StoreError::Other(_) => ErrorKind::Other,
        }
    }
}

impl Kind for ClickStoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            ClickStoreError::Unavailable(_) => ErrorKind::Unavailable,
            ClickStoreError::Other(_) => ErrorKind::Other,
        }
    }
}

/// A backend behind both ports, with every call measured.
pub struct Instrumented<S> {
    inner: Arc<S>,
    metrics: Arc<Metrics>,
}

impl<S> Instrumented<S> {
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

#[async_trait]
impl<S: LinkStore> LinkStore for Instrumented<S> {
    async fn migrate(&self) -> StoreResult<()> {
        self.metrics.timed(Op::Other, self.inner.migrate()).await
    }
    async fn pending_migrations(&self) -> StoreResult<usize> {
        self.metrics
            .timed(Op::Other, self.inner.pending_migrations())
            .await
    }
    fn note_changed(&self, code: &str) {
        self.inner.note_changed(code);
    }
    async fn ping(&self) -> StoreResult<()> {
        self.metrics.timed(Op::Ping, self.inner.ping()).await
    }
    fn pools(&self) -> Vec<PoolState> {
        self.inner.pools()
    }
    async fn replica_lags(&self) -> Vec<(String, Option<f64>)> {
        self.inner.replica_lags().await
    }
    async fn count_active_links(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        self.metrics
            .timed(Op::Other, self.inner.count_active_links(now))
            .await
    }
    async fn insert_links(&self, links: &[NewLink]) -> StoreResult<Vec<Option<Link>>> {
        self.metrics
            .timed(Op::InsertLinks, self.inner.insert_links(links))
            .await
    }
    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        self.metrics.timed(Op::GetLink, self.inner.get_link(code)).await
    }
    async fn get_targets(&self, codes: &[String]) -> StoreResult<Vec<LinkTarget>> {
        self.metrics.timed(Op::Other, self.inner.get_targets(codes)).await
    }
    async fn links_version(&self) -> StoreResult<Option<i64>> {
        self.metrics.timed(Op::Other, self.inner.links_version()).await
    }
    async fn update_link(&self, code: &str, patch: &LinkPatch) -> StoreResult<Option<Link>> {
        self.metrics
            .timed(Op::UpdateLink, self.inner.update_link(code, patch))
            .await
    }
    async fn delete_link(&self, code: &str) -> StoreResult<bool> {
        self.metrics
            .timed(Op::DeleteLink, self.inner.delete_link(code))
            .await
    }
    async fn list_links(&self, owner_id: i64, query: &ListQuery) -> StoreResult<Vec<Link>> {
        self.metrics
            .timed(Op::ListLinks, self.inner.list_links(owner_id, query))
            .await
    }
    async fn lease_block(&self, size: u64, max: u64) -> StoreResult<u64> {
        self.metrics
            .timed(Op::LeaseBlock, self.inner.lease_block(size, max))
            .await
    }
    async fn setting_get_or_init(&self, name: &str, value: &str) -> StoreResult<String> {
        self.metrics
            .timed(Op::Other, self.inner.setting_get_or_init(name, value))
            .await
    }
    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        self.metrics
            .timed(Op::CreateUser, self.inner.create_user(user))
            .await
    }
    async fn user_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<User>> {
        self.metrics
            .timed(Op::UserLookup, self.inner.user_by_key_hash(api_key_hash))
            .await
    }
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.metrics
            .timed(Op::UserLookup, self.inner.user_by_id(id))
            .await
    }
    async fn upsert_admin(&self, email: &str, api_key_hash: &str) -> StoreResult<User> {
        self.metrics
            .timed(Op::CreateUser, self.inner.upsert_admin(email, api_key_hash))
            .await
    }
    async fn has_admin(&self) -> StoreResult<bool> {
        self.metrics.timed(Op::UserLookup, self.inner.has_admin()).await
    }
    async fn idempotency_claim(
        &self,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        fresh_after: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim> {
        let claim = self.inner.idempotency_claim(key, request_hash, now, fresh_after);
        self.metrics.timed(Op::Idempotency, claim).await
    }
    async fn idempotency_complete(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        let complete = self.inner.idempotency_complete(key, status, body);
        self.metrics.timed(Op::Idempotency, complete).await
    }
    async fn idempotency_release(&self, key: &str) -> StoreResult<()> {
        self.metrics
            .timed(Op::Idempotency, self.inner.idempotency_release(key))
            .await
    }
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.metrics
            .timed(Op::Idempotency, self.inner.purge_idempotency(before))
            .await
    }
}

#[async_trait]
impl<S: ClickStore> ClickStore for Instrumented<S> {
    async fn begin(&self) -> ClickResult<Box<dyn ClickTx>> {
        let started = Instant::now();
        self.metrics.in_flight.increment(1.0);
        match self.inner.begin().await {
            Ok(tx) => Ok(Box::new(TimedTx {
                inner: Some(tx),
                started,
                metrics: self.metrics.clone(),
                failed: None,
            })),
            Err(e) => {
                self.metrics.in_flight.decrement(1.0);
                self.metrics.record(Op::ClickWrite, started, Some(e.kind()));
                Err(e)
            }
        }
    }
    async fn prepare_raw_days(&self, days: &[NaiveDate]) -> ClickResult<()> {
        self.metrics
            .timed(Op::ClickWrite, self.inner.prepare_raw_days(days))
            .await
    }
    fn forget_prepared(&self) {
        self.inner.forget_prepared();
    }
    fn in_process(&self) -> bool {
        self.inner.in_process()
    }
    async fn claim_name(&self, name: &str) -> ClickResult<()> {
        self.metrics
            .timed(Op::ClickWrite, self.inner.claim_name(name))
            .await
    }
    async fn name_through(&self, name: &str) -> ClickResult<Option<u64>> {
        self.metrics
            .timed(Op::ClickRead, self.inner.name_through(name))
            .await
    }
    async fn rollups(
        &self,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<StoredRollup>> {
        self.metrics
            .timed(Op::ClickRead, self.inner.rollups(code, from, to))
            .await
    }
    async fn sketches(&self, code: &str, plan: &SketchPlan) -> ClickResult<Vec<Vec<u8>>> {
        self.metrics
            .timed(Op::ClickRead, self.inner.sketches(code, plan))
            .await
    }
    async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> ClickResult<Vec<String>> {
        self.metrics
            .timed(Op::ClickRead, self.inner.hot_codes(since, limit))
            .await
    }
    async fn purge_events(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        self.metrics
            .timed(Op::Other, self.inner.purge_events(before))
            .await
    }
    async fn purge_names(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        self.metrics
            .timed(Op::Other, self.inner.purge_names(before))
            .await
    }
}

/// A click write's transaction, timed from `begin` to its commit (or to being
/// dropped, which rolls it back and counts as a failure).
struct TimedTx {
    inner: Option<Box<dyn ClickTx>>,
    started: Instant,
    metrics: Arc<Metrics>,
    /// The first failure of a statement, counted when the transaction ends.
    failed: Option<ErrorKind>,
}

impl TimedTx {
    fn tx(&mut self) -> ClickResult<&mut Box<dyn ClickTx>> {
        self.inner
            .as_mut()
            .ok_or_else(|| ClickStoreError::Other("transaction already ended".into()))
    }

    /// Remembers a statement's failure for the count when the transaction ends.
    fn note<T>(&mut self, result: ClickResult<T>) -> ClickResult<T> {
        if let Err(e) = &result
            && self.failed.is_none()
        {
            self.failed = Some(e.kind());
        }
        result
    }
}

impl Drop for TimedTx {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // Ended without a commit: rolled back, after a failed statement or an
            // early return (a write already done), which is no failure.
            self.metrics.in_flight.decrement(1.0);
            self.metrics
                .record(Op::ClickWrite, self.started, self.failed.take());
        }
    }
}

#[async_trait]
impl ClickTx for TimedTx {
    async fn name_mark(&mut self, name: &str) -> ClickResult<Option<u64>> {
        let r = self.tx()?.name_mark(name).await;
        self.note(r)
    }
    async fn set_name_mark(&mut self, name: &str, through: u64) -> ClickResult<()> {
        let r = self.tx()?.set_name_mark(name, through).await;
        self.note(r)
    }
    async fn days_through(
        &mut self,
        lock: crate::analytics::port::MarkLock,
    ) -> ClickResult<Option<DateTime<Utc>>> {
        let r = self.tx()?.days_through(lock).await;
        self.note(r)
    }
    async fn set_days_through(&mut self, day: DateTime<Utc>) -> ClickResult<()> {
        let r = self.tx()?.set_days_through(day).await;
        self.note(r)
    }
    async fn lock_links(&mut self, codes: &[&str]) -> ClickResult<()> {
        let r = self.tx()?.lock_links(codes).await;
        self.note(r)
    }
    async fn read_hours(
        &mut self,
        keys: &[crate::analytics::port::RowKey<'_>],
    ) -> ClickResult<crate::analytics::port::StoredRows<DateTime<Utc>, StoredRollup>> {
        let r = self.tx()?.read_hours(keys).await;
        self.note(r)
    }
    async fn write_hours(
        &mut self,
        keys: &[crate::analytics::port::RowKey<'_>],
        rows: Vec<StoredRollup>,
    ) -> ClickResult<()> {
        let r = self.tx()?.write_hours(keys, rows).await;
        self.note(r)
    }
    async fn read_days(
        &mut self,
        keys: &[crate::analytics::port::RowKey<'_>],
    ) -> ClickResult<crate::analytics::port::StoredRows<DateTime<Utc>, Vec<u8>>> {
        let r = self.tx()?.read_days(keys).await;
        self.note(r)
    }
    async fn write_days(
        &mut self,
        keys: &[crate::analytics::port::RowKey<'_>],
        sketches: Vec<Vec<u8>>,
    ) -> ClickResult<()> {
        let r = self.tx()?.write_days(keys, sketches).await;
        self.note(r)
    }
    async fn insert_raw(&mut self, batch: &crate::analytics::port::ClickBatch) -> ClickResult<()> {
        let r = self.tx()?.insert_raw(batch).await;
        self.note(r)
    }
    async fn add_clicks(&mut self, touches: &[crate::analytics::port::LinkTouch<'_>]) -> ClickResult<()> {
        let r = self.tx()?.add_clicks(touches).await;
        self.note(r)
    }
    async fn codes_with_clicks(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<String>> {
        let r = self.tx()?.codes_with_clicks(from, to).await;
        self.note(r)
    }
    async fn hour_sketches(
        &mut self,
        codes: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<(String, DateTime<Utc>, Vec<u8>)>> {
        let r = self.tx()?.hour_sketches(codes, from, to).await;
        self.note(r)
    }
    async fn commit(mut self: Box<Self>) -> ClickResult<()> {
        let tx = self.tx_take()?;
        let result = tx.commit().await;
        self.metrics.in_flight.decrement(1.0);
        self.metrics.record(
            Op::ClickWrite,
            self.started,
            result.as_ref().err().map(Kind::kind),
        );
        result
    }
}

impl TimedTx {
    fn tx_take(&mut self) -> ClickResult<Box<dyn ClickTx>> {
        self.inner
            .take()
            .ok_or_else(|| ClickStoreError::Other("transaction already ended".into()))
    }
}
