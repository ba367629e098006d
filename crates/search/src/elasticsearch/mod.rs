//! The search index on Elasticsearch: one document per searchable chat in `<index>`, and the
//! committed feed position in a one-document index `<index>-meta`.
//!
//! The documents carry the analysis already done: `words` and `cjk` hold the tokens our own
//! analyzers (the ones the tantivy backend and the query parser use) produce, joined by spaces
//! and indexed with Elasticsearch's `whitespace` analyzer, so a query clause finds exactly what
//! it finds in the embedded index. Beside them: ids, time, who removed the chat, the raw `text`
//! (the seed's field, for operators), and `version` and `digest` for `verify-index`. The seed's
//! `ignored_user_ids` is `removed_for` here; it has no `is_retract` (a retracted chat is
//! deleted) nor `updated_at` (`version` orders states).
//!
//! - Visibility: the index has `refresh_interval: -1` and writes never refresh, so staged
//!   changes become searchable only at `commit`, which refreshes and then records the position.
//!   Staged writes are durable in Elasticsearch's translog, unlike tantivy's: after a crash
//!   they are still there and show at the next refresh; the indexer's replay from the committed
//!   position rewrites them idempotently.
//! - Ordering: an upsert carries the chat's version as an external version, so a replayed or
//!   late state never overwrites a newer one (Elasticsearch answers 409, counted as done).
//! - Channel deletes: a bulk cannot delete by query, so a `DeleteChannel` ends the bulk before
//!   it and runs a `_delete_by_query` on `channel_id` (`conflicts=proceed`) before the changes
//!   after it are sent. A query only sees refreshed (committed) documents, so chats of the
//!   channel staged since the last commit are tracked here and deleted by id in the bulk.
//! - Failures: every bulk item is checked. 2xx, 409 and the 404 of a delete are done; 429 and
//!   5xx items (and a failed request) are sent again with exponential backoff, up to 5 attempts
//!   from 100 ms; a 400 is a [`Rejected`] change; anything else (a missing index, a write block)
//!   fails the write, and the indexer retries it from its last commit.
//! - `digest` is a `keyword` holding the decimal `u64`: it round-trips exactly through any JSON
//!   reader, and it is only read back, never queried.

mod bodies;
mod bulk;
#[cfg(test)]
mod tests;

use std::{collections::HashSet, sync::Mutex, time::Duration};

use async_trait::async_trait;
use elasticsearch::{
    BulkParts, CountParts, DeleteByQueryParts, Elasticsearch, GetParts, IndexParts, SearchParts,
    auth::Credentials,
    cert::{Certificate, CertificateValidation},
    http::{
        StatusCode, Url,
        request::JsonBody,
        response::Response,
        transport::{SingleNodeConnectionPool, TransportBuilder},
    },
    indices::{IndicesCreateParts, IndicesPutIndexTemplateParts, IndicesRefreshParts},
    params::{Conflicts, Refresh},
};
use serde_json::{Value, json};

use self::{
    bodies::{
        bulk_lines, delete_channel_body, entries_body, meta_index, meta_template_body, search_body, template_body,
    },
    bulk::{DocOp, Staged, Step, classify, plan, reason, with_followers},
};
use crate::{IndexChange, IndexEntry, IndexError, IndexQuery, Rejected, SearchIndex};

/// The index name when none is configured.
pub const DEFAULT_INDEX: &str = "chatmesh-chats";

/// Bulk attempts before a write gives up on items Elasticsearch keeps refusing for now.
const ATTEMPTS: u32 = 5;
/// The pause before the first retry; it doubles with each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for one request; a delete-by-query of a large channel is the slow one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the index lives.
#[derive(Clone)]
pub struct ElasticsearchSettings {
    /// The cluster's base URL, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// The chats' index; the position is kept in `<index>-meta`.
    pub index: String,
    /// Basic-auth user, when the cluster has security on.
    pub username: Option<String>,
    /// Basic-auth password (with `username`).
    pub password: Option<String>,
    /// A CA bundle (PEM) trusted beside the web roots, for an `https://` cluster under a
    /// private CA.
    pub ca_certificate: Option<Vec<u8>>,
}

impl Default for ElasticsearchSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index: DEFAULT_INDEX.into(),
            username: None,
            password: None,
            ca_certificate: None,
        }
    }
}

impl std::fmt::Debug for ElasticsearchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSettings")
            .field("url", &self.url)
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_certificate", &self.ca_certificate.is_some())
            .finish()
    }
}

/// The search index on an Elasticsearch cluster.
pub struct ElasticsearchIndex {
    client: Elasticsearch,
    index: String,
    meta_index: String,
    staged: Mutex<Staged>,
}

impl std::fmt::Debug for ElasticsearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchIndex").field("index", &self.index).finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// A request that did not reach Elasticsearch or got no answer: the cluster is down or
/// unreachable.
fn unreachable(e: impl std::fmt::Display) -> IndexError {
    IndexError::Unavailable(e.to_string())
}

