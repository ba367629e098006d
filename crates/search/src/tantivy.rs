//! The embedded search index on tantivy, in one directory under the data dir. One writer
//! (this process) stages changes; a commit writes them with the feed position as the commit's
//! payload, so documents and position are durable together.

use std::{
    ops::Bound,
    path::Path,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use tantivy::{
    Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
    collector::TopDocs,
    directory::MmapDirectory,
    query::{BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery},
    schema::Value as _,
    schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions},
};

use crate::{
    IndexChange, IndexEntry, IndexError, IndexQuery, IndexedChat, Rejected, SearchIndex,
    analysis::{self, Clause},
};

/// Bumped when the schema or analysis changes; an index of another format must be rebuilt.
const FORMAT: u32 = 2;

#[derive(Clone, Copy)]
struct Fields {
    chat_id: Field,
    channel_id: Field,
    sender_id: Field,
    created_at: Field,
    version: Field,
    digest: Field,
    removed_for: Field,
    words: Field,
    cjk: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        chat_id: builder.add_u64_field("chat_id", INDEXED | STORED | FAST),
        channel_id: builder.add_u64_field("channel_id", INDEXED | FAST),
        sender_id: builder.add_u64_field("sender_id", INDEXED),
        created_at: builder.add_u64_field("created_at", INDEXED | FAST),
        version: builder.add_u64_field("version", STORED),
        digest: builder.add_u64_field("digest", STORED),
        removed_for: builder.add_u64_field("removed_for", INDEXED),
        words: builder.add_text_field("words", text(analysis::WORDS)),
        cjk: builder.add_text_field("cjk", text(analysis::CJK)),
    };
    (builder.build(), fields)
}

/// What a commit records beside the documents.
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    format: u32,
    position: u64,
}

pub struct TantivyIndex {
    index: Index,
    reader: IndexReader,
    /// `None` when another process writes the index and this one only searches it.
    writer: Option<Arc<Mutex<IndexWriter<TantivyDocument>>>>,
    fields: Fields,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// Opens (or creates) the index in `dir`, refusing one of another format.
fn open_index(dir: &Path) -> Result<Index, IndexError> {
    std::fs::create_dir_all(dir).map_err(|e| backend(format!("creating {}: {e}", dir.display())))?;
    let directory = MmapDirectory::open(dir).map_err(backend)?;
    let index = Index::open_or_create(directory, schema().0)
        .map_err(|e| backend(format!("{e} (an index of an older format: rebuild it with `chatmesh admin reindex`)")))?;
    if let Some(payload) = read_payload(&index)?
        && payload.format != FORMAT
    {
        return Err(backend(format!(
            "the index in {} has format {}, this build reads {FORMAT}: rebuild it with `chatmesh admin reindex`",
            dir.display(),
            payload.format
        )));
    }
    index.tokenizers().register(analysis::WORDS, analysis::words_analyzer());
    index.tokenizers().register(analysis::CJK, analysis::cjk_analyzer());
    Ok(index)
}

impl TantivyIndex {
    /// Opens (or creates) the index in `dir`, with a writer using up to `memory_bytes`.
    pub fn open(dir: &Path, memory_bytes: usize) -> Result<Self, IndexError> {
        let index = open_index(dir)?;
        let writer = index
            .writer_with_num_threads(1, memory_bytes.max(15_000_000))
            .map_err(|e| backend(format!("{e} (is another chatmesh using {}?)", dir.display())))?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(backend)?;
        Ok(Self { index, reader, writer: Some(Arc::new(Mutex::new(writer))), fields: schema().1 })
    }

    /// Opens the index in `dir` for searching only, while an indexer in another process on the
    /// same host (or volume) writes it: each of its commits is seen shortly after it lands.
    pub fn open_reader(dir: &Path) -> Result<Self, IndexError> {
        let index = open_index(dir)?;
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into().map_err(backend)?;
        Ok(Self { index, reader, writer: None, fields: schema().1 })
    }

    fn writer(&self) -> Result<Arc<Mutex<IndexWriter<TantivyDocument>>>, IndexError> {
        self.writer.clone().ok_or_else(|| backend("this process only searches the index; its indexer writes it"))
    }

