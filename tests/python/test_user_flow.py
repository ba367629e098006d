"""The account flow through stubs generated from proto/: proof that gRPC SDKs work."""

import uuid

import grpc
import pytest


def _clients(stubs, addr):
    from chatmesh.user.v1 import user_service_pb2_grpc

    channel = grpc.insecure_channel(addr)
    return user_service_pb2_grpc.UserServiceStub(channel)


def test_register_login_get_me(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _clients(stubs, server)
    email = f"py-{uuid.uuid4().hex[:8]}@example.com"
    created = users.CreateUser(pb.CreateUserRequest(email=email, password="correct horse", name="Py", username=""))
    assert created.user.email == email
    assert int(created.user.user_id) > 0

    login = users.Login(pb.LoginRequest(email=email, password="correct horse"))
    assert login.tokens.token_type == "Bearer"
    assert login.tokens.expires_in == 900

    me = users.GetMe(pb.GetMeRequest(), metadata=[("authorization", f"Bearer {login.tokens.access_token}")])
    assert me.user.user_id == created.user.user_id
    assert me.user.email == email

    refreshed = users.RefreshToken(pb.RefreshTokenRequest(refresh_token=login.tokens.refresh_token))
    assert refreshed.tokens.refresh_token != login.tokens.refresh_token


def test_get_me_without_a_token_is_unauthenticated(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _clients(stubs, server)
    with pytest.raises(grpc.RpcError) as err:
        users.GetMe(pb.GetMeRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        users.GetMe(pb.GetMeRequest(), metadata=[("authorization", "Bearer not.a.token")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_input_names_the_field(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _clients(stubs, server)
    with pytest.raises(grpc.RpcError) as err:
        users.CreateUser(pb.CreateUserRequest(email="nope", password="correct horse", name="Py"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("email")


def test_duplicate_email_in_another_case_is_already_exists(stubs, server):
    from chatmesh.user.v1 import user_service_pb2 as pb

    users = _clients(stubs, server)
    email = f"Dup-{uuid.uuid4().hex[:8]}@Example.com"
    users.CreateUser(pb.CreateUserRequest(email=email, password="correct horse", name="Py"))
    with pytest.raises(grpc.RpcError) as err:
        users.CreateUser(pb.CreateUserRequest(email=email.lower(), password="correct horse", name="Py"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_health_and_reflection_answer_without_a_token(stubs, server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(server)
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="chatmesh.user.v1.UserService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(responses).list_services_response.service}
    assert "chatmesh.user.v1.UserService" in names
    assert "chatmesh.chat.v1.ChatService" in names
