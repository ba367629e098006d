//! Channels and membership from outside: every rule, including the forbidden paths, with the
//! state checked unchanged after each refusal.

use chatmesh_api::channel::v1::{
    self as pb, ChannelKind, ChannelVisibility, MemberRole,
    channel_internal_service_client::ChannelInternalServiceClient, channel_service_client::ChannelServiceClient,
};
use chatmesh_tests::{TestApp, User, authed};
use tonic::{Code, transport::Channel};

/// What an RPC on a channel answered: Ok or the code.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// The channel's state as its owner sees it: the record (version aside) and its members.
async fn snapshot(client: &mut ChannelServiceClient<Channel>, owner: &User, channel_id: &str) -> String {
    let channel = client
        .get_channel(authed(&owner.token, pb::GetChannelRequest { channel_id: channel_id.into() }))
        .await
        .map(|r| format!("{:?}", r.into_inner().channel))
        .unwrap_or_else(|s| format!("{:?}", s.code()));
    let members = client
        .list_members(authed(
            &owner.token,
            pb::ListMembersRequest { channel_id: channel_id.into(), ..Default::default() },
        ))
        .await
        .map(|r| format!("{:?}", r.into_inner().members))
        .unwrap_or_else(|s| format!("{:?}", s.code()));
    format!("{channel}\n{members}")
}

async fn my_channel_ids(client: &mut ChannelServiceClient<Channel>, user: &User, include_closed: bool) -> Vec<String> {
    let request = pb::ListMyChannelsRequest { include_closed, ..Default::default() };
    let response = client.list_my_channels(authed(&user.token, request)).await.unwrap().into_inner();
    response.channels.into_iter().map(|c| c.channel_id).collect()
}

/// Every id-taking RPC, called by `who` on `channel_id` (targeting `other` where a user is needed).
async fn every_rpc(
    client: &mut ChannelServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    other: &User,
) -> Vec<(&'static str, Code)> {
    let id = || channel_id.to_owned();
    let t = &who.token;
    vec![
        ("GetChannel", code(client.get_channel(authed(t, pb::GetChannelRequest { channel_id: id() })).await)),
        (
            "UpdateChannel",
            code(
                client
                    .update_channel(authed(
                        t,
                        pb::UpdateChannelRequest { channel_id: id(), name: "renamed".into(), ..Default::default() },
                    ))
                    .await,
            ),
        ),
        (
            "CreateMember",
            code(
                client
                    .create_member(authed(t, pb::CreateMemberRequest { channel_id: id(), user_id: other.id.clone() }))
                    .await,
            ),
        ),
        (
            "ListMembers",
            code(
                client.list_members(authed(t, pb::ListMembersRequest { channel_id: id(), ..Default::default() })).await,
            ),
        ),
        (
            "UpdateMember",
            code(
                client
                    .update_member(authed(
                        t,
                        pb::UpdateMemberRequest {
                            channel_id: id(),
                            user_id: other.id.clone(),
                            role: MemberRole::Admin as i32,
                        },
                    ))
                    .await,
            ),
        ),
        (
            "DeleteMember",
            code(
                client
                    .delete_member(authed(t, pb::DeleteMemberRequest { channel_id: id(), user_id: other.id.clone() }))
                    .await,
            ),
        ),
        ("CloseChannel", code(client.close_channel(authed(t, pb::CloseChannelRequest { channel_id: id() })).await)),
        ("ReopenChannel", code(client.reopen_channel(authed(t, pb::ReopenChannelRequest { channel_id: id() })).await)),
        ("DeleteChannel", code(client.delete_channel(authed(t, pb::DeleteChannelRequest { channel_id: id() })).await)),
    ]
}

