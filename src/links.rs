//! The link service: create, resolve, update, delete, list — the product's rules
//! put together over the store, the cache and the key generator.
//!
//! Creates go through a group-commit writer: one task drains every create waiting at
//! that moment and writes them in one transaction, so 32 concurrent clients cost
//! a handful of transactions instead of 32 (DESIGN.md §4, "Writes").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

pub use crate::cache::CachedLink;
use crate::cache::{LinkCache, RedisCache};
use crate::domain::link::{parse_future_instant, resolve_expiry};
use crate::domain::stats::StatsRange;
use crate::domain::target_url::OwnHosts;
use crate::domain::{
    Alias, Caller, Invalid, Link, LinkState, LinkTarget, Metadata, RedirectType, ShortCode, TargetUrl,
};
use crate::keygen::KeyGenerator;
use crate::stats::{Stats, StatsError};
use crate::store::{LinkPatch, LinkStore, ListQuery, NewLink, StoreError};

/// Most creates written in one group-commit transaction.
const GROUP_COMMIT_MAX: usize = 256;
/// How often a generated code may collide (with an alias or a fallback code) before
/// we give up on one create. Each retry draws a fresh code.
const CODE_ATTEMPTS: usize = 5;
pub const BULK_MAX: usize = 1000;
pub const LIST_MAX: u32 = 100;
/// Links on a page when the caller does not say.
pub const LIST_DEFAULT: u32 = 20;
/// Links read per query of the cache warm-up.
const WARM_CHUNK: usize = 1_000;
/// Links reloaded per store read when refreshing the cache. Small, so that turning one
/// read into cache entries keeps the runtime worker (which also answers redirects)
/// only briefly; 100 at a time cost the same CPU as 1,000 (one run each).
const REFRESH_CHUNK: usize = 100;
/// Longest search string of a list.
pub const SEARCH_MAX: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("alias is already taken")]
    AliasTaken,
    #[error("URL not found")]
    NotFound,
    #[error("URL has expired")]
    Expired,
    #[error("URL is disabled")]
    Disabled,
    #[error("credentials required")]
    Unauthenticated,
    /// `KURZ_ALLOW_ANONYMOUS=false` and the caller sent no credentials.
    #[error("anonymous link creation is disabled")]
    AnonymousDisabled,
    #[error("not authorized for this URL")]
    Forbidden,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StatsError> for LinkError {
    fn from(e: StatsError) -> Self {
        match e {
            StatsError::Unavailable(m) => Self::Unavailable(m),
            StatsError::Other(m) => Self::Internal(m),
        }
    }
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Conflict => Self::Internal("unexpected conflict".into()),
            StoreError::Other(m) => Self::Internal(m),
        }
    }
}

/// A create as a client asked for it, before validation ([`LinkService::create`]
/// applies the rules of `domain`). The wire form, with its serde and OpenAPI
/// attributes, lives in `http`.
#[derive(Debug, Clone, Default)]
pub struct CreateInput {
    pub original_url: String,
    pub custom_alias: Option<String>,
    pub expires_in_days: Option<i64>,
    pub expires_at: Option<String>,
    pub redirect_type: Option<u16>,
    pub metadata: Option<serde_json::Value>,
}

/// An update: absent fields stay as they are; `expires_at: Some(None)` removes the
/// expiry.
#[derive(Debug, Clone, Default)]
pub struct UpdateInput {
    pub original_url: Option<String>,
    pub expires_at: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub redirect_type: Option<u16>,
    pub metadata: Option<serde_json::Value>,
}

/// A list request as a client made it ([`LinkService::list`] checks it).
#[derive(Debug, Clone, Default)]
pub struct ListInput {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub q: Option<String>,
    pub order: Option<String>,
}

/// One page of a caller's links and the cursor of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct Page {
    pub links: Vec<Link>,
    pub next_cursor: Option<String>,
}