    fn document(&self, chat: &IndexedChat) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.chat_id, chat.chat_id);
        doc.add_u64(f.channel_id, chat.channel_id);
        doc.add_u64(f.sender_id, chat.sender_id);
        doc.add_u64(f.created_at, chat.created_at_ms);
        doc.add_u64(f.version, chat.version);
        doc.add_u64(f.digest, chat.digest());
        for user in &chat.removed_for {
            doc.add_u64(f.removed_for, *user);
        }
        doc.add_text(f.words, &chat.text);
        doc.add_text(f.cjk, &chat.text);
        doc
    }

    fn query(&self, q: &IndexQuery) -> Box<dyn Query> {
        let f = self.fields;
        let term = |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for clause in &q.query.clauses {
            let terms: Vec<Term> = match clause {
                Clause::Words(words) => words.iter().map(|w| Term::from_field_text(f.words, w)).collect(),
                Clause::Cjk(run) => {
                    let chars: Vec<char> = run.chars().collect();
                    if chars.len() == 1 {
                        vec![Term::from_field_text(f.cjk, &run[..])]
                    } else {
                        chars.windows(2).map(|w| Term::from_field_text(f.cjk, &format!("{}{}", w[0], w[1]))).collect()
                    }
                }
            };
            let query = if terms.len() == 1 {
                term(terms.into_iter().next().unwrap_or_else(|| Term::from_field_text(f.words, "")))
            } else {
                Box::new(PhraseQuery::new(terms))
            };
            clauses.push((Occur::Must, query));
        }
        clauses.push((
            Occur::Must,
            Box::new(TermSetQuery::new(q.channel_ids.iter().map(|c| Term::from_field_u64(f.channel_id, *c)))),
        ));
        if let Some(sender) = q.sender_id {
            clauses.push((Occur::Must, term(Term::from_field_u64(f.sender_id, sender))));
        }
        if q.from_ms.is_some() || q.until_ms.is_some() {
            let from = q.from_ms.map_or(Bound::Unbounded, |ms| Bound::Included(Term::from_field_u64(f.created_at, ms)));
            let until =
                q.until_ms.map_or(Bound::Unbounded, |ms| Bound::Excluded(Term::from_field_u64(f.created_at, ms)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(from, until))));
        }
        if let Some(before) = q.before_chat_id {
            let below = Bound::Excluded(Term::from_field_u64(f.chat_id, before));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(Bound::Unbounded, below))));
        }
        clauses.push((Occur::MustNot, term(Term::from_field_u64(f.removed_for, q.viewer))));
        Box::new(BooleanQuery::new(clauses))
    }
}

