//! Uploads and attachments: starting an upload, what makes an upload attachable, claiming its
//! file for good when it is attached, and download URLs for the attachments a caller may read
//! (checked again at each use of a local URL, through [`media::Gate`]).

use std::sync::{Arc, Weak};

use chatmesh_platform::ids::unix_ms_of;
use chatmesh_wire::chat as wire;

use super::ChatCore;
use crate::{
    error::ChatError,
    media::{self, MediaError, SignedUrl, Stored},
    model::{AttachmentRecord, UploadRecord, UploadState},
};

/// Whether an upload of `size_bytes` bytes of `content_type` may start, given the content types
/// this process accepts and its largest file. Returns the size.
pub fn upload_allowed(
    accepted: &[String],
    max_bytes: u64,
    content_type: &str,
    size_bytes: i64,
) -> Result<u64, ChatError> {
    if !media::accepts(accepted, content_type) {
        return Err(ChatError::ContentTypeNotAccepted(content_type.to_owned()));
    }
    match u64::try_from(size_bytes) {
        Ok(size) if (1..=max_bytes).contains(&size) => Ok(size),
        _ => Err(ChatError::SizeOutOfRange { max: max_bytes }),
    }
}

/// Whether upload `upload_id` (`upload`, as stored) may be attached by `caller` to a chat in
/// `channel_id`: it is theirs, of that channel, and still pending.
pub fn attachable(
    upload_id: u64,
    upload: Option<UploadRecord>,
    caller: u64,
    channel_id: u64,
) -> Result<UploadRecord, ChatError> {
    let upload = match upload {
        Some(u) if u.uploader_id == caller && u.channel_id == channel_id => u,
        _ => return Err(ChatError::UploadNotYours(upload_id)),
    };
    match upload.state {
        UploadState::Pending => Ok(upload),
        UploadState::Attached(_) => Err(ChatError::UploadAttached(upload_id)),
        UploadState::Reclaiming => Err(ChatError::UploadExpired(upload_id)),
    }
}

/// Whether what is stored under an upload's key (`stored`, `None`: nothing yet) is what was
/// declared: its size, and its type where the backend keeps one. On
/// [`ChatError::UploadMismatch`] the caller deletes the file.
pub fn stored_as_declared(upload: &UploadRecord, stored: Option<&Stored>) -> Result<(), ChatError> {
    let Some(stored) = stored else { return Err(ChatError::UploadNotFinished(upload.upload_id)) };
    let type_matches = stored.content_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&upload.content_type));
    if stored.size != upload.size_bytes || !type_matches {
        return Err(ChatError::UploadMismatch {
            upload_id: upload.upload_id,
            size_bytes: upload.size_bytes,
            content_type: upload.content_type.clone(),
        });
    }
    Ok(())
}

impl ChatCore {
    /// Starts an upload: records it (pending) and hands out the URL to PUT its bytes to.
    pub async fn create_upload(
        &self,
        caller: u64,
        cmd: wire::CreateUpload,
        size_bytes: i64,
    ) -> Result<(UploadRecord, SignedUrl), ChatError> {
        let wire::CreateUpload { channel_id, file_name, content_type } = cmd;
        let media = self.media()?;
        // why: what is accepted is this process's media setting, so the check is here, not in the wire crate.
        let size_bytes = upload_allowed(media.content_types(), media.max_bytes(), &content_type, size_bytes)?;
        self.writer(channel_id, caller).await?;
        let upload_id = self.ids.next_id();
        let upload = UploadRecord {
            upload_id,
            uploader_id: caller,
            channel_id,
            file_name,
            content_type,
            size_bytes,
            created_at_ms: unix_ms_of(upload_id),
            state: UploadState::Pending,
        };
        self.store.create_upload(upload.clone()).await?;
        let signed = media.upload_url(upload.upload_id, &upload.content_type, upload.size_bytes).await?;
        Ok((upload, signed))
    }