pub use crate::stats::{Devices, LinkStats, LinkSummary};

/// A validated create, before it has a code.
struct Draft {
    alias: Option<ShortCode>,
    original_url: TargetUrl,
    owner_id: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    redirect_type: RedirectType,
    metadata: Metadata,
}

impl Draft {
    fn with_code(&self, code: ShortCode) -> NewLink {
        NewLink {
            code,
            original_url: self.original_url.clone(),
            owner_id: self.owner_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            redirect_type: self.redirect_type,
            metadata: self.metadata.clone(),
        }
    }
}

/// Now, to the millisecond: what every store keeps, so a create's response and a
/// later read of the same link show the same instant.
fn now_ms() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(3)
}

struct WriteJob {
    link: NewLink,
    reply: oneshot::Sender<Result<Option<Link>, StoreError>>,
}

pub struct LinkService {
    store: Arc<dyn LinkStore>,
    /// Click figures for the info and stats endpoints.
    stats: Stats,
    keygen: Arc<KeyGenerator>,
    cache: Arc<LinkCache>,
    /// The shared L2 cache and invalidation bus, when Redis is configured.
    l2: Option<Arc<RedisCache>>,
    /// kurz's own hosts: links pointing at them are refused.
    own_hosts: OwnHosts,
    /// `KURZ_ALLOW_ANONYMOUS`: may callers without credentials create links?
    allow_anonymous: bool,
    writer: mpsc::Sender<WriteJob>,
    /// The store's links version as the cache's refresh last read it, and when it
    /// was first read at that value ([`Self::links_unchanged_since`]).
    links_version: std::sync::Mutex<Option<(i64, Instant)>>,
}

impl LinkService {
    pub fn new(
        store: Arc<dyn LinkStore>,
        stats: Stats,
        keygen: Arc<KeyGenerator>,
        cache: Arc<LinkCache>,
        l2: Option<Arc<RedisCache>>,
        own_hosts: OwnHosts,
        allow_anonymous: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(group_commit(store.clone(), rx));
        // Registered at zero, so dashboards see the series before the first create.
        metrics::counter!("kurz_links_created_total").increment(0);
        Self {
            store,
            stats,
            keygen,
            cache,
            l2,
            own_hosts,
            allow_anonymous,
            writer: tx,
            links_version: std::sync::Mutex::new(None),
        }
    }

    /// The anonymous-creation policy: refuses a caller without credentials when
    /// anonymous creation is off.
    fn may_create(&self, caller: &Caller) -> Result<(), LinkError> {
        if *caller == Caller::Anonymous && !self.allow_anonymous {
            return Err(LinkError::AnonymousDisabled);
        }
        Ok(())
    }

    /// `code` changed: drop it here and, through Redis, everywhere else.
    async fn changed(&self, code: &str) {
        self.cache.invalidate(code);
        if let Some(l2) = &self.l2 {
            l2.invalidate(code).await;
        }
    }

    pub fn cache(&self) -> &LinkCache {
        &self.cache
    }

    fn validate(&self, caller: &Caller, req: CreateInput, now: DateTime<Utc>) -> Result<Draft, Invalid> {
        let original_url = TargetUrl::parse(&req.original_url, Some(&self.own_hosts))?;
        let alias = req.custom_alias.as_deref().map(Alias::parse).transpose()?;
        let expires_at = resolve_expiry(req.expires_in_days, req.expires_at.as_deref(), now)?;
        let redirect_type = req
            .redirect_type
            .map(RedirectType::from_status)
            .transpose()?
            .unwrap_or(RedirectType::Temporary);
        let metadata = req
            .metadata
            .map(Metadata::from_json)
            .transpose()?
            .unwrap_or_default();
        Ok(Draft {
            alias: alias.map(Alias::into_code),
            original_url,
            owner_id: caller.user_id(),
            created_at: now,
            expires_at,
            redirect_type,
            metadata,
        })
    }