fn read_payload(index: &Index) -> Result<Option<Payload>, IndexError> {
    let metas = index.load_metas().map_err(backend)?;
    metas.payload.map(|p| serde_json::from_str(&p).map_err(backend)).transpose()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(work).await.map_err(backend)?
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn write(&self, changes: Vec<IndexChange>) -> Result<Vec<Rejected>, IndexError> {
        let docs: Vec<(IndexChange, Option<TantivyDocument>)> = changes
            .into_iter()
            .map(|c| {
                let doc = match &c {
                    IndexChange::Upsert(chat) => Some(self.document(chat)),
                    _ => None,
                };
                (c, doc)
            })
            .collect();
        let (writer, f) = (self.writer()?, self.fields);
        blocking(move || {
            let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
            for (change, doc) in docs {
                match change {
                    IndexChange::Upsert(chat) => {
                        // why: delete-then-add in one writer keeps exactly one document per chat.
                        writer.delete_term(Term::from_field_u64(f.chat_id, chat.chat_id));
                        if let Some(doc) = doc {
                            writer.add_document(doc).map_err(backend)?;
                        }
                    }
                    IndexChange::Delete { chat_id, .. } => {
                        writer.delete_term(Term::from_field_u64(f.chat_id, chat_id));
                    }
                    IndexChange::DeleteChannel { channel_id } => {
                        writer.delete_term(Term::from_field_u64(f.channel_id, channel_id));
                    }
                }
            }
            // every document of ours is well formed: tantivy refuses none
            Ok(Vec::new())
        })
        .await
    }

    async fn commit(&self, position: u64) -> Result<(), IndexError> {
        let (writer, reader) = (self.writer()?, self.reader.clone());
        blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
            let payload = serde_json::to_string(&Payload { format: FORMAT, position }).map_err(backend)?;
            let mut prepared = writer.prepare_commit().map_err(backend)?;
            prepared.set_payload(&payload);
            prepared.commit().map_err(backend)?;
            reader.reload().map_err(backend)
        })
        .await
    }

    async fn position(&self) -> Result<u64, IndexError> {
        let (index, reader) = (self.index.clone(), self.reader.clone());
        blocking(move || {
            let position = read_payload(&index)?.map_or(0, |p| p.position);
            // why: searches must see at least what the position claims; reading the commit
            // first and reloading after guarantees it (another process may have committed).
            reader.reload().map_err(backend)?;
            Ok(position)
        })
        .await
    }

    async fn search(&self, query: IndexQuery) -> Result<Vec<u64>, IndexError> {
        if query.channel_ids.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let built = self.query(&query);
        let reader = self.reader.clone();
        blocking(move || {
            let searcher = reader.searcher();
            let top = TopDocs::with_limit(query.limit).order_by_fast_field::<u64>("chat_id", Order::Desc);
            let hits = searcher.search(&*built, &top).map_err(backend)?;
            Ok(hits.into_iter().filter_map(|(id, _)| id).collect())
        })
        .await
    }

    async fn documents(&self) -> Result<u64, IndexError> {
        let reader = self.reader.clone();
        blocking(move || Ok(reader.searcher().num_docs())).await
    }

    async fn entries_after(&self, after_chat_id: u64, limit: usize) -> Result<Vec<IndexEntry>, IndexError> {
        let (reader, f) = (self.reader.clone(), self.fields);
        blocking(move || {
            let searcher = reader.searcher();
            let above = Bound::Excluded(Term::from_field_u64(f.chat_id, after_chat_id));
            let query = RangeQuery::new(above, Bound::Unbounded);
            let top = TopDocs::with_limit(limit.max(1)).order_by_fast_field::<u64>("chat_id", Order::Asc);
            let mut entries = Vec::new();
            for (_, address) in searcher.search(&query, &top).map_err(backend)? {
                let doc: TantivyDocument = searcher.doc(address).map_err(backend)?;
                let stored = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or_default();
                entries.push(IndexEntry {
                    chat_id: stored(f.chat_id),
                    version: stored(f.version),
                    digest: stored(f.digest),
                });
            }
            Ok(entries)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::search_index_suite!(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let index = TantivyIndex::open(dir.path(), 20_000_000).expect("index opens");
        (dir, index)
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_sees_the_commits_of_the_writer_it_shares_a_folder_with() {
        let dir = tempfile::tempdir().unwrap();
        let writer = TantivyIndex::open(dir.path(), 20_000_000).unwrap();
        let reader = TantivyIndex::open_reader(dir.path()).unwrap();
        assert!(reader.write(Vec::new()).await.is_err(), "a reader does not write");
        writer.write(vec![IndexChange::Upsert(crate::conformance::chat(1, 1, 7, "shared"))]).await.unwrap();
        writer.commit(3).await.unwrap();
        let query = || crate::conformance::query("shared", &[1]);
        let started = std::time::Instant::now();
        while reader.search(query()).await.unwrap().is_empty() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reader never saw the commit");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(reader.position().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn position_and_documents_survive_a_reopen_but_staged_changes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivyIndex::open(dir.path(), 20_000_000).unwrap();
        let chat = |id| IndexedChat {
            chat_id: id,
            channel_id: 1,
            sender_id: 7,
            created_at_ms: 1,
            text: "kept".into(),
            removed_for: Vec::new(),
            version: id,
        };
        index.write(vec![IndexChange::Upsert(chat(1))]).await.unwrap();
        index.commit(10).await.unwrap();
        index.write(vec![IndexChange::Upsert(chat(2))]).await.unwrap();
        drop(index);
        let reopened = TantivyIndex::open(dir.path(), 20_000_000).unwrap();
        assert_eq!(reopened.position().await.unwrap(), 10);
        assert_eq!(reopened.documents().await.unwrap(), 1, "uncommitted changes are gone with their position");
    }
}