    /// A URL to download an attachment of a chat the caller may read; any other upload is
    /// not found.
    pub async fn get_attachment_url(&self, caller: u64, cmd: wire::GetAttachmentUrl) -> Result<SignedUrl, ChatError> {
        let media = self.media()?;
        let upload = self.readable_attachment(cmd.upload_id, caller).await?;
        // why: files attached before attachments had a key of their own are still only staged;
        // the first download claims them (a no-op once the attached copy exists).
        let attached_key = media::attached_key(upload.upload_id);
        if media.inspect(&attached_key).await?.is_none() {
            media.claim(upload.upload_id).await?;
            // why: the staged key took PUTs until its URL expired; bytes that are not what was
            // attached are never served
            let claimed = media.inspect(&attached_key).await?.map(|stored| Stored { content_type: None, ..stored });
            if stored_as_declared(&upload, claimed.as_ref()).is_err() {
                media.delete(&attached_key).await?;
                return Err(ChatError::AttachmentNotFound(upload.upload_id));
            }
        }
        Ok(media.download_url(upload.upload_id, &upload.content_type, &upload.file_name, caller).await?)
    }

    /// Upload `upload_id` if it is attached to a chat `caller` may read that is not retracted;
    /// otherwise it is not found.
    async fn readable_attachment(&self, upload_id: u64, caller: u64) -> Result<UploadRecord, ChatError> {
        let not_found = || ChatError::AttachmentNotFound(upload_id);
        let upload = self.store.get_upload(upload_id).await?.ok_or_else(not_found)?;
        let UploadState::Attached(chat_id) = upload.state else { return Err(not_found()) };
        match self.readable_chat(chat_id, caller).await {
            Ok(chat) if !chat.is_retracted() => Ok(upload),
            Ok(_) | Err(ChatError::ChatNotFound(_) | ChatError::NotAMember(_)) => Err(not_found()),
            Err(e) => Err(e),
        }
    }

    /// Upload `upload_id` as a chat of `caller` in `channel_id` will carry it, once the rules
    /// allow it and its file is what was declared. The first attach to get this far claims the
    /// file: it is copied where no upload URL writes, and that copy is what every download
    /// serves, whatever is PUT afterwards. A file that does not match is deleted.
    pub(super) async fn attachment(
        &self,
        upload_id: u64,
        caller: u64,
        channel_id: u64,
    ) -> Result<AttachmentRecord, ChatError> {
        let media = self.media()?;
        let upload = attachable(upload_id, self.store.get_upload(upload_id).await?, caller, channel_id)?;
        let (staged_key, attached_key) = (media::staging_key(upload_id), media::attached_key(upload_id));
        // why: an attach refused after its claim (another upload of the chat, the commit) leaves
        // the claimed copy, which stays the file; only an unclaimed upload is claimed.
        if media.inspect(&attached_key).await?.is_none() {
            let staged = media.inspect(&staged_key).await?;
            if let Err(refused) = stored_as_declared(&upload, staged.as_ref()) {
                if matches!(refused, ChatError::UploadMismatch { .. }) {
                    media.delete(&staged_key).await?;
                }
                return Err(refused);
            }
            media.claim(upload_id).await?;
        }
        // why: bytes PUT between the check above and the claim are caught here; the type was
        // checked on the staged copy and every download states it, so only the size is read.
        let claimed = media.inspect(&attached_key).await?.map(|stored| Stored { content_type: None, ..stored });
        if let Err(refused) = stored_as_declared(&upload, claimed.as_ref()) {
            if matches!(refused, ChatError::UploadMismatch { .. }) {
                // a claimed copy never changes, so no attach can have accepted this one
                media.delete(&attached_key).await?;
            }
            return Err(refused);
        }
        media.drop_staged(upload_id, upload.created_at_ms).await;
        // why: the stored size is the declared one now, and says how much to read.
        let (width, height) = if upload.content_type.starts_with("image/") {
            media.dimensions(&attached_key, upload.size_bytes).await.unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        Ok(AttachmentRecord {
            upload_id,
            file_name: upload.file_name,
            content_type: upload.content_type,
            size_bytes: upload.size_bytes,
            width,
            height,
        })
    }
}

impl ChatCore {
    /// Lets this process's local media handler ask the rules above about the URLs it serves.
    pub fn answer_media_checks(self: &Arc<Self>) {
        if let Some(media) = &self.media {
            let core: Weak<Self> = Arc::downgrade(self);
            media.set_gate(core);
        }
    }
}

/// The local media handler's questions, answered by the rules above.
#[async_trait::async_trait]
impl media::Gate for ChatCore {
    async fn takes_bytes(&self, upload_id: u64) -> Result<bool, MediaError> {
        let upload = self.store.get_upload(upload_id).await.map_err(|e| MediaError::Backend(e.to_string()))?;
        Ok(upload.is_some_and(|u| u.state == UploadState::Pending))
    }

