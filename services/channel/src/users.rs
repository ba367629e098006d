//! Which users exist and who blocked whom, asked of the user service through its internal API
//! (blocks through the platform's cached [`BlockClient`]).

use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_api::user::v1::{BatchGetUsersRequest, user_internal_service_client::UserInternalServiceClient};
use chatmesh_platform::{blocks::BlockClient, grpc::InternalChannel, membership::EpochBoard};
use tonic::Status;

#[async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// The ids among `user_ids` that name no account.
    async fn missing_users(&self, user_ids: &[u64]) -> Result<Vec<u64>, Status>;

    /// Whether either of two users has blocked the other.
    async fn blocked_between(&self, a: u64, b: u64) -> Result<bool, Status>;
}

/// The user service over gRPC, with this part's service token.
#[derive(Debug, Clone)]
pub struct GrpcUserDirectory {
    client: UserInternalServiceClient<InternalChannel>,
    blocks: BlockClient,
}

impl GrpcUserDirectory {
    /// `block_epochs`: the process's board of block epochs, which cached block answers yield to.
    pub fn new(channel: InternalChannel, block_epochs: Arc<EpochBoard>) -> Self {
        Self {
            client: UserInternalServiceClient::new(channel.clone()),
            blocks: BlockClient::new(channel, block_epochs),
        }
    }
}

#[async_trait]
impl UserDirectory for GrpcUserDirectory {
    async fn missing_users(&self, user_ids: &[u64]) -> Result<Vec<u64>, Status> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = BatchGetUsersRequest { user_ids: user_ids.iter().map(u64::to_string).collect() };
        let response = self.client.clone().batch_get_users(request).await?.into_inner();
        Ok(response.missing_user_ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    async fn blocked_between(&self, a: u64, b: u64) -> Result<bool, Status> {
        self.blocks.blocked_between(a, b).await
    }
}