#[tokio::test]
async fn every_id_taking_rpc_works_for_the_owner_and_is_refused_to_outsiders() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let member = app.user("member").await;
    let kicked = app.user("kicked").await;
    let stranger = app.user("stranger").await;
    let elsewhere = app.user("elsewhere").await;
    let invitee = app.user("invitee").await;

    let private = app.group(&owner, ChannelVisibility::Private, &[&member, &kicked]).await;
    let public = app.group(&owner, ChannelVisibility::Public, &[&member, &kicked]).await;
    app.group(&elsewhere, ChannelVisibility::Private, &[]).await;
    for channel in [&private, &public] {
        let kick = pb::DeleteMemberRequest { channel_id: channel.channel_id.clone(), user_id: kicked.id.clone() };
        client.delete_member(authed(&owner.token, kick)).await.expect("kick");
    }

    for (channel, outsider_code) in [(&private, Code::NotFound), (&public, Code::PermissionDenied)] {
        let before = snapshot(&mut client, &owner, &channel.channel_id).await;
        for outsider in [&stranger, &kicked, &elsewhere] {
            for (rpc, got) in every_rpc(&mut client, outsider, &channel.channel_id, &member).await {
                let expected = match (rpc, outsider_code) {
                    // a public channel shows its preview to anyone
                    ("GetChannel", Code::PermissionDenied) => Code::Ok,
                    _ => outsider_code,
                };
                assert_eq!(got, expected, "{rpc} by an outsider on a {:?} channel", channel.visibility());
            }
        }
        assert_eq!(snapshot(&mut client, &owner, &channel.channel_id).await, before, "outsiders changed nothing");
    }

    // the preview of a public channel carries no member data
    let preview = client
        .get_channel(authed(&stranger.token, pb::GetChannelRequest { channel_id: public.channel_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(preview.membership.is_none());
    let preview = preview.channel.unwrap();
    assert_eq!((preview.name.as_str(), preview.member_count, preview.owner_id.as_str()), ("team", 2, ""));

    // the owner may do everything (the invitee is the target user)
    for (rpc, got) in every_rpc(&mut client, &owner, &private.channel_id, &invitee).await {
        assert_eq!(got, Code::Ok, "{rpc} by the owner");
    }
    let gone = client
        .get_channel(authed(&owner.token, pb::GetChannelRequest { channel_id: private.channel_id.clone() }))
        .await;
    assert_eq!(code(gone), Code::NotFound, "deleted");
}

#[tokio::test]
async fn role_rules_hold_and_refusals_change_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let admin = app.user("admin").await;
    let member = app.user("member").await;
    let other = app.user("other").await;
    let outsider = app.user("outsider").await;
    let channel = app.group(&owner, ChannelVisibility::Private, &[&admin, &member, &other]).await;
    let id = channel.channel_id.clone();
    let promote =
        pb::UpdateMemberRequest { channel_id: id.clone(), user_id: admin.id.clone(), role: MemberRole::Admin as i32 };
    client.update_member(authed(&owner.token, promote)).await.expect("owner makes an admin");
    let before = snapshot(&mut client, &owner, &id).await;

    let denied = |r: Code| assert_eq!(r, Code::PermissionDenied);
    // a MEMBER cannot invite into a private group, kick, rename or delete
    denied(code(
        client
            .create_member(authed(
                &member.token,
                pb::CreateMemberRequest { channel_id: id.clone(), user_id: outsider.id.clone() },
            ))
            .await,
    ));
    denied(code(
        client
            .delete_member(authed(
                &member.token,
                pb::DeleteMemberRequest { channel_id: id.clone(), user_id: other.id.clone() },
            ))
            .await,
    ));
    denied(code(
        client
            .update_channel(authed(
                &member.token,
                pb::UpdateChannelRequest { channel_id: id.clone(), name: "mine".into(), ..Default::default() },
            ))
            .await,
    ));
    denied(code(
        client.delete_channel(authed(&member.token, pb::DeleteChannelRequest { channel_id: id.clone() })).await,
    ));
    // an ADMIN cannot kick the OWNER, promote anyone to ADMIN or OWNER, or delete
    denied(code(
        client
            .delete_member(authed(
                &admin.token,
                pb::DeleteMemberRequest { channel_id: id.clone(), user_id: owner.id.clone() },
            ))
            .await,
    ));
    for role in [MemberRole::Admin, MemberRole::Owner] {
        let raise = pb::UpdateMemberRequest { channel_id: id.clone(), user_id: member.id.clone(), role: role as i32 };
        denied(code(client.update_member(authed(&admin.token, raise)).await));
    }
    let demote_owner =
        pb::UpdateMemberRequest { channel_id: id.clone(), user_id: owner.id.clone(), role: MemberRole::Member as i32 };
    denied(code(client.update_member(authed(&admin.token, demote_owner)).await));
    denied(code(
        client.delete_channel(authed(&admin.token, pb::DeleteChannelRequest { channel_id: id.clone() })).await,
    ));
    // the owner cannot leave without handing ownership over
    let leave = pb::DeleteMemberRequest { channel_id: id.clone(), user_id: owner.id.clone() };
    assert_eq!(code(client.delete_member(authed(&owner.token, leave.clone())).await), Code::FailedPrecondition);
    assert_eq!(snapshot(&mut client, &owner, &id).await, before, "every refusal left the channel as it was");

    // what an ADMIN may do: rename, invite, kick a MEMBER
    client
        .update_channel(authed(
            &admin.token,
            pb::UpdateChannelRequest { channel_id: id.clone(), name: "renamed".into(), ..Default::default() },
        ))
        .await
        .expect("admin renames");
    client
        .create_member(authed(
            &admin.token,
            pb::CreateMemberRequest { channel_id: id.clone(), user_id: outsider.id.clone() },
        ))
        .await
        .expect("admin invites");
    client
        .delete_member(authed(
            &admin.token,
            pb::DeleteMemberRequest { channel_id: id.clone(), user_id: other.id.clone() },
        ))
        .await
        .expect("admin kicks");

    // ownership transfer: the old owner becomes ADMIN and may then leave
    let transfer =
        pb::UpdateMemberRequest { channel_id: id.clone(), user_id: admin.id.clone(), role: MemberRole::Owner as i32 };
    let new_owner = client.update_member(authed(&owner.token, transfer)).await.unwrap().into_inner().member.unwrap();
    assert_eq!(new_owner.role(), MemberRole::Owner);
    let channel = client
        .get_channel(authed(&admin.token, pb::GetChannelRequest { channel_id: id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(channel.channel.unwrap().owner_id, admin.id);
    client.delete_member(authed(&owner.token, leave)).await.expect("the former owner leaves");
}

#[tokio::test]
async fn twenty_concurrent_direct_channel_requests_make_one_channel() {
    let app = TestApp::spawn().await;
    let a = app.user("a").await;
    let b = app.user("b").await;
    let transport = app.channel().await;
    let requests = (0..20).map(|i| {
        let mut client = ChannelServiceClient::new(transport.clone());
        let (caller, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let request = pb::CreateChannelRequest {
            kind: ChannelKind::Direct as i32,
            member_ids: if i % 4 < 2 { vec![other.id.clone()] } else { vec![caller.id.clone(), other.id.clone()] },
            ..Default::default()
        };
        let token = caller.token.clone();
        async move { client.create_channel(authed(&token, request)).await.map(|r| r.into_inner()) }
    });
    let results = futures::future::join_all(requests).await;
    let ids: std::collections::BTreeSet<_> =
        results.iter().map(|r| r.as_ref().unwrap().channel.as_ref().unwrap().channel_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one direct channel per pair");
    assert_eq!(results.iter().filter(|r| r.as_ref().unwrap().created).count(), 1);
    let mut client = app.channels().await;
    assert_eq!(my_channel_ids(&mut client, &a, false).await.len(), 1);
    assert_eq!(my_channel_ids(&mut client, &b, false).await.len(), 1);
}

#[tokio::test]
async fn leave_rejoin_kick_reinvite_close_reopen_delete() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let public = app.group(&owner, ChannelVisibility::Public, &[]).await;
    let private = app.group(&owner, ChannelVisibility::Private, &[&bob]).await;
    let (pub_id, priv_id) = (public.channel_id.clone(), private.channel_id.clone());

    // join a public group, leave, rejoin
    client
        .create_member(authed(
            &bob.token,
            pb::CreateMemberRequest { channel_id: pub_id.clone(), user_id: String::new() },
        ))
        .await
        .unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![priv_id.clone(), pub_id.clone()], "newest first");
    let again = client
        .create_member(authed(
            &bob.token,
            pb::CreateMemberRequest { channel_id: pub_id.clone(), user_id: String::new() },
        ))
        .await;
    assert_eq!(code(again), Code::AlreadyExists);
    client
        .delete_member(authed(
            &bob.token,
            pb::DeleteMemberRequest { channel_id: pub_id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![priv_id.clone()]);
    client
        .create_member(authed(
            &bob.token,
            pb::CreateMemberRequest { channel_id: pub_id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![priv_id.clone(), pub_id.clone()]);

    // kicked from a private group: it vanishes for him; a self-join is NOT_FOUND; re-invited, it is back
    client
        .delete_member(authed(
            &owner.token,
            pb::DeleteMemberRequest { channel_id: priv_id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![pub_id.clone()]);
    let join = client
        .create_member(authed(
            &bob.token,
            pb::CreateMemberRequest { channel_id: priv_id.clone(), user_id: String::new() },
        ))
        .await;
    assert_eq!(code(join), Code::NotFound);
    let invited = client
        .create_member(authed(
            &owner.token,
            pb::CreateMemberRequest { channel_id: priv_id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(invited.invited_by, owner.id);
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![priv_id.clone(), pub_id.clone()]);

    // close hides it from the list (membership stays); reopen shows it again
    client.close_channel(authed(&bob.token, pb::CloseChannelRequest { channel_id: priv_id.clone() })).await.unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![pub_id.clone()]);
    assert_eq!(my_channel_ids(&mut client, &bob, true).await, vec![priv_id.clone(), pub_id.clone()]);
    let still = client
        .get_channel(authed(&bob.token, pb::GetChannelRequest { channel_id: priv_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(still.membership.unwrap().closed);
    client.reopen_channel(authed(&bob.token, pb::ReopenChannelRequest { channel_id: priv_id.clone() })).await.unwrap();
    assert_eq!(my_channel_ids(&mut client, &bob, false).await, vec![priv_id.clone(), pub_id.clone()]);

    // delete: gone for everyone
    client
        .delete_channel(authed(&owner.token, pb::DeleteChannelRequest { channel_id: priv_id.clone() }))
        .await
        .unwrap();
    for who in [&owner, &bob] {
        let got = client.get_channel(authed(&who.token, pb::GetChannelRequest { channel_id: priv_id.clone() })).await;
        assert_eq!(code(got), Code::NotFound);
        assert!(!my_channel_ids(&mut client, who, true).await.contains(&priv_id));
    }
}

#[tokio::test]
async fn list_pages_are_clamped_and_follow_their_tokens() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.group(&owner, ChannelVisibility::Private, &[]).await.channel_id);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListMyChannelsRequest { page_size: 2, page_token: token.clone(), include_closed: false };
        let page = client.list_my_channels(authed(&owner.token, request)).await.unwrap().into_inner();
        assert!(page.channels.len() <= 2);
        seen.extend(page.channels.into_iter().map(|c| c.channel_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created);
    let bad = client
        .list_my_channels(authed(
            &owner.token,
            pb::ListMyChannelsRequest { page_token: "garbage".into(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("page_token"));
}

#[tokio::test]
async fn internal_rpcs_refuse_user_tokens_and_epochs_grow_with_membership_changes() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let channel = app.group(&owner, ChannelVisibility::Private, &[&bob]).await;
    let mut internal = ChannelInternalServiceClient::new(app.channel().await);
    let check = || pb::CheckMembershipRequest { channel_id: channel.channel_id.clone(), user_id: bob.id.clone() };

    let status = internal.check_membership(authed(&owner.token, check())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = internal
        .list_user_channel_ids(authed(
            &owner.token,
            pb::ListUserChannelIdsRequest { user_id: bob.id.clone(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let service = app.service_token("chat");
    let before = internal.check_membership(authed(&service, check())).await.unwrap().into_inner();
    assert!(before.channel_exists && before.is_member);
    assert_eq!(before.role(), MemberRole::Member);
    client
        .delete_member(authed(
            &owner.token,
            pb::DeleteMemberRequest { channel_id: channel.channel_id.clone(), user_id: bob.id.clone() },
        ))
        .await
        .unwrap();
    let after = internal.check_membership(authed(&service, check())).await.unwrap().into_inner();
    assert!(!after.is_member, "the kick is visible to the very next check");
    assert!(after.membership_epoch > before.membership_epoch);
    let ids = internal
        .list_user_channel_ids(authed(
            &service,
            pb::ListUserChannelIdsRequest { user_id: owner.id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids.channel_ids, vec![channel.channel_id.clone()]);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut client = app.channels().await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let create = |kind: i32, name: &str, members: Vec<String>| pb::CreateChannelRequest {
        kind,
        name: name.into(),
        member_ids: members,
        ..Default::default()
    };
    let group_kind = ChannelKind::Group as i32;
    let direct = ChannelKind::Direct as i32;
    let cases = [
        ("name", Code::InvalidArgument, create(group_kind, "", vec![])),
        ("name", Code::InvalidArgument, create(group_kind, &"n".repeat(101), vec![])),
        ("kind", Code::InvalidArgument, create(0, "team", vec![])),
        ("kind", Code::InvalidArgument, create(42, "team", vec![])),
        ("member_ids", Code::InvalidArgument, create(direct, "", vec![])),
        ("member_ids", Code::InvalidArgument, create(direct, "", vec![owner.id.clone()])),
        ("member_ids", Code::InvalidArgument, create(direct, "", vec![bob.id.clone(), carol.id.clone()])),
        ("member_ids", Code::InvalidArgument, create(group_kind, "team", vec!["not-an-id".into()])),
        ("member_ids", Code::NotFound, create(group_kind, "team", vec![bob.id.clone(), "123456789".into()])),
        ("member_ids", Code::NotFound, create(direct, "", vec!["123456789".into()])),
        (
            "visibility",
            Code::InvalidArgument,
            pb::CreateChannelRequest { kind: group_kind, name: "t".into(), visibility: 9, ..Default::default() },
        ),
        (
            "image_url",
            Code::InvalidArgument,
            pb::CreateChannelRequest {
                kind: group_kind,
                name: "t".into(),
                image_url: "file:///etc/passwd".into(),
                ..Default::default()
            },
        ),
    ];
    for (field, expected, request) in cases {
        let status = client.create_channel(authed(&owner.token, request)).await.unwrap_err();
        assert_eq!(status.code(), expected, "{field}: {}", status.message());
        assert!(status.message().starts_with(field), "names {field}: {}", status.message());
    }
    assert!(my_channel_ids(&mut client, &owner, true).await.is_empty(), "nothing was stored");
    assert!(my_channel_ids(&mut client, &bob, true).await.is_empty());

    let channel = app.group(&owner, ChannelVisibility::Private, &[]).await;
    let invite_nobody = pb::CreateMemberRequest { channel_id: channel.channel_id.clone(), user_id: "123456789".into() };
    let status = client.create_member(authed(&owner.token, invite_nobody)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().starts_with("user_id"));
    let bad_role = pb::UpdateMemberRequest { channel_id: channel.channel_id.clone(), user_id: bob.id.clone(), role: 0 };
    let status = client.update_member(authed(&owner.token, bad_role)).await.unwrap_err();
    assert!(status.message().starts_with("role"));
    for bad in ["", "x", "-1"] {
        let status = client
            .get_channel(authed(&owner.token, pb::GetChannelRequest { channel_id: bad.into() }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("channel_id"));
    }
    assert_eq!(
        snapshot(&mut client, &owner, &channel.channel_id).await.matches("user_id").count(),
        1,
        "only the owner"
    );
}