/// A response's status and body (JSON when it parses, else the text).
async fn read(response: Response, what: &str) -> Result<(StatusCode, Value), IndexError> {
    let status = response.status_code();
    let text = response.text().await.map_err(|e| unreachable(format!("{what}: {e}")))?;
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok((status, body))
}

/// The body of a successful response, or an error naming the request and Elasticsearch's reason.
async fn success(response: Response, what: &str) -> Result<Value, IndexError> {
    let (status, body) = read(response, what).await?;
    if status.is_success() { Ok(body) } else { Err(failure(what, status, &body)) }
}

fn failure(what: &str, status: StatusCode, body: &Value) -> IndexError {
    let detail = match body.get("error") {
        Some(error) if error.is_object() => reason(Some(error)),
        _ => body.to_string().chars().take(500).collect(),
    };
    let message = format!("{what}: HTTP {}: {detail}", status.as_u16());
    match status.as_u16() {
        // overloaded, or no shard to answer: asking later may succeed
        429 | 502..=504 => unreachable(message),
        _ => backend(message),
    }
}

impl ElasticsearchIndex {
    /// Connects to the cluster, installs the index templates and creates the indices if absent.
    /// A template changed since an index was created applies only to indices created after it:
    /// rebuild into a new index name to take it up.
    pub async fn connect(settings: ElasticsearchSettings) -> Result<Self, IndexError> {
        let url = Url::parse(&settings.url).map_err(|e| backend(format!("elasticsearch url {}: {e}", settings.url)))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(username) = settings.username {
            transport = transport.auth(Credentials::Basic(username, settings.password.unwrap_or_default()));
        }
        if let Some(pem) = &settings.ca_certificate {
            let certificate =
                Certificate::from_pem(pem).map_err(|e| backend(format!("elasticsearch CA bundle: {e}")))?;
            transport = transport.cert_validation(CertificateValidation::Full(certificate));
        }
        let transport = transport.build().map_err(|e| backend(format!("elasticsearch client: {e}")))?;
        let index = Self {
            client: Elasticsearch::new(transport),
            meta_index: meta_index(&settings.index),
            index: settings.index,
            staged: Mutex::new(Staged::default()),
        };
        index.put_template(&index.meta_index, meta_template_body(&index.index)).await?;
        index.put_template(&index.index, template_body(&index.index)).await?;
        index.create_index(&index.index).await?;
        index.create_index(&index.meta_index).await?;
        Ok(index)
    }

    async fn put_template(&self, name: &str, body: Value) -> Result<(), IndexError> {
        let what = format!("putting index template {name}");
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        success(response, &what).await.map(drop)
    }

    /// Creates `name` (its template gives settings and mappings) unless it exists.
    async fn create_index(&self, name: &str) -> Result<(), IndexError> {
        let what = format!("creating index {name}");
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(name))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let (status, body) = read(response, &what).await?;
        let exists = body.pointer("/error/type").and_then(Value::as_str) == Some("resource_already_exists_exception");
        if status.is_success() || exists { Ok(()) } else { Err(failure(&what, status, &body)) }
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        let what = format!("refreshing {}", self.index);
        let response = self
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let body = success(response, &what).await?;
        match body.pointer("/_shards/failed").and_then(Value::as_u64) {
            Some(0) | None => Ok(()),
            Some(failed) => Err(backend(format!("{what}: {failed} shards failed"))),
        }
    }

    /// Sends `ops` in one bulk request, then again those refused for now, with backoff.
    async fn bulk(&self, mut ops: Vec<DocOp>) -> Result<Vec<Rejected>, IndexError> {
        let mut rejected = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lines: Vec<JsonBody<Value>> = bulk_lines(&ops).into_iter().map(JsonBody::new).collect();
            let sent = self.client.bulk(BulkParts::Index(&self.index)).refresh(Refresh::False).body(lines).send().await;
            let answer = match sent {
                Ok(response) => read(response, "bulk").await,
                Err(e) => Err(unreachable(format!("bulk: {e}"))),
            };
            let everything = || (0..ops.len()).collect::<Vec<_>>();
            let (retry, why) = match answer {
                // why: a request lost on the way may or may not have applied; resending is idempotent.
                Err(e) => (everything(), e.to_string()),
                Ok((status, body)) if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                    (everything(), failure("bulk", status, &body).to_string())
                }
                Ok((status, body)) if !status.is_success() => return Err(failure("bulk", status, &body)),
                Ok((_, body)) => {
                    let outcome = classify(&body, &ops)?;
                    rejected.extend(outcome.rejected);
                    (outcome.retry, outcome.retry_reason.unwrap_or_default())
                }
            };
            if retry.is_empty() {
                // a chat sent again with a retried change may have been refused twice
                let mut seen = HashSet::new();
                rejected.retain(|r: &Rejected| seen.insert((r.chat_id, r.reason.clone())));
                return Ok(rejected);
            }
            let again = with_followers(&ops, &retry);
            if attempt == ATTEMPTS {
                return Err(unreachable(format!(
                    "bulk: {} changes still refused after {ATTEMPTS} attempts: {why}",
                    again.len()
                )));
            }
            tracing::warn!(attempt, changes = again.len(), reason = %why, "elasticsearch refused changes, retrying");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            let again: HashSet<usize> = again.into_iter().collect();
            ops = ops.into_iter().enumerate().filter(|(i, _)| again.contains(i)).map(|(_, op)| op).collect();
        }
    }

    /// Deletes the channel's searchable (committed) chats; its staged ones went by id.
    async fn delete_channel(&self, channel_id: u64) -> Result<(), IndexError> {
        let what = format!("deleting channel {channel_id}");
        let response = self
            .client
            .delete_by_query(DeleteByQueryParts::Index(&[&self.index]))
            // why: a committed chat staged again since conflicts; it already went by id.
            .conflicts(Conflicts::Proceed)
            .refresh(false)
            .body(delete_channel_body(channel_id))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let body = success(response, &what).await?;
        let failures = body.get("failures").and_then(Value::as_array).map_or(0, Vec::len);
        if failures > 0 || body.get("timed_out").and_then(Value::as_bool) == Some(true) {
            return Err(backend(format!("{what}: {failures} failures, timed out: {}", body["timed_out"])));
        }
        Ok(())
    }

    async fn search_hits(&self, body: Value, what: &str) -> Result<Vec<Value>, IndexError> {
        let response = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let mut body = success(response, what).await?;
        match body.pointer_mut("/hits/hits").map(Value::take) {
            Some(Value::Array(hits)) => Ok(hits),
            _ => Err(backend(format!("{what}: no hits in response"))),
        }
    }
}

