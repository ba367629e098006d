//! Search's wiring: the index `[search]` names, and the indexer that keeps it following the
//! chat store, beside the chat part (`source = "feed"`) or anywhere (`source = "stream"`).

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_chat::{search_source::StoreSource, store::ChatStore};
use chatmesh_platform::config::{Config, SearchBackend, SearchSource};
use chatmesh_search::{
    ElasticsearchIndex, ElasticsearchSettings, IndexerSettings, IndexerStatus, SearchIndex, TantivyIndex,
    source::{ChatSource, GrpcSource},
    stream::{StreamSettings, default_consumer, run_stream_indexer},
};
use tokio::sync::watch;

use crate::{Part, node::Node};

/// Refuses a `search.source` the parts of this process cannot follow.
pub(crate) fn check_source(config: &Config, parts: &BTreeSet<Part>) -> anyhow::Result<()> {
    match config.search.source {
        SearchSource::Feed if parts.contains(&Part::Indexer) && !parts.contains(&Part::Chat) => anyhow::bail!(
            "search.source = \"feed\": the indexer follows the chat store's feed, so it runs in the chat part's \
             process; with search.source = \"stream\" (and Redis) it can run anywhere"
        ),
        SearchSource::Stream if config.stream_url().is_none() => {
            anyhow::bail!("search.source = \"stream\" needs Redis: set redis_url or redis.stream_url")
        }
        SearchSource::Feed | SearchSource::Stream => Ok(()),
    }
}

/// Where the embedded search index lives.
pub fn search_dir(config: &Config) -> PathBuf {
    config.data_dir.join("search")
}

/// The search index: Elasticsearch, or the embedded one (written here when `writes`, else only
/// searched while an indexer in another process writes it).
pub(crate) async fn search_index(config: &Config, writes: bool) -> anyhow::Result<Arc<dyn SearchIndex>> {
    Ok(match config.search.backend {
        SearchBackend::Embedded if writes => {
            Arc::new(TantivyIndex::open(&search_dir(config), config.search.writer_memory_mib << 20)?)
        }
        SearchBackend::Embedded => Arc::new(TantivyIndex::open_reader(&search_dir(config))?),
        SearchBackend::Elasticsearch => {
            let search = &config.search;
            if search.elasticsearch_url.is_empty() {
                anyhow::bail!("search.backend = \"elasticsearch\" needs search.elasticsearch_url");
            }
            let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let settings = ElasticsearchSettings {
                url: search.elasticsearch_url.clone(),
                index: search.elasticsearch_index.clone(),
                username: optional(&search.elasticsearch_username),
                password: optional(&search.elasticsearch_password),
                ca_certificate: optional(&search.elasticsearch_ca_file)
                    .map(|path| chatmesh_platform::tls::read_ca_bundle(path.as_ref()))
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
            };
            Arc::new(
                ElasticsearchIndex::connect(settings)
                    .await
                    .with_context(|| format!("connecting to Elasticsearch at {}", search.elasticsearch_url))?,
            )
        }
    })
}

impl Node {
    /// The chat part's search index, and its indexer when the indexer part runs here.
    pub(crate) async fn open_search(
        &mut self,
        store: &Arc<dyn ChatStore>,
        woken: &watch::Receiver<u64>,
    ) -> anyhow::Result<chatmesh_chat::Search> {
        let indexes_here = self.runs(Part::Indexer);
        let index = search_index(&self.config, indexes_here).await?;
        let indexer = Arc::new(IndexerStatus::default());
        if !indexes_here {
            if self.config.search.source == SearchSource::Feed {
                tracing::warn!("no indexer runs with this chat part: search results will not follow new chats");
            }
            return Ok(chatmesh_chat::Search { index, indexer });
        }
        match self.config.search.source {
            SearchSource::Stream => {
                let source = Arc::new(StoreSource(store.clone()));
                self.stream_indexer(source, index.clone(), indexer.clone()).await?;
            }
            SearchSource::Feed => self.feed_indexer(store, woken, index.clone(), indexer.clone()),
        }
        Ok(chatmesh_chat::Search { index, indexer })
    }

    /// An indexer of its own: chats' current states come from the chat part's internal RPC.
    pub(crate) async fn indexer(&mut self) -> anyhow::Result<()> {
        let credentials = self.credentials(Part::Indexer);
        let chat = self.internal(Part::Chat, Part::Indexer, &credentials)?;
        let source = Arc::new(GrpcSource(
            chatmesh_api::chat::v1::chat_internal_service_client::ChatInternalServiceClient::new(chat),
        ));
        let index = search_index(&self.config, true).await?;
        self.stream_indexer(source, index, Arc::new(IndexerStatus::default())).await
    }

    /// Runs an indexer following the chat store's feed into `index`, in this process.
    fn feed_indexer(
        &mut self,
        store: &Arc<dyn ChatStore>,
        woken: &watch::Receiver<u64>,
        index: Arc<dyn SearchIndex>,
        status: Arc<IndexerStatus>,
    ) {
        let settings = IndexerSettings {
            commit_interval: Duration::from_millis(self.config.search.commit_interval_ms),
            commit_batch: self.config.search.commit_batch.max(1),
        };
        let (store, woken, stop) = (store.clone(), woken.clone(), self.background.shutdown.clone());
        self.background.spawn(async move {
            chatmesh_search::run_indexer(store, index, settings, woken, stop, status).await;
            Ok(())
        });
    }

    /// Runs an indexer reading the change stream into `index`, reading chats from `source`.
    async fn stream_indexer(
        &mut self,
        source: Arc<dyn ChatSource>,
        index: Arc<dyn SearchIndex>,
        status: Arc<IndexerStatus>,
    ) -> anyhow::Result<()> {
        let url = self.config.stream_url().context("search.source = \"stream\" needs Redis")?;
        let redis = self.background.redis(url).await?;
        let settings = StreamSettings {
            consumer: match self.config.search.consumer.as_str() {
                "" => default_consumer(),
                named => named.to_owned(),
            },
            claim_idle: Duration::from_millis(self.config.search.claim_idle_ms.max(100)),
        };
        let stop = self.background.shutdown.clone();
        self.background.spawn(async move {
            run_stream_indexer(redis.client, source, index, settings, stop, status).await;
            Ok(())
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(parts: &[Part]) -> BTreeSet<Part> {
        parts.iter().copied().collect()
    }

    #[test]
    fn a_feed_indexer_runs_only_beside_the_chat_part() {
        let config = Config::default();
        let err = check_source(&config, &parts(&[Part::Indexer])).unwrap_err();
        assert!(err.to_string().contains("search.source = \"feed\""), "{err}");
        check_source(&config, &parts(&[Part::Chat, Part::Indexer])).expect("beside the chat part");
        check_source(&config, &parts(&[Part::Chat])).expect("no indexer at all");
    }

    #[test]
    fn a_stream_needs_redis() {
        let mut config = Config::default();
        config.search.source = SearchSource::Stream;
        let err = check_source(&config, &parts(&[Part::Indexer])).unwrap_err();
        assert!(err.to_string().contains("needs Redis"), "{err}");
        config.redis_url = "redis://127.0.0.1:6379".into();
        check_source(&config, &parts(&[Part::Indexer])).expect("an indexer anywhere");
    }
}
