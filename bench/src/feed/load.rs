//! The feed benchmark's data: the bulk loader writing followers, followees and readers into
//! the stopped server's user store, and access tokens for loaded accounts.

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::{Context, ensure};
use chatmesh_platform::{
    auth::{Authenticator, UserKeys},
    config::AuthConfig,
    ids::{IdGenerator, now_ms},
};
use chatmesh_user::{
    UserRecord, search_terms_of,
    store::{BulkFollow, BulkLoaded, BulkUser, FjallUserStore, Follows},
};

use super::{LOADER_NODE, READERS, Sizes};
use crate::server::User;

/// Accounts made and handed to the loader at a time.
pub(super) const BATCH: usize = 10_000;
/// A password hash no password matches: nobody signs in as a loaded account.
const NO_PASSWORD: &str = "!bulk-loaded";

/// What the loader wrote.
pub(super) struct Loaded {
    /// The followers of the posting account, oldest follow first.
    pub(super) followers: Vec<u64>,
    pub(super) followees: Vec<u64>,
    pub(super) readers: Vec<u64>,
    pub(super) secs: f64,
}

/// A loaded account: no password, no username.
fn account(ids: &IdGenerator, kind: &str, n: usize, now: u64) -> BulkUser {
    let user = UserRecord {
        user_id: ids.next_id(),
        email: format!("feed-{kind}{n}@load.example.com"),
        name: format!("Feed {kind} {n}"),
        username: None,
        avatar_url: String::new(),
        bio: String::new(),
        password_hash: NO_PASSWORD.into(),
        created_at_ms: now,
        updated_at_ms: now,
        role: Default::default(),
        suspension: None,
        deleted_at_ms: None,
    };
    BulkUser { terms: search_terms_of(&user, now), user }
}

/// Writes `sizes.followers` accounts following `star`, and the readers following every one of
/// the followees, straight into the user store in `dir`.
pub(super) async fn load(dir: &Path, star: u64, sizes: Sizes) -> anyhow::Result<Loaded> {
    let store = Arc::new(FjallUserStore::open(dir).context("opening the stopped server's user store")?);
    let ids = IdGenerator::new(LOADER_NODE).map_err(anyhow::Error::msg)?;
    let now = now_ms();
    let started = Instant::now();
    let mut followers = Vec::with_capacity(sizes.followers);
    let mut writing: Option<tokio::task::JoinHandle<_>> = None;
    let mut written = (0, 0);
    for first in (0..sizes.followers).step_by(BATCH) {
        let size = BATCH.min(sizes.followers - first);
        let users: Vec<BulkUser> = (first..first + size).map(|n| account(&ids, "follower", n, now)).collect();
        let follows: Vec<BulkFollow> = users
            .iter()
            .map(|u| BulkFollow { follower: u.user.user_id, followee: star, edge_id: ids.next_id() })
            .collect();
        followers.extend(users.iter().map(|u| u.user.user_id));
        // why: the next batch is made while this one is written (one core each)
        if let Some(task) = writing.take() {
            let done: BulkLoaded = task.await??;
            written = (written.0 + done.users, written.1 + done.follows);
        }
        let store = store.clone();
        writing = Some(tokio::task::spawn_blocking(move || store.bulk_load(&users, &follows)));
    }
    if let Some(task) = writing {
        let done = task.await??;
        written = (written.0 + done.users, written.1 + done.follows);
    }
    ensure!(
        written == (sizes.followers, sizes.followers),
        "the loader wrote {written:?} of {} followers",
        sizes.followers
    );

    let followees: Vec<BulkUser> = (0..sizes.followees).map(|n| account(&ids, "followee", n, now)).collect();
    let readers: Vec<BulkUser> = (0..READERS).map(|n| account(&ids, "reader", n, now)).collect();
    let follows: Vec<BulkFollow> = readers
        .iter()
        .flat_map(|r| followees.iter().map(|f| (r.user.user_id, f.user.user_id)))
        .map(|(follower, followee)| BulkFollow { follower, followee, edge_id: ids.next_id() })
        .collect();
    let users: Vec<BulkUser> = followees.iter().chain(&readers).cloned().collect();
    let done = store.bulk_load(&users, &follows)?;
    ensure!(done.follows == follows.len(), "the loader wrote {} of {} reader follows", done.follows, follows.len());
    let secs = started.elapsed().as_secs_f64();

    let counted = store.follow_counts(star).await?;
    ensure!(counted == (sizes.followers as u64, 0), "after the load the posting account counts {counted:?} follows");
    let readers: Vec<u64> = readers.iter().map(|r| r.user.user_id).collect();
    let counted = store.follow_counts(readers[0]).await?;
    ensure!(counted == (0, sizes.followees as u64), "after the load a reader counts {counted:?} follows");
    let followees = followees.iter().map(|f| f.user.user_id).collect();
    Ok(Loaded { followers, followees, readers, secs })
}

/// Signs access tokens for loaded accounts with the user key in the server's data dir.
pub(super) struct Tokens(Authenticator);

impl Tokens {
    pub(super) fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let config = AuthConfig { access_ttl_secs: 7_200, ..AuthConfig::default() };
        let auth = Authenticator::open(config, data_dir, UserKeys::Sign)
            .map_err(|e| anyhow::anyhow!("the server's signing keys: {e}"))?;
        Ok(Self(auth))
    }

    pub(super) fn user(&self, user_id: u64) -> User {
        User { id: user_id.to_string(), token: self.0.issue_access(user_id, &format!("bench-{user_id}")).token }
    }
}