    async fn write(&self, link: NewLink) -> Result<Option<Link>, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteJob { link, reply })
            .await
            .map_err(|_| LinkError::Unavailable("writer stopped".into()))?;
        let result = rx
            .await
            .map_err(|_| LinkError::Unavailable("writer stopped".into()))?;
        Ok(result?)
    }

    #[tracing::instrument(skip_all, fields(alias = req.custom_alias.is_some()))]
    pub async fn create(&self, caller: &Caller, req: CreateInput) -> Result<Link, LinkError> {
        self.may_create(caller)?;
        let draft = self.validate(caller, req, now_ms())?;
        if let Some(alias) = &draft.alias {
            let created = self
                .write(draft.with_code(alias.clone()))
                .await?
                .ok_or(LinkError::AliasTaken)?;
            // Someone may have tried the alias before it existed: drop cached misses.
            self.changed(created.code.as_str()).await;
            metrics::counter!("kurz_links_created_total").increment(1);
            return Ok(created);
        }
        for _ in 0..CODE_ATTEMPTS {
            let code = self.keygen.next_code().await;
            if let Some(created) = self.write(draft.with_code(code)).await? {
                self.cache.invalidate(created.code.as_str());
                metrics::counter!("kurz_links_created_total").increment(1);
                return Ok(created);
            }
        }
        Err(LinkError::Internal("could not find a free code".into()))
    }

    /// Creates up to [`BULK_MAX`] links in one transaction per round. Each item
    /// succeeds or fails on its own; results are in input order.
    #[tracing::instrument(skip_all, fields(n = reqs.len()))]
    pub async fn create_many(
        &self,
        caller: &Caller,
        reqs: Vec<CreateInput>,
    ) -> Result<Vec<Result<Link, LinkError>>, LinkError> {
        self.may_create(caller)?;
        let now = now_ms();
        let mut results: Vec<Option<Result<Link, LinkError>>> = Vec::with_capacity(reqs.len());
        // (index into results, draft)
        let mut pending = Vec::new();
        for (i, req) in reqs.into_iter().enumerate() {
            match self.validate(caller, req, now) {
                Ok(draft) => {
                    results.push(None);
                    pending.push((i, draft));
                }
                Err(e) => results.push(Some(Err(e.into()))),
            }
        }
        for _ in 0..CODE_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let generated = pending.iter().filter(|(_, d)| d.alias.is_none()).count();
            let mut codes = self.keygen.next_codes(generated).await.into_iter();
            let links: Vec<NewLink> = pending
                .iter()
                .map(|(_, d)| {
                    let code = d.alias.clone().or_else(|| codes.next());
                    d.with_code(
                        code.unwrap_or_else(|| ShortCode::from_generated(crate::keygen::random_code())),
                    )
                })
                .collect();
            let inserted = self.store.insert_links(&links).await?;
            let mut retry = Vec::new();
            for ((i, draft), outcome) in pending.into_iter().zip(inserted) {
                match outcome {
                    Some(created) => {
                        self.cache.invalidate(created.code.as_str());
                        results[i] = Some(Ok(created));
                    }
                    None if draft.alias.is_some() => results[i] = Some(Err(LinkError::AliasTaken)),
                    None => retry.push((i, draft)),
                }
            }
            pending = retry;
        }
        let created = results.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
        metrics::counter!("kurz_links_created_total").increment(created as u64);
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(LinkError::Internal("could not find a free code".into()))))
            .collect())
    }

    /// Loads the links clicked most in the last day into the cache, most clicked
    /// first, up to its capacity (the seed's cache-warming step): after a start or a
    /// deploy, redirects are hits from the first seconds instead of a store lookup
    /// each. Returns how many it put.
    pub async fn warm_cache(&self) -> Result<usize, LinkError> {
        let since = Utc::now() - chrono::Duration::hours(24);
        let codes = self.stats.hot_codes(since, self.cache.capacity()).await?;
        // The links version as of now, so that the first refreshes can keep what
        // this loads if no link changes meanwhile ([`Self::refresh_cache`]).
        self.links_unchanged_since().await?;
        let mut warmed = 0;
        for chunk in codes.chunks(WARM_CHUNK) {
            let ticket = self.cache.ticket();
            for link in self.store.get_targets(chunk).await? {
                if let Some(entry) = CachedLink::from_target(&link)
                    && self.cache.warm(link.code.as_str(), entry, &ticket)
                {
                    warmed += 1;
                }
            }
        }
        Ok(warmed)
    }

    /// Refreshes the links the cache queued (hit late in their freshness, see
    /// [`LinkCache::take_due`]), so they stay cached instead of expiring into misses:
    /// those loaded since the store's links last changed are kept as they are
    /// ([`LinkCache::revalidate`]), the others reloaded in batches. Why: under
    /// 10,000 redirects/s over 100,000 links about 3,000 links a second came due,
    /// and reloading each cost some 15 µs, about a sixth of the process's CPU
    /// (bench/results/2026-12-06.md), to find links that almost never change.
    /// Returns how many it refreshed. A failed batch leaves its links to expire and
    /// load on their next click.
    pub async fn refresh_cache(&self) -> Result<usize, LinkError> {
        // Read every round, due links or not, so that the moment the version last
        // moved is known to within a round: links loaded after it are kept. (Read only
        // when links came due, the first round after a start would reload every link
        // loaded before it.)
        let ticket = self.cache.ticket();
        let unchanged_since = self.links_unchanged_since().await?;
        self.cache.note_unchanged(ticket, unchanged_since);
        let due = self.cache.take_due();
        if due.is_empty() {
            return Ok(0);
        }
        let mut refreshed = 0;
        let mut reload = Vec::new();
        for (i, code) in due.into_iter().enumerate() {
            // Small chunks, and the worker given back between them: this runs on a
            // runtime worker that also answers redirects.
            if i % REFRESH_CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            if unchanged_since.is_some_and(|since| self.cache.revalidate(&code, &ticket, since)) {
                refreshed += 1;
            } else {
                reload.push(code);
            }
        }
        for chunk in reload.chunks(REFRESH_CHUNK) {
            tokio::task::yield_now().await;
            let ticket = self.cache.ticket();
            let mut found: HashMap<String, LinkTarget> = self
                .store
                .get_targets(chunk)
                .await?
                .into_iter()
                .map(|t| (t.code.as_str().to_owned(), t))
                .collect();
            for code in chunk {
                let entry = found
                    .remove(code.as_str())
                    .as_ref()
                    .and_then(CachedLink::from_target);
                refreshed += usize::from(entry.is_some());
                self.cache.refresh(code, entry, &ticket);
            }
        }
        Ok(refreshed)
    }

    /// Since when the store's links have not changed ([`LinkStore::links_version`]
    /// read now, against the last read): `None` if the store cannot tell. The moment
    /// is taken after the read, so every change the read saw was committed before it.
    async fn links_unchanged_since(&self) -> Result<Option<Instant>, LinkError> {
        let Some(version) = self.store.links_version().await? else {
            return Ok(None);
        };
        let read = Instant::now();
        // A poisoned lock only means a panic elsewhere mid-update: the pair is whole.
        let mut seen = self.links_version.lock().unwrap_or_else(|e| e.into_inner());
        match *seen {
            Some((last, since)) if last == version => Ok(Some(since)),
            _ => {
                *seen = Some((version, read));
                Ok(Some(read))
            }
        }
    }

    /// The redirect lookup: cache first, store on a miss.
    pub async fn resolve(&self, code: &str) -> Result<Arc<CachedLink>, LinkError> {
        let Some(code) = ShortCode::parse(code) else {
            return Err(LinkError::NotFound);
        };
        let (store, l2) = (&self.store, &self.l2);
        let load = || async {
            if let Some(l2) = l2
                && let Some(hit) = l2.get(code.as_str()).await
            {
                return Ok(Some(hit));
            }
            let entry = store
                .get_link(code.as_str())
                .await?
                .as_ref()
                .and_then(CachedLink::from_link);
            if let (Some(l2), Some(e)) = (l2, &entry) {
                l2.put(code.as_str(), e).await;
            }
            Ok::<_, StoreError>(entry)
        };
        let entry = self
            .cache
            .get_or_load(code.as_str(), load)
            .await?
            .ok_or(LinkError::NotFound)?;
        match entry.state(Utc::now()) {
            LinkState::Active => Ok(entry),
            LinkState::Expired => Err(LinkError::Expired),
            LinkState::Disabled => Err(LinkError::Disabled),
        }
    }

    /// The active link for `code` if the cache holds it fresh, or `None`, in which
    /// case [`Self::resolve`] gives the answer (a miss, an expired or disabled link,
    /// a code cached as absent). Synchronous: the redirect fast path answers a
    /// cache hit with it without entering the router.
    pub fn resolve_cached(&self, code: &str) -> Option<Arc<CachedLink>> {
        let entry = self.cache.get_fresh(code)?;
        if entry.state(Utc::now()) != LinkState::Active {
            return None;
        }
        self.cache.count_hit();
        Some(entry)
    }

    /// A link the caller may manage, read from the store (never the cache).
    async fn owned(&self, caller: &Caller, code: &str) -> Result<Link, LinkError> {
        if *caller == Caller::Anonymous {
            return Err(LinkError::Unauthenticated);
        }
        let code = ShortCode::parse(code).ok_or(LinkError::NotFound)?;
        let link = self
            .store
            .get_link(code.as_str())
            .await?
            .ok_or(LinkError::NotFound)?;
        if !caller.may_manage(link.owner_id) {
            return Err(LinkError::Forbidden);
        }
        Ok(link)
    }

    /// Info for the owner. Expired links answer 410 (as the seed says); disabled ones
    /// are still shown, with `is_active: false`.
    pub async fn info(&self, caller: &Caller, code: &str) -> Result<(Link, LinkSummary), LinkError> {
        let link = self.owned(caller, code).await?;
        if link.state(Utc::now()) == LinkState::Expired {
            return Err(LinkError::Expired);
        }
        let summary = self.stats.summary_of_link(link.code.as_str(), Utc::now()).await?;
        Ok((link, summary))
    }

    #[tracing::instrument(skip_all, fields(code))]
    pub async fn update(&self, caller: &Caller, code: &str, req: UpdateInput) -> Result<Link, LinkError> {
        let now = now_ms();
        let patch = LinkPatch {
            original_url: req
                .original_url
                .as_deref()
                .map(|u| TargetUrl::parse(u, Some(&self.own_hosts)))
                .transpose()?,
            expires_at: req
                .expires_at
                .map(|e| e.map(|s| parse_future_instant(&s, now)).transpose())
                .transpose()?,
            is_active: req.is_active,
            redirect_type: req.redirect_type.map(RedirectType::from_status).transpose()?,
            metadata: req.metadata.map(Metadata::from_json).transpose()?,
        };
        if patch.original_url.is_none()
            && patch.expires_at.is_none()
            && patch.is_active.is_none()
            && patch.redirect_type.is_none()
            && patch.metadata.is_none()
        {
            return Err(Invalid::request("nothing to update: give at least one field").into());
        }
        let link = self.owned(caller, code).await?;
        let updated = self
            .store
            .update_link(link.code.as_str(), &patch)
            .await?
            .ok_or(LinkError::NotFound)?;
        self.changed(updated.code.as_str()).await;
        Ok(updated)
    }

    pub async fn delete(&self, caller: &Caller, code: &str) -> Result<(), LinkError> {
        let link = self.owned(caller, code).await?;
        let deleted = self.store.delete_link(link.code.as_str()).await?;
        self.changed(link.code.as_str()).await;
        if deleted { Ok(()) } else { Err(LinkError::NotFound) }
    }

    /// A page of the caller's links, newest first (or oldest first with `order:
    /// asc`): at most `limit` (1 to [`LIST_MAX`], default [`LIST_DEFAULT`]), after
    /// `cursor` (the `next_cursor` of the previous page: the hex id of its last link),
    /// only those whose code or target contains `q` if given.
    pub async fn list(&self, caller: &Caller, input: ListInput) -> Result<Page, LinkError> {
        let limit = input.limit.unwrap_or(LIST_DEFAULT);
        if !(1..=LIST_MAX).contains(&limit) {
            return Err(Invalid::request(format!("limit must be between 1 and {LIST_MAX}")).into());
        }
        let after_id = input.cursor.as_deref().map(parse_cursor).transpose()?;
        let oldest_first = match input.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(Invalid::request("order must be asc or desc").into()),
        };
        let search = input.q.filter(|q| !q.is_empty());
        if search.as_ref().is_some_and(|q| q.chars().count() > SEARCH_MAX) {
            return Err(Invalid::request(format!("q may be at most {SEARCH_MAX} characters")).into());
        }
        let owner = caller.user_id().ok_or(LinkError::Unauthenticated)?;
        // One extra row tells whether another page exists.
        let query = ListQuery {
            after_id,
            limit: limit + 1,
            search,
            oldest_first,
        };
        let mut links = self.store.list_links(owner, &query).await?;
        let more = links.len() > limit as usize;
        links.truncate(limit as usize);
        let next_cursor = more
            .then(|| links.last().map(|l| format!("{:x}", l.id)))
            .flatten();
        Ok(Page { links, next_cursor })
    }

    /// A link that exists, for the QR code (anyone may ask: the short URL is public).
    pub async fn exists(&self, code: &str) -> Result<Link, LinkError> {
        let code = ShortCode::parse(code).ok_or(LinkError::NotFound)?;
        self.store
            .get_link(code.as_str())
            .await?
            .ok_or(LinkError::NotFound)
    }

    /// Stats of a link the caller manages. The range is checked only once the caller
    /// is known to manage the link: someone who may not see it gets 401, 403 or 404,
    /// never an answer about its parameters.
    pub async fn stats(
        &self,
        caller: &Caller,
        code: &str,
        range: Result<StatsRange, Invalid>,
    ) -> Result<(StatsRange, LinkStats), LinkError> {
        let link = self.owned(caller, code).await?;
        let range = range?;
        let stats = self.stats.of_link(link.code.as_str(), &range).await?;
        Ok((range, stats))
    }
}

/// Most hex digits of a cursor: every id below 2^60 fits, and any such string is an
/// i64.
pub const CURSOR_MAX_DIGITS: usize = 15;

/// A `next_cursor` as [`LinkService::list`] writes it: the hex id (lower case, no
/// sign) of a page's last link, which is never 0.
fn parse_cursor(c: &str) -> Result<i64, Invalid> {
    let hex = (1..=CURSOR_MAX_DIGITS).contains(&c.len())
        && c.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| i64::from_str_radix(c, 16).ok())
        .flatten()
        .filter(|id| *id > 0)
        .ok_or_else(|| Invalid::request("invalid cursor"))
}

/// The group-commit writer: one transaction for every create queued at that moment.
async fn group_commit(store: Arc<dyn LinkStore>, mut rx: mpsc::Receiver<WriteJob>) {
    let mut jobs = Vec::with_capacity(GROUP_COMMIT_MAX);
    while rx.recv_many(&mut jobs, GROUP_COMMIT_MAX).await > 0 {
        let links: Vec<NewLink> = jobs.iter().map(|j| j.link.clone()).collect();
        match store.insert_links(&links).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