    async fn may_read(&self, upload_id: u64, viewer: u64) -> Result<bool, MediaError> {
        match self.readable_attachment(upload_id, viewer).await {
            Ok(_) => Ok(true),
            Err(ChatError::AttachmentNotFound(_)) => Ok(false),
            Err(e) => Err(MediaError::Backend(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(state: UploadState) -> UploadRecord {
        UploadRecord {
            upload_id: 9,
            uploader_id: 1,
            channel_id: 5,
            file_name: "cat.png".into(),
            content_type: "image/png".into(),
            size_bytes: 100,
            created_at_ms: 0,
            state,
        }
    }

    #[test]
    fn only_ones_own_pending_upload_of_the_channel_is_attachable() {
        let cases = [
            (Some(upload(UploadState::Pending)), 1, 5, "ok"),
            (None, 1, 5, "not yours"),
            (Some(upload(UploadState::Pending)), 2, 5, "not yours"),
            (Some(upload(UploadState::Pending)), 1, 6, "not yours"),
            (Some(upload(UploadState::Attached(3))), 1, 5, "attached"),
            (Some(upload(UploadState::Reclaiming)), 1, 5, "expired"),
        ];
        for (record, caller, channel, expected) in cases {
            let verdict = match attachable(9, record.clone(), caller, channel) {
                Ok(upload) if upload.upload_id == 9 => "ok",
                Err(ChatError::UploadNotYours(9)) => "not yours",
                Err(ChatError::UploadAttached(9)) => "attached",
                Err(ChatError::UploadExpired(9)) => "expired",
                other => panic!("{other:?}"),
            };
            assert_eq!(verdict, expected, "{record:?} by {caller} in {channel}");
        }
    }

    #[test]
    fn the_stored_file_must_be_what_was_declared() {
        let declared = upload(UploadState::Pending);
        let stored =
            |size: u64, content_type: Option<&str>| Stored { size, content_type: content_type.map(Into::into) };
        let cases = [
            (Some(stored(100, Some("image/png"))), "ok"),
            (Some(stored(100, Some("IMAGE/PNG"))), "ok"),
            // local files keep no type: their handler refused any other at upload
            (Some(stored(100, None)), "ok"),
            (None, "not finished"),
            (Some(stored(99, Some("image/png"))), "mismatch"),
            (Some(stored(100, Some("image/gif"))), "mismatch"),
            (Some(stored(101, None)), "mismatch"),
        ];
        for (stored, expected) in cases {
            let verdict = match stored_as_declared(&declared, stored.as_ref()) {
                Ok(()) => "ok",
                Err(ChatError::UploadNotFinished(9)) => "not finished",
                Err(ChatError::UploadMismatch { upload_id: 9, size_bytes: 100, .. }) => "mismatch",
                Err(e) => panic!("{e:?}"),
            };
            assert_eq!(verdict, expected, "{stored:?}");
        }
    }

    #[test]
    fn uploads_start_only_for_accepted_types_and_sizes() {
        let accepted = vec!["image/png".to_owned(), "application/pdf".to_owned()];
        let allowed = |content_type: &str, size: i64| upload_allowed(&accepted, 1000, content_type, size);
        assert_eq!(allowed("image/png", 1).unwrap(), 1);
        assert_eq!(allowed("application/pdf", 1000).unwrap(), 1000);
        assert!(matches!(allowed("image/", 10), Err(ChatError::ContentTypeNotAccepted(_))));
        assert!(matches!(allowed("text/html", 10), Err(ChatError::ContentTypeNotAccepted(_))));
        assert!(matches!(allowed("image/svg+xml", 10), Err(ChatError::ContentTypeNotAccepted(_))));
        assert!(matches!(allowed("image/html", 10), Err(ChatError::ContentTypeNotAccepted(_))));
        assert!(matches!(allowed("image/png", 0), Err(ChatError::SizeOutOfRange { max: 1000 })));
        assert!(matches!(allowed("image/png", -1), Err(ChatError::SizeOutOfRange { max: 1000 })));
        assert!(matches!(allowed("image/png", 1001), Err(ChatError::SizeOutOfRange { max: 1000 })));
        // the type is checked first, as it always was
        assert!(matches!(allowed("text/html", 0), Err(ChatError::ContentTypeNotAccepted(_))));
    }
}
