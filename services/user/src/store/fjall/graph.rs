//! The social graph on fjall: follows with their counters, blocks and their epochs, friend
//! requests and friendships (keyspaces in the parent module's doc).

use super::*;

#[async_trait]
impl Follows for FjallUserStore {
    #[tracing::instrument(name = "user_store.follow", skip_all, fields(db.system = "fjall"))]
    async fn follow(&self, follower: u64, followee: u64, edge_id: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| s.add_follow(tx, follower, followee, edge_id)).await
    }

    #[tracing::instrument(name = "user_store.unfollow", skip_all, fields(db.system = "fjall"))]
    async fn unfollow(&self, follower: u64, followee: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| Ok(s.remove_follow(tx, follower, followee)?.is_some())).await
    }

    #[tracing::instrument(name = "user_store.list_followers", skip_all, fields(db.system = "fjall"))]
    async fn list_followers(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.blocking(move |s| s.edges(&s.followers, user_id, before, limit)).await
    }

    #[tracing::instrument(name = "user_store.list_following", skip_all, fields(db.system = "fjall"))]
    async fn list_following(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.blocking(move |s| s.edges(&s.following, user_id, before, limit)).await
    }

    #[tracing::instrument(name = "user_store.follow_counts", skip_all, fields(db.system = "fjall"))]
    async fn follow_counts(&self, user_id: u64) -> Result<(u64, u64), StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let k = user_id.to_be_bytes();
            Ok((counter(&snapshot, &s.follow_counts, &k, 0)?, counter(&snapshot, &s.follow_counts, &k, 1)?))
        })
        .await
    }

    #[tracing::instrument(name = "user_store.follow_counts_of", skip_all, fields(db.system = "fjall"))]
    async fn follow_counts_of(&self, user_ids: &[u64]) -> Result<Vec<(u64, u64)>, StoreError> {
        let ids = user_ids.to_vec();
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            ids.iter()
                .map(|id| {
                    let k = id.to_be_bytes();
                    Ok((counter(&snapshot, &s.follow_counts, &k, 0)?, counter(&snapshot, &s.follow_counts, &k, 1)?))
                })
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "user_store.following_ids", skip_all, fields(db.system = "fjall"))]
    async fn following_ids(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        self.blocking(move |s| {
            Ok(s.pairs_under(&s.db.read_tx(), &s.follow_pairs, user_id)?.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.park_edges", skip_all, fields(db.system = "fjall", %user_id))]
    async fn park_edges(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| s.park_follows(tx, user_id)).await
    }

    #[tracing::instrument(name = "user_store.restore_edges", skip_all, fields(db.system = "fjall", %user_id))]
    async fn restore_edges(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            for (outgoing, ks) in [(true, &s.parked_following), (false, &s.parked_followers)] {
                for (other, edge) in s.pairs_under(tx, ks, user_id)? {
                    tx.remove(ks, key(&[user_id, other]));
                    // why: the other side may have been deleted, erased or blocked (either way) since
                    if !s.is_live(tx, other)? || s.blocked_either_way(tx, user_id, other)? {
                        continue;
                    }
                    let (follower, followee) = if outgoing { (user_id, other) } else { (other, user_id) };
                    s.add_follow(tx, follower, followee, id_from(&edge)?)?;
                }
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.erase_edges", skip_all, fields(db.system = "fjall", %user_id))]
    async fn erase_edges(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            // why: a follow made between the deletion and its parking goes as well
            s.park_follows(tx, user_id)?;
            s.forget_parked_follows(tx, user_id)
        })
        .await
    }
}

#[async_trait]
impl Blocks for FjallUserStore {
    #[tracing::instrument(name = "user_store.block", skip_all, fields(db.system = "fjall"))]
    async fn block(&self, blocker: u64, blocked: u64, edge_id: u64, epoch: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| {
            s.raise_epoch(tx, blocker, epoch)?;
            s.raise_epoch(tx, blocked, epoch)?;
            if s.has(tx, &s.block_pairs, &[blocker, blocked])? {
                return Ok(false);
            }
            tx.insert(&s.block_pairs, key(&[blocker, blocked]), edge_id.to_be_bytes());
            tx.insert(&s.blocked_by, key(&[blocked, blocker]), edge_id.to_be_bytes());
            tx.insert(&s.blocking, key(&[blocker, edge_id, blocked]), b"");
            for (a, b) in [(blocker, blocked), (blocked, blocker)] {
                s.remove_follow(tx, a, b)?;
                s.remove_request(tx, a, b)?;
            }
            s.remove_friendship(tx, blocker, blocked)?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.unblock", skip_all, fields(db.system = "fjall"))]
    async fn unblock(&self, blocker: u64, blocked: u64, epoch: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| {
            s.raise_epoch(tx, blocker, epoch)?;
            s.raise_epoch(tx, blocked, epoch)?;
            s.remove_block(tx, blocker, blocked)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.list_blocked", skip_all, fields(db.system = "fjall"))]
    async fn list_blocked(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.blocking(move |s| s.edges(&s.blocking, user_id, before, limit)).await
    }

    #[tracing::instrument(name = "user_store.block_sets", skip_all, fields(db.system = "fjall"))]
    async fn block_sets(&self, user_id: u64) -> Result<BlockSets, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let ids = |ks: &Ks| -> Result<Vec<u64>, StoreError> {
                Ok(s.pairs_under(&snapshot, ks, user_id)?.into_iter().map(|(id, _)| id).collect())
            };
            Ok(BlockSets {
                blocking: ids(&s.block_pairs)?,
                blocked_by: ids(&s.blocked_by)?,
                epoch: counter(&snapshot, &s.block_epochs, &user_id.to_be_bytes(), 0)?,
            })
        })
        .await
    }

    #[tracing::instrument(name = "user_store.standing", skip_all, fields(db.system = "fjall"))]
    async fn standing(&self, user_id: u64, other: u64) -> Result<Standing, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let both = |ks: &Ks| -> Result<(bool, bool), StoreError> {
                Ok((s.has(&snapshot, ks, &[user_id, other])?, s.has(&snapshot, ks, &[other, user_id])?))
            };
            let (following, followed_by) = both(&s.follow_pairs)?;
            let (blocking, blocked_by) = both(&s.block_pairs)?;
            let (request_sent, request_received) = both(&s.request_pairs)?;
            let friends = s.has(&snapshot, &s.friendships, &[user_id, other])?;
            Ok(Standing { following, followed_by, blocking, blocked_by, friends, request_sent, request_received })
        })
        .await
    }

    #[tracing::instrument(name = "user_store.block_epoch", skip_all, fields(db.system = "fjall"))]
    async fn block_epoch(&self, user_id: u64) -> Result<u64, StoreError> {
        self.blocking(move |s| counter(&s.db.read_tx(), &s.block_epochs, &user_id.to_be_bytes(), 0)).await
    }

    #[tracing::instrument(name = "user_store.erase_blocks", skip_all, fields(db.system = "fjall", %user_id))]
    async fn erase_blocks(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            for (blocked, _) in s.pairs_under(tx, &s.block_pairs, user_id)? {
                s.remove_block(tx, user_id, blocked)?;
            }
            for (blocker, _) in s.pairs_under(tx, &s.blocked_by, user_id)? {
                s.remove_block(tx, blocker, user_id)?;
            }
            tx.remove(&s.block_epochs, user_id.to_be_bytes());
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Friends for FjallUserStore {
    #[tracing::instrument(name = "user_store.send_friend_request", skip_all, fields(db.system = "fjall"))]
    async fn send_friend_request(&self, from: u64, to: u64, edge_id: u64) -> Result<RequestOutcome, StoreError> {
        self.write(move |s, tx| {
            if s.has(tx, &s.friendships, &[from, to])? {
                return Ok(RequestOutcome::AlreadyFriends);
            }
            if s.has(tx, &s.request_pairs, &[from, to])? {
                return Ok(RequestOutcome::AlreadySent);
            }
            if s.has(tx, &s.request_pairs, &[to, from])? {
                return Ok(RequestOutcome::TheyAsked);
            }
            s.add_request(tx, from, to, edge_id);
            Ok(RequestOutcome::Sent)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.delete_friend_request", skip_all, fields(db.system = "fjall"))]
    async fn delete_friend_request(&self, from: u64, to: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| s.remove_request(tx, from, to)).await
    }

    #[tracing::instrument(name = "user_store.list_friend_requests", skip_all, fields(db.system = "fjall"))]
    async fn list_friend_requests(
        &self,
        user_id: u64,
        direction: Option<Direction>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let directions = match direction {
                Some(d) => vec![d],
                None => vec![Direction::Incoming, Direction::Outgoing],
            };
            let mut pending = Vec::new();
            for d in directions {
                pending.extend(s.pending(&snapshot, user_id, d, before, limit)?);
            }
            pending.sort_by_key(|p| std::cmp::Reverse((p.edge_id, p.user_id)));
            pending.truncate(limit);
            Ok(pending)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.accept_friend_request", skip_all, fields(db.system = "fjall"))]
    async fn accept_friend_request(
        &self,
        from: u64,
        to: u64,
        edge_id: u64,
        direct_channel_id: u64,
    ) -> Result<Option<Friendship>, StoreError> {
        self.write(move |s, tx| {
            if !s.remove_request(tx, from, to)? {
                return Ok(None);
            }
            s.remove_request(tx, to, from)?;
            s.add_friendship(tx, to, from, edge_id, direct_channel_id).map(Some)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.remove_friend", skip_all, fields(db.system = "fjall"))]
    async fn remove_friend(&self, user_id: u64, friend: u64) -> Result<bool, StoreError> {
        self.write(move |s, tx| Ok(s.remove_friendship(tx, user_id, friend)?.is_some())).await
    }

    #[tracing::instrument(name = "user_store.get_friendship", skip_all, fields(db.system = "fjall"))]
    async fn get_friendship(&self, user_id: u64, friend: u64) -> Result<Option<Friendship>, StoreError> {
        self.blocking(move |s| s.read_friendship(&s.db.read_tx(), user_id, friend)).await
    }

    #[tracing::instrument(name = "user_store.list_friends", skip_all, fields(db.system = "fjall"))]
    async fn list_friends(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Friendship>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let start = key(&[user_id]);
            let iter = match before {
                Some(before) => snapshot.range(&s.friend_list, start..key(&[user_id, before])),
                None => snapshot.prefix(&s.friend_list, start),
            };
            iter.rev()
                .take(limit)
                .map(|guard| {
                    let (k, v) = guard.into_inner().map_err(backend)?;
                    Ok(Friendship { user_id: part(&k, 2)?, edge_id: part(&k, 1)?, direct_channel_id: part(&v, 0)? })
                })
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "user_store.friend_count", skip_all, fields(db.system = "fjall"))]
    async fn friend_count(&self, user_id: u64) -> Result<u64, StoreError> {
        self.blocking(move |s| counter(&s.db.read_tx(), &s.friend_counts, &user_id.to_be_bytes(), 0)).await
    }

    #[tracing::instrument(name = "user_store.park_friends", skip_all, fields(db.system = "fjall", %user_id))]
    async fn park_friends(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| s.park_friendships(tx, user_id)).await
    }

    #[tracing::instrument(name = "user_store.restore_friends", skip_all, fields(db.system = "fjall", %user_id))]
    async fn restore_friends(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            for (friend, parked) in s.pairs_under(tx, &s.parked_friends, user_id)? {
                tx.remove(&s.parked_friends, key(&[user_id, friend]));
                if !s.is_live(tx, friend)? || s.blocked_either_way(tx, user_id, friend)? {
                    continue;
                }
                s.add_friendship(tx, user_id, friend, part(&parked, 0)?, part(&parked, 1)?)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.erase_friends", skip_all, fields(db.system = "fjall", %user_id))]
    async fn erase_friends(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            s.park_friendships(tx, user_id)?;
            s.forget_parked_friends(tx, user_id)
        })
        .await
    }
}