/// The chat id of a hit (its `_id`).
fn hit_id(hit: &Value) -> Result<u64, IndexError> {
    hit.get("_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| backend(format!("a hit without a chat id: {hit}")))
}

#[async_trait]
impl SearchIndex for ElasticsearchIndex {
    async fn write(&self, changes: Vec<IndexChange>) -> Result<Vec<Rejected>, IndexError> {
        let (steps, mut rejected) = {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            plan(changes, &mut staged)
        };
        for step in steps {
            match step {
                Step::Bulk(ops) => rejected.extend(self.bulk(ops).await?),
                Step::DeleteChannel { channel_id, refresh_first } => {
                    if refresh_first {
                        self.refresh().await?;
                    }
                    self.delete_channel(channel_id).await?;
                }
            }
        }
        Ok(rejected)
    }

    async fn commit(&self, position: u64) -> Result<(), IndexError> {
        // why: searchable first, then the position: it never claims more than is searchable.
        self.refresh().await?;
        let what = format!("recording position {position}");
        let response = self
            .client
            // why: no refresh: `position` reads it back with a real-time GET by id
            .index(IndexParts::IndexId(&self.meta_index, "position"))
            .body(json!({ "position": position }))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        success(response, &what).await?;
        *self.staged.lock().unwrap_or_else(|e| e.into_inner()) = Staged::default();
        Ok(())
    }

    async fn position(&self) -> Result<u64, IndexError> {
        let what = "reading the position";
        let response = self
            .client
            .get(GetParts::IndexId(&self.meta_index, "position"))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let (status, body) = read(response, what).await?;
        if status == StatusCode::NOT_FOUND {
            // no position recorded: nothing was committed
            return Ok(0);
        }
        if !status.is_success() {
            return Err(failure(what, status, &body));
        }
        body.pointer("/_source/position").and_then(Value::as_u64).ok_or_else(|| backend(format!("{what}: {body}")))
    }

    async fn search(&self, query: IndexQuery) -> Result<Vec<u64>, IndexError> {
        if query.channel_ids.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        self.search_hits(search_body(&query), "searching").await?.iter().map(hit_id).collect()
    }

    async fn documents(&self) -> Result<u64, IndexError> {
        let what = "counting documents";
        let response = self
            .client
            .count(CountParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let body = success(response, what).await?;
        body.get("count").and_then(Value::as_u64).ok_or_else(|| backend(format!("{what}: {body}")))
    }

    async fn entries_after(&self, after_chat_id: u64, limit: usize) -> Result<Vec<IndexEntry>, IndexError> {
        let hits = self.search_hits(entries_body(after_chat_id, limit), "listing entries").await?;
        hits.iter()
            .map(|hit| {
                let version = hit.pointer("/_source/version").and_then(Value::as_u64);
                let digest = hit.pointer("/_source/digest").and_then(Value::as_str).and_then(|d| d.parse().ok());
                match (version, digest) {
                    (Some(version), Some(digest)) => Ok(IndexEntry { chat_id: hit_id(hit)?, version, digest }),
                    _ => Err(backend(format!("an entry without version or digest: {hit}"))),
                }
            })
            .collect()
    }
}
